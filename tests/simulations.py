"""Simulations with a known truth that the tests and `benchmarks/coverage.py` share."""

from __future__ import annotations

import numpy as np
from scipy import stats

from pipeline.ablation.stats import DIFFERENCE_RANGE, Folds, summarize_runs


def nearest_centroid(x: np.ndarray, y: np.ndarray, features: int) -> tuple[np.ndarray, float]:
    """A linear rule from the class means on the first `features` axes: weights and bias."""
    ones, zeros = x[y == 1, :features].mean(axis=0), x[y == 0, :features].mean(axis=0)
    weights = np.zeros(x.shape[1])
    weights[:features] = ones - zeros
    return weights, float(zeros @ zeros - ones @ ones) / 2


def kfold_coverage(rng: np.random.Generator, datasets: int, truth_draws: int = 5000) -> float:
    """How often k-fold intervals cover the true difference of two learners. Two Gaussian classes
    N(+-mu, I) in 10 dimensions, where a linear rule's accuracy is known exactly: nearest
    centroids on all 10 features against the first 3. The truth is the expected difference at the
    folds' training size over training sets drawn afresh (what k-fold estimates); `datasets`
    datasets of 200 samples, 3 seeds of 5 folds each."""
    mu, n, k = np.full(10, 0.35), 200, 5

    def draw(size: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 2, size)
        return rng.normal(size=(size, 10)) + np.where(y[:, None] == 1, mu, -mu), y

    def exact_accuracy(weights: np.ndarray, bias: float) -> float:
        norm = np.linalg.norm(weights)
        return 0.5 * float(stats.norm.cdf((weights @ mu + bias) / norm) + stats.norm.cdf((weights @ mu - bias) / norm))

    def gap(x: np.ndarray, y: np.ndarray) -> float:
        return exact_accuracy(*nearest_centroid(x, y, 10)) - exact_accuracy(*nearest_centroid(x, y, 3))

    truth = np.mean([gap(*draw(n - n // k)) for _ in range(truth_draws)])
    covered = 0
    for _ in range(datasets):
        x, y = draw(n)
        vectors = []
        for _seed in range(3):
            order, scored = rng.permutation(n), []
            for fold in range(k):
                test, train = order[fold::k], np.sort(np.concatenate([order[f::k] for f in range(k) if f != fold]))
                right = [((x[test] @ w + b > 0) == y[test]).astype(float) for w, b in (nearest_centroid(x[train], y[train], m) for m in (10, 3))]
                scored.append(right[0] - right[1])
            vectors.append(np.concatenate(scored))
        summary = summarize_runs(vectors, Folds(k, n // k, n - n // k), DIFFERENCE_RANGE)
        covered += summary.low <= truth <= summary.high
    return covered / datasets
