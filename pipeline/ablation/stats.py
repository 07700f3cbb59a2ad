"""Summaries over seeds and paired effects with 95% confidence intervals and Holm-adjusted p-values."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
ACCURACY_RANGE, LOSS_RANGE = (0.0, 1.0), (0.0, math.inf)


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
    """Mean, sample standard deviation and the t-based 95% interval of a handful of numbers."""

    n: int
    mean: float
    std: float
    low: float
    high: float


def summarize(values: Sequence[float], bounds: tuple[float, float] = (-math.inf, math.inf)) -> Summary:
    """The summary of `values`; the interval is cut to `bounds`, the range the quantity can take
    (an accuracy's [0, 1], a difference of accuracies' [-1, 1], a loss's [0, inf))."""
    data = np.asarray(values, dtype=float)
    n = data.size
    mean = float(data.mean()) if n else math.nan
    if n < 2:
        return Summary(n, mean, math.nan, math.nan, math.nan)
    std = float(data.std(ddof=1))
    half = float(stats.t.ppf((1 + CONFIDENCE) / 2, n - 1)) * std / math.sqrt(n)
    low, high = bounds
    return Summary(n, mean, std, max(low, mean - half), min(high, mean + half))


@dataclass(frozen=True)
class Effect:
    """A paired difference (treatment minus reference, matched by seed) and its uncertainty."""

    name: str
    side: str
    summary: Summary
    p_value: float
    p_holm: float = math.nan

    def sentence(self, metric: str = "test accuracy", scale: float = 100.0, unit: str = "points") -> str:
        """The effect in plain words, e.g. "adding X raised test accuracy by 1.2 points [0.6, 1.8]"."""
        s = self.summary
        verb = "raised" if s.mean > 0 else "lowered" if s.mean < 0 else "did not change"
        amount = f" by {abs(s.mean) * scale:.1f} {unit}" if s.mean else ""
        interval = f" [{s.low * scale:.1f}, {s.high * scale:.1f}]" if not math.isnan(s.low) else " (one seed: no interval)"
        return f"{self.name} {verb} {metric}{amount}{interval}"


def paired_p_value(differences: np.ndarray) -> float:
    """Two-sided one-sample t-test of the differences against zero. Where the differences are all
    equal the t statistic is undefined; the exact sign-flip test takes over there: n equal,
    non-zero differences are as extreme as any of the 2^n sign patterns gets, so p = 2 / 2^n
    (0.25 for three seeds), never 0."""
    if differences.size < 2:
        return math.nan
    if np.allclose(differences, differences[0]):
        return 1.0 if differences[0] == 0 else min(1.0, 2.0 / 2.0**differences.size)
    return float(stats.ttest_1samp(differences, 0.0).pvalue)


def paired_effect(
    name: str, side: str, treatment: dict[int, float], reference: dict[int, float], bounds: tuple[float, float] = (-1.0, 1.0)
) -> Effect | None:
    """Effect from per-seed values; only seeds present in both count. None when no seed pairs up.
    `bounds`: the range of a difference (of accuracies by default)."""
    seeds = sorted(set(treatment) & set(reference))
    if not seeds:
        return None
    differences = np.array([treatment[s] - reference[s] for s in seeds])
    return Effect(name, side, summarize(differences, bounds), paired_p_value(differences))


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
