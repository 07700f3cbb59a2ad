"""Summaries over seeds and test samples, paired effects, and Holm-adjusted p-values.

A test score is a mean over test samples, so it varies with the seed (initialization, batch
order, dropout masks, and the split and augmentation draws when the ablation varies them
too) and with which test samples were drawn. When every seed scores the same test samples,
seeds and samples are crossed random effects, `x[s, i] = mu + a_s + b_i + e_si`, and the
variance of the grand mean is `(MS_seed + MS_sample - MS_residual) / (n N)` from the two-way
mean squares, with Satterthwaite's degrees of freedom (the "language-as-fixed-effect" fix,
Clark 1973; Bouthillier et al. 2021 make the same case for ML benchmarks). A seed-only
t-interval would miss the test samples entirely there: every seed shares them. When each seed
draws its own split, its mean already carries its own samples' noise, and the t-interval over
seeds covers both. Intervals are cut to the range the quantity can take.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from scipy import stats

CONFIDENCE, POWER = 0.95, 0.80
ACCURACY_RANGE, LOSS_RANGE, DIFFERENCE_RANGE = (0.0, 1.0), (0.0, math.inf), (-1.0, 1.0)
Bounds = tuple[float, float]


def missing(value: float | None) -> bool:
    """Whether a number is absent: None (as JSON has it) or NaN."""
    return value is None or math.isnan(value)


def json_safe(value: Any) -> Any:
    """`value` with every NaN or infinity replaced by None, so it is valid JSON (`null`)."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


@dataclass(frozen=True)
class Summary:
    """Mean over seeds, the standard deviation of the per-seed values, and the 95% interval of the
    mean with its standard error and degrees of freedom (every source of variation counted)."""

    n: int
    mean: float
    std: float
    low: float
    high: float
    se: float = math.nan
    df: float = math.nan


def _crossed(x: np.ndarray) -> tuple[float, float]:
    """Variance of the grand mean of an `(n seeds, N samples)` table of crossed random effects, and its degrees of freedom."""
    n, size = x.shape
    grand, seed_means, sample_means = x.mean(), x.mean(axis=1), x.mean(axis=0)
    ms_seed = size * float(((seed_means - grand) ** 2).sum()) / (n - 1)
    ms_sample = n * float(((sample_means - grand) ** 2).sum()) / (size - 1)
    residual = x - seed_means[:, None] - sample_means[None, :] + grand
    ms_residual = float((residual**2).sum()) / ((n - 1) * (size - 1))
    combined = ms_seed + ms_sample - ms_residual
    variance = max(combined, ms_residual) / (n * size)  # a negative estimate is noise: floor at the residual's share
    denominator = ms_seed**2 / (n - 1) + ms_sample**2 / (size - 1) + ms_residual**2 / ((n - 1) * (size - 1))
    df = combined**2 / denominator if combined > 0 and denominator > 0 else n - 1
    return variance, max(float(n - 1), df)


def summarize_runs(scores: Sequence[np.ndarray], shared_samples: bool, bounds: Bounds = (-math.inf, math.inf)) -> Summary:
    """Summary of per-seed score vectors (one value per test sample, or a single number per seed).

    `shared_samples`: every seed scored the same test samples, in the same order (crossed);
    otherwise each seed's mean is one independent draw (a t-interval over seeds).
    """
    seed_means = np.array([float(np.mean(vector)) for vector in scores])
    n = seed_means.size
    mean = float(seed_means.mean()) if n else math.nan
    if n < 2:
        return Summary(n, mean, math.nan, math.nan, math.nan)
    std = float(seed_means.std(ddof=1))
    sizes = {np.size(vector) for vector in scores}
    if shared_samples and len(sizes) == 1 and sizes.pop() > 1:
        variance, df = _crossed(np.stack([np.asarray(vector, dtype=float) for vector in scores]))
    else:
        variance, df = std**2 / n, float(n - 1)
    se = math.sqrt(variance)
    half = float(stats.t.ppf((1 + CONFIDENCE) / 2, df)) * se
    low, high = bounds
    return Summary(n, mean, std, max(low, mean - half), min(high, mean + half), se, df)


