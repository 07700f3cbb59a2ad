"""Seeds until decided: repeated p-values and repeated confidence intervals that keep their 95%
however many of the planned looks are taken and wherever the ablation stops.

An ablation that adds seeds until its effects are decided looks at its results several times;
read each look at 5% and the chance of a false decision somewhere grows with the looks. The
looks are planned (`Looks.counts`: the seed counts at which the ablation may look), and every
test is read against a group-sequential boundary over all of them (Jennison and Turnbull 2000,
ch. 2, and ch. 9 for repeated confidence intervals): Pocock's (1977), one critical value at every
look, or O'Brien and Fleming's (1979), critical values falling as the standard error does. The
overall level of a look's z statistic `z` is `P(max_k w_k |Z_k| >= w z)` under no effect, where
the `Z_k` are the test's statistics at the planned looks and `w_k` the boundary's weights (1 for
Pocock, se_K / se_k for O'Brien-Fleming). An effect's mean at a later look averages the earlier
seeds too, so `corr(Z_j, Z_k) = se_k / se_j` for j < k, with each look's standard error from the
variance components measured now (the test samples every seed shares, and Nadeau and Bengio's
term under k-fold, do not shrink with seeds, so those looks are more alike and cost less). Each
look's t statistic enters through its two-sided p-value as a z. The law of the maximum is
simulated once per correlation (common random numbers, fixed seed: the same inputs give the same
answer), interpolated between order statistics, and beyond its last 100 draws follows the
one-look tail scaled to meet it, and never below the last look's own law; `overall_p` and
`nominal` are exact inverses, so an interval excludes zero exactly when its test decides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import optimize, special

from pipeline.ablation.stats import Summary, missing

DRAWS = 200_000
TAIL_DRAWS = 100  # beyond the last this many simulated maxima, the one-look tail scaled to meet them
_QUANTILES = (np.arange(DRAWS) + 0.5) / DRAWS


@lru_cache(maxsize=4)
def _normals(looks: int) -> np.ndarray:
    """The standard normal draws every simulation of this many looks shares (common random numbers)."""
    return np.random.default_rng(0).standard_normal((looks, DRAWS))


@lru_cache(maxsize=16)
def _sorted_maxima(correlations: tuple[float, ...], weights: tuple[float, ...]) -> np.ndarray:
    """Sorted draws of max_k w_k |Z_k| under no effect, for standard normal Z_k with consecutive
    correlations `correlations` (a Markov chain: each look's mean adds seeds to the last's)."""
    normals = _normals(len(weights))
    z = normals[0]
    largest = weights[0] * np.abs(z)
    for rho, weight, fresh in zip(correlations, weights[1:], normals[1:]):
        z = rho * z + math.sqrt(max(0.0, 1.0 - rho * rho)) * fresh
        np.maximum(largest, weight * np.abs(z), out=largest)
    return np.sort(largest)


def _one_look(z: float) -> float:
    return float(2 * special.ndtr(-z))


@dataclass(frozen=True)
class Boundary:
    """The law of the largest weighted |Z| over the planned looks of one test, read at one look
    (of weight `weight`): a test rejects at level a where w |z| exceeds that law's 1 - a quantile.

    The law is the simulated one, never below the last look's own (whose weight is 1, so the
    maximum is at least its |Z|), and beyond the last 100 draws the one-look tail scaled to meet
    it: continuous and strictly decreasing, so `critical` inverts `overall` exactly."""

    maxima: np.ndarray
    looks: int
    weight: float = 1.0

    @property
    def _tail_start(self) -> float:
        return float(self.maxima[-TAIL_DRAWS])

    @property
    def _tail_ratio(self) -> float:
        """Overall over one-look level where the simulation's tail begins (at least 1)."""
        start = self._tail_start
        return max(1.0, self._simulated(start) / _one_look(start))

    def _simulated(self, x: float) -> float:
        return 1.0 - float(np.interp(x, self.maxima, _QUANTILES, left=0.0))

    def _survival(self, x: float) -> float:
        """P(max_k w_k |Z_k| >= x) under no effect."""
        if x <= self._tail_start:
            return max(self._simulated(x), _one_look(x))
        return self._tail_ratio * _one_look(x)

    def overall(self, z: float) -> float:
        """This look's z read over every look: P(max_k w_k |Z_k| >= w z) under no effect."""
        return self._survival(z * self.weight)

    def critical(self, level: float) -> float:
        """The z at this look with overall level `level` (the inverse of `overall`)."""
        if level >= 1.0:
            return 0.0
        start = self._tail_start
        if level >= self._survival(start):
            weighted = optimize.brentq(lambda x: self._survival(x) - level, 0.0, start, xtol=1e-13, rtol=1e-15)
        else:
            weighted = -special.ndtri(level / (2 * self._tail_ratio))
        return float(weighted) / self.weight


@dataclass(frozen=True)
class Looks:
    """The seed counts at which a seeds-until-decided ablation may look (all of them planned up
    front), how many it has taken, and the boundary's shape: `pocock` (one critical z at every
    look: early stops come easiest) or `obrien_fleming` (critical z falling as se_k / se_K: early
    looks stop only the clearest effects, and the last is read almost as a fixed design would)."""

    counts: tuple[int, ...]
    taken: int
    shape: str = "obrien_fleming"

    def standard_errors(self, summary: Summary) -> np.ndarray:
        """A test's standard error at each planned look, from its variance components now; seeds
        alone (se falls as 1/sqrt(seeds)) where no variance was measured."""
        seeds = np.array(self.counts, dtype=float)
        parts = (summary.seed_var, summary.sample_var, summary.residual_var)
        if any(missing(part) for part in parts) or sum(parts) <= 0:
            return 1 / np.sqrt(seeds)
        samples = max(1, summary.samples)
        return np.sqrt(summary.seed_var / seeds + summary.sample_var / samples + summary.residual_var / (seeds * samples))

    def boundary(self, summary: Summary) -> Boundary:
        """The law of this test's statistic over the planned looks, read at the look taken last."""
        se = self.standard_errors(summary)
        correlations = tuple(min(1.0, float(later / earlier)) for earlier, later in zip(se[:-1], se[1:]))
        weights = tuple(float(se[-1] / each) if self.shape == "obrien_fleming" else 1.0 for each in se)
        return Boundary(_sorted_maxima(correlations, weights), len(self.counts), weights[self.taken - 1])

    def overall_p(self, nominal_p: float, summary: Summary) -> float:
        """A look's repeated p-value: the overall level at which the test rejects at this look."""
        if missing(nominal_p):
            return nominal_p
        return min(1.0, self.boundary(summary).overall(float(-special.ndtri(nominal_p / 2))))

    def nominal(self, level: float, summary: Summary) -> float:
        """The one-look level whose interval, at every planned look, covers with overall
        probability 1 - `level` (the repeated confidence interval's)."""
        return _one_look(self.boundary(summary).critical(level))

    def describe(self) -> dict[str, object]:
        """The looks as `summary.json` keeps them."""
        return {"planned": list(self.counts), "taken": self.taken, "seeds": self.counts[self.taken - 1], "boundary": self.shape}

