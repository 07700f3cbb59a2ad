"""Intervals that cover every source of variation: seeds and test samples, checked by simulation
against effects whose true size is known."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from pipeline.ablation.design import AblationConfig
from pipeline.ablation.stats import DIFFERENCE_RANGE, Effect, Summary, detectable, p_value, paired_effect, summarize_runs

SIMULATIONS = 1000


def simulated_ablation(rng, seeds, samples, seed_spread, effect=0.2, noise=0.3, skill=2.0):
    """Two variants scoring the same test samples: sample i is correct when its difficulty plus the
    variant's skill plus the seed's luck plus noise is positive. Returns per-seed correctness of
    both and the true difference in accuracy (over the population of seeds and samples)."""
    difficulty = rng.normal(size=samples)  # a fresh test set from the population, shared by every seed
    skill = {"a": skill, "b": skill + effect}
    runs = {
        name: [difficulty + level + rng.normal(0, seed_spread) + rng.normal(0, noise, samples) > 0 for _ in range(seeds)]
        for name, level in skill.items()
    }
    spread = math.sqrt(1 + seed_spread**2 + noise**2)
    truth = scipy_stats.norm.cdf(skill["b"] / spread) - scipy_stats.norm.cdf(skill["a"] / spread)
    return runs["b"], runs["a"], truth


@pytest.mark.parametrize(("seeds", "seed_spread"), [(5, 0.3), (3, 0.6), (5, 0.05)])
def test_effect_intervals_cover_the_true_effect_95_percent_of_the_time(seeds, seed_spread):
    rng = np.random.default_rng(seeds)
    covered = 0
    for _ in range(SIMULATIONS):
        treated, reference, truth = simulated_ablation(rng, seeds, 360, seed_spread)
        summary = summarize_runs([t.astype(float) - r for t, r in zip(treated, reference)], True, DIFFERENCE_RANGE)
        covered += summary.low <= truth <= summary.high
    assert 0.93 <= covered / SIMULATIONS <= 0.97


def test_seed_only_intervals_miss_the_shared_test_samples():
    """Where seeds barely differ and the test samples decide, the interval the report used to give
    (t over seeds alone) covers far less than 95%; the crossed one keeps its promise."""
    rng = np.random.default_rng(1)
    covered = {"seeds only": 0, "crossed": 0}
    for _ in range(SIMULATIONS):
        # About 84% accuracy, so that a few dozen test samples flip between the variants.
        treated, reference, truth = simulated_ablation(rng, 5, 360, seed_spread=0.02, noise=0.1, skill=1.0)
        differences = [t.astype(float) - r for t, r in zip(treated, reference)]
        for name, shared in (("seeds only", False), ("crossed", True)):
            summary = summarize_runs(differences, shared, DIFFERENCE_RANGE)
            covered[name] += summary.low <= truth <= summary.high
    assert covered["seeds only"] / SIMULATIONS < 0.85
    assert 0.93 <= covered["crossed"] / SIMULATIONS <= 0.97


@pytest.mark.parametrize(("same_mistakes", "observations"), [(True, 360), (False, 3 * 360)])
def test_seeds_that_score_alike_still_get_the_test_samples_uncertainty(same_mistakes, observations):
    """Three seeds, each 354 of 360 right: the seed-only interval is zero-wide. Crossed, the
    standard error is binomial: over the 360 samples when the seeds miss the same ones (the
    samples are what varies), over all 1080 scores when each seed misses others."""
    runs = []
    for seed in range(3):
        correct = np.ones(360)
        start = 0 if same_mistakes else seed * 6
        correct[start : start + 6] = 0
        runs.append(correct)
    crossed = summarize_runs(runs, shared_samples=True, bounds=(0.0, 1.0))
    seeds_only = summarize_runs(runs, shared_samples=False, bounds=(0.0, 1.0))
    assert seeds_only.high - seeds_only.low == 0
    assert crossed.mean == pytest.approx(354 / 360)
    assert crossed.se == pytest.approx(math.sqrt(crossed.mean * (1 - crossed.mean) / observations), rel=0.05)
    assert crossed.low < crossed.mean < crossed.high <= 1.0


def test_one_number_per_seed_is_the_t_test():
    values = [0.012, 0.018, 0.009, 0.021]
    summary = summarize_runs([np.array([v]) for v in values], shared_samples=True)  # one sample each: nothing to cross
    low, high = scipy_stats.t.interval(0.95, 3, loc=np.mean(values), scale=scipy_stats.sem(values))
    assert (summary.low, summary.high) == pytest.approx((low, high))
    assert p_value(summary) == pytest.approx(scipy_stats.ttest_1samp(values, 0.0).pvalue)
    # 80% power at the 5% level: (t_.975 + t_.80) standard errors.
    assert detectable(summary) == pytest.approx((scipy_stats.t.ppf(0.975, 3) + scipy_stats.t.ppf(0.8, 3)) * scipy_stats.sem(values))


def test_an_effect_whose_interval_holds_zero_is_called_noise():
    inside = Effect("adding X", "model", Summary(5, 0.003, 0.01, -0.004, 0.010), 0.4)
    outside = Effect("adding Y", "model", Summary(5, 0.012, 0.01, 0.005, 0.019), 0.01)
    assert inside.sentence() == "adding X moved test accuracy by +0.3 points [-0.4, 1.0]: indistinguishable from noise"
    assert outside.sentence() == "adding Y raised test accuracy by 1.2 points [0.5, 1.9]"


def test_paired_effects_difference_each_test_sample():
    treated = {0: np.array([1.0, 1.0, 0.0, 1.0]), 1: np.array([1.0, 0.0, 1.0, 1.0])}
    reference = {0: np.array([1.0, 0.0, 0.0, 1.0]), 1: np.array([0.0, 0.0, 1.0, 1.0])}
    effect = paired_effect("x", "model", treated, reference, shared_samples=True)
    assert effect.summary.mean == pytest.approx(0.25)
    assert -1.0 <= effect.summary.low <= effect.summary.high <= 1.0


def test_what_each_seed_varies():
    design = AblationConfig(design="list", seeds=[3], variants={"a": {}}, vary=["train", "split", "augment"])
    assert design.seed_overrides(3) == ["train.seed=3", "data.seed=3", "augment.seed=3"]
    assert AblationConfig(design="list", seeds=[3], variants={"a": {}}).seed_overrides(3) == ["train.seed=3"]
    with pytest.raises(ValueError, match="vary must list 'train'"):
        AblationConfig(design="list", seeds=[3], variants={"a": {}}, vary=["split"])


def test_an_effect_across_different_test_samples_compares_means():
    # A data factor that moves the split gives the two arms different test samples: no pairing by sample.
    treated = {0: np.array([1.0, 1.0, 0.0, 1.0]), 1: np.array([1.0, 1.0, 1.0, 1.0])}
    reference = {0: np.array([1.0, 0.0, 0.0]), 1: np.array([0.0, 1.0, 1.0])}
    effect = paired_effect("x", "data", treated, reference, shared_samples=True)
    assert effect.summary.mean == pytest.approx(((0.75 - 1 / 3) + (1 - 2 / 3)) / 2)
    assert effect.summary.df == 1  # the t over the two seeds' differences of means