def summarize(values: Sequence[float], bounds: Bounds = (-math.inf, math.inf)) -> Summary:
    """The summary of one number per seed: the t-interval over seeds, cut to `bounds`, the range
    the quantity can take (an accuracy's [0, 1], a difference of accuracies' [-1, 1], a loss's [0, inf))."""
    return summarize_runs([np.array([value]) for value in values], shared_samples=False, bounds=bounds)


def p_value(summary: Summary) -> float:
    """Two-sided t-test of the mean against zero. Where nothing varies at all the t statistic is
    undefined; the exact sign-flip test takes over: n equal, non-zero per-seed values are as
    extreme as any of the 2^n sign patterns gets, so p = 2 / 2^n (0.25 for three seeds), never 0."""
    if summary.n < 2:
        return math.nan
    if summary.se == 0:
        return 1.0 if summary.mean == 0 else min(1.0, 2.0 / 2.0**summary.n)
    return float(2 * stats.t.sf(abs(summary.mean) / summary.se, summary.df))


def detectable(summary: Summary) -> float:
    """The smallest true effect this many seeds and test samples find with 80% power at the 5% level."""
    if missing(summary.se):
        return math.nan
    return float((stats.t.ppf((1 + CONFIDENCE) / 2, summary.df) + stats.t.ppf(POWER, summary.df)) * summary.se)


@dataclass(frozen=True)
class Effect:
    """A paired difference (treatment minus reference, matched by seed and test sample) and its uncertainty."""

    name: str
    side: str
    summary: Summary
    p_value: float
    p_holm: float = math.nan
    detectable: float = math.nan  # the smallest effect these seeds and test samples find with 80% power
    condition: str = ""  # what the effect is conditional on ("all else at baseline"); the name ends with it

    @property
    def within_noise(self) -> bool:
        return not missing(self.summary.low) and self.summary.low <= 0 <= self.summary.high

    def sentence(self, metric: str = "test accuracy", scale: float = 100.0, unit: str = "points", digits: int = 1) -> str:
        """The effect in plain words, e.g. "adding X raised test accuracy by 1.2 points [0.6, 1.8]"."""
        s = self.summary
        verb = "raised" if s.mean > 0 else "lowered" if s.mean < 0 else "did not change"
        units = f" {unit}" if unit else ""
        amount = f" by {abs(s.mean) * scale:.{digits}f}{units}" if s.mean else ""
        if missing(s.low):
            return f"{self.name} {verb} {metric}{amount} (one seed: no interval)"
        interval = f" [{s.low * scale:.{digits}f}, {s.high * scale:.{digits}f}]"
        if self.within_noise:
            return f"{self.name} moved {metric} by {s.mean * scale:+.{digits}f}{units}{interval}: indistinguishable from noise"
        return f"{self.name} {verb} {metric}{amount}{interval}"


def paired_p_value(differences: np.ndarray) -> float:
    """Two-sided one-sample t-test of per-seed differences against zero (see `p_value`)."""
    return p_value(summarize(differences))


def paired_effect(
    name: str,
    side: str,
    treatment: dict[int, np.ndarray],
    reference: dict[int, np.ndarray],
    shared_samples: bool = False,
    bounds: Bounds = DIFFERENCE_RANGE,
    condition: str = "",
) -> Effect | None:
    """Effect from per-seed score vectors (per test sample, or one number each); only seeds present
    in both count, and each seed's difference is taken sample by sample. None when no seed pairs up.
    A `condition` is appended to the name in parentheses and kept on its own."""
    seeds = sorted(set(treatment) & set(reference))
    if not seeds:
        return None
    pairs = [(np.asarray(treatment[s], dtype=float), np.asarray(reference[s], dtype=float)) for s in seeds]
    if any(ours.shape != theirs.shape for ours, theirs in pairs):  # different test samples (a data factor moved the split): compare means
        pairs, shared_samples = [(ours.mean(keepdims=True), theirs.mean(keepdims=True)) for ours, theirs in pairs], False
    differences = [ours - theirs for ours, theirs in pairs]
    summary = summarize_runs(differences, shared_samples, bounds)
    named = f"{name} ({condition})" if condition else name
    return Effect(named, side, summary, p_value(summary), detectable=detectable(summary), condition=condition)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (NaN stays NaN and is not counted)."""
    indexed = [(p, i) for i, p in enumerate(p_values) if not math.isnan(p)]
    indexed.sort()
    m = len(indexed)
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(indexed):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted
