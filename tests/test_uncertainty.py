"""Intervals that cover every source of variation: seeds and test samples, checked by simulation
against effects whose true size is known."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from pipeline.ablation.design import AblationConfig
from pipeline.ablation.effects import adjust_together, factor_effects, interaction_effects, side_effects, variant_effect
from simulations import kfold_coverage
from pipeline.ablation.stats import DIFFERENCE_RANGE, Effect, Folds, Summary, detectable, p_value, paired_effect, seeds_to_decide, summarize, summarize_runs

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
        seeds_only = summarize([float(d.mean()) for d in differences], DIFFERENCE_RANGE)
        crossed = summarize_runs(differences, True, DIFFERENCE_RANGE)
        for name, summary in (("seeds only", seeds_only), ("crossed", crossed)):
            covered[name] += summary.low <= truth <= summary.high
    assert covered["seeds only"] / SIMULATIONS < 0.85
    assert 0.93 <= covered["crossed"] / SIMULATIONS <= 0.97


@pytest.mark.parametrize(("same_mistakes", "observations"), [(True, 360), (False, 3 * 360)])
def test_seeds_that_score_alike_still_get_the_test_samples_uncertainty(same_mistakes, observations):
    """Three seeds, each 354 of 360 right: the seeds' means do not vary at all. Crossed, the
    standard error is binomial: over the 360 samples when the seeds miss the same ones (the
    samples are what varies), over all 1080 scores when each seed misses others. Read as seeds
    that each drew their own samples, it is floored at the samples' own noise: never zero-wide."""
    runs = []
    for seed in range(3):
        correct = np.ones(360)
        start = 0 if same_mistakes else seed * 6
        correct[start : start + 6] = 0
        runs.append(correct)
    crossed = summarize_runs(runs, shared_samples=True, bounds=(0.0, 1.0))
    seeds_only = summarize_runs(runs, shared_samples=False, bounds=(0.0, 1.0))
    within = np.mean([run.var(ddof=1) for run in runs]) / 360
    assert seeds_only.se == pytest.approx(math.sqrt(within / 3)) and seeds_only.low < seeds_only.mean < seeds_only.high
    assert crossed.mean == pytest.approx(354 / 360)
    assert crossed.se == pytest.approx(math.sqrt(crossed.mean * (1 - crossed.mean) / observations), rel=0.05)
    assert crossed.low < crossed.mean < crossed.high <= 1.0


def test_one_number_per_seed_is_the_t_test():
    values = [0.012, 0.018, 0.009, 0.021]
    summary = summarize_runs([np.array([v]) for v in values], shared_samples=True)  # one sample each: nothing to cross
    low, high = scipy_stats.t.interval(0.95, 3, loc=np.mean(values), scale=scipy_stats.sem(values))
    assert (summary.low, summary.high) == pytest.approx((low, high))
    assert p_value(summary) == pytest.approx(scipy_stats.ttest_1samp(values, 0.0).pvalue)
    # 80% power at the 5% level, from the noncentral t with the interval's own 3 degrees of freedom.
    found = detectable(summary)
    critical, shift = scipy_stats.t.ppf(0.975, 3), found / scipy_stats.sem(values)
    assert scipy_stats.nct.sf(critical, 3, shift) + scipy_stats.nct.cdf(-critical, 3, shift) == pytest.approx(0.8, abs=1e-6)
    # The (t_.975 + t_.80) shortcut falls short: by 1.2% at 4 degrees of freedom.
    shortcut = summarize_runs([np.array([v]) for v in [*values, 0.015]], shared_samples=False)
    ratio = detectable(shortcut) / ((scipy_stats.t.ppf(0.975, 4) + scipy_stats.t.ppf(0.8, 4)) * shortcut.se)
    assert ratio == pytest.approx(1.012, abs=0.001)


def _effect(name, mean, se, p, n=5):
    summary = Summary(n, mean, se * math.sqrt(n), mean - 2.776 * se, mean + 2.776 * se, se, n - 1, seed_var=se**2 * n)
    return Effect(name, "model", summary, p)


def test_an_effect_is_decided_by_its_adjusted_p_value_and_its_sentence_says_so():
    inside = _effect("adding X", 0.003, 0.0025, 0.29).adjusted(0.29, 1)
    outside = _effect("adding Y", 0.012, 0.0025, 0.008).adjusted(0.008, 1)
    assert inside.sentence().startswith("adding X moved test accuracy by +0.3 points [-0.4, 1.0]: indistinguishable from noise; about ")
    assert outside.decided and outside.sentence() == "adding Y raised test accuracy by 1.2 points [0.5, 1.9]"
    # The same effect in a family of 7 tests whose Holm p-value is 0.056: not decided, and its
    # adjusted interval, wider than the per-comparison one, reaches across zero.
    among_seven = _effect("adding Y", 0.012, 0.0025, 0.008).adjusted(0.056, 7)
    assert not among_seven.decided and among_seven.adjusted_low < 0 < among_seven.summary.low
    assert among_seven.simultaneous_low <= among_seven.adjusted_low
    assert "indistinguishable from noise after adjusting for 7 tests; about " in among_seven.sentence()
    assert among_seven.seeds_to_decide > 5


def test_the_adjusted_interval_excludes_zero_exactly_when_holm_decides():
    rng = np.random.default_rng(0)
    effects = [paired_effect(f"e{i}", "model", {s: rng.normal(shift, 0.01, 1) for s in range(5)}, {s: np.zeros(1) for s in range(5)})
               for i, shift in enumerate([0.0, 0.004, 0.008, 0.012, 0.02, 0.03])]
    (adjusted,) = adjust_together(effects)
    for effect in adjusted:
        assert effect.decided == (effect.p_holm < 0.05) == (effect.adjusted_low > 0 or effect.adjusted_high < 0)
        assert effect.simultaneous_low <= effect.adjusted_low <= effect.summary.low
    assert {effect.tests for effect in adjusted} == {6}


def test_a_test_that_appears_twice_in_the_family_counts_once():
    # A 2x2 design: the net gain of the both-sides variant is the both-sides effect, and the
    # data-by-model interaction is the two factors' interaction; effects that merely happen to
    # share their numbers (here: none moved at all) are still tests of their own.
    ablation = AblationConfig(design="full", seeds=[0, 1, 2], factors={
        "scale.method": {"side": "data", "values": ["none", "standard"]},
        "model.batch_norm": {"side": "model", "values": [False, True]},
    })
    best, baseline = str({"scale.method": "standard", "model.batch_norm": True}), str({"scale.method": "none", "model.batch_norm": False})
    for rows in (designed_rows(np.random.default_rng(7), 0.3, 0.2), designed_rows(np.random.default_rng(7), 0.0, 0.0, samples=1)):
        if rows[0]["per_sample"]["score"].size == 1:
            for row in rows:
                row["per_sample"]["score"] = np.ones(1)  # every arm scores the same: every effect is zero
        factors, interactions, sides, verdict = adjust_together(
            factor_effects(rows, ablation, "score", True), interaction_effects(rows, ablation, "score", True),
            side_effects(rows, ablation, "score", True), [variant_effect(rows, best, baseline, "score", True)],
        )
        by_name = {effect.name: effect for effect in factors + interactions + sides + verdict}
        assert len(by_name) == 8 and {effect.tests for effect in by_name.values()} == {6}
        assert by_name["both sides together"].test_id == verdict[0].test_id and by_name["both sides together"].p_holm == verdict[0].p_holm
        assert by_name["the data-by-model interaction"].test_id == interactions[0].test_id


def test_nothing_varied_gives_exact_intervals_never_a_zero_width_one():
    all_right = summarize_runs([np.ones(36)] * 3, shared_samples=True, bounds=(0.0, 1.0))
    assert (all_right.low, all_right.high) == pytest.approx((0.025 ** (1 / 36), 1.0))  # Clopper-Pearson, 36 of 36
    drawn_apart = summarize_runs([np.ones(36)] * 3, shared_samples=False, bounds=(0.0, 1.0))
    assert drawn_apart.low == pytest.approx(0.025 ** (1 / 108))  # each seed its own 36 samples: 108 of 108
    same = paired_effect("x", "model", {s: np.ones(360) for s in range(5)}, {s: np.ones(360) for s in range(5)}, shared_samples=True)
    reach = 1 - 0.025 ** (1 / 360)
    assert (same.summary.low, same.summary.high) == pytest.approx((-reach, reach))
    assert same.detectable == pytest.approx(reach) and same.p_value == 1.0 and not same.decided
    assert same.sentence() == "x moved test accuracy by +0.0 points [-1.0, 1.0]: indistinguishable from noise"


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


def test_a_fixed_test_split_varies_only_the_train_validation_split_with_the_seed():
    from pipeline.ablation.analysis import uncertainty

    design = AblationConfig(design="list", seeds=[0, 1], variants={"a": {}}, vary=["train", "split"])
    fixed, drawn = (" ".join(uncertainty(design, shared, 100, [])["sources"]) for shared in (True, False))
    assert "the train/validation split (data.seed) of the training samples" in fixed and "every seed scores the same ones" in fixed
    assert "the train/validation/test split (data.seed)" in drawn and "each seed draws its own" in drawn


def test_an_effect_across_different_test_samples_compares_means():
    # A data factor that moves the split gives the two arms different test samples: no pairing by sample.
    treated = {0: np.array([1.0, 1.0, 0.0, 1.0]), 1: np.array([1.0, 1.0, 1.0, 1.0])}
    reference = {0: np.array([1.0, 0.0, 0.0]), 1: np.array([0.0, 1.0, 1.0])}
    effect = paired_effect("x", "data", treated, reference, shared_samples=True)
    assert effect.summary.mean == pytest.approx(((0.75 - 1 / 3) + (1 - 2 / 3)) / 2)
    assert effect.summary.df == 1  # the t over the two seeds' differences of means


def designed_rows(rng, data_shift, model_shift, seeds=3, samples=300):
    """Per-sample correctness of a 2x2 design on shared test samples: each arm gets a sample right
    when its difficulty is below the arm's skill plus the seed's luck; the shifts are the sides' effects."""
    difficulty = rng.normal(size=samples)
    rows = []
    for data_on in (False, True):
        for model_on in (False, True):
            for seed in range(seeds):
                skill = 1.0 + data_shift * data_on + model_shift * model_on + rng.normal(0, 0.05)
                correct = (difficulty < skill + rng.normal(0, 0.2, samples)).astype(float)
                settings = {"scale.method": "standard" if data_on else "none", "model.batch_norm": model_on}
                rows.append({"variant": str(settings), "settings": settings, "seed": seed, "score": correct.mean(), "per_sample": {"score": correct}})
    return rows


@pytest.mark.parametrize(
    "data_shift, model_shift, seed",
    [(0.6, 0.0, 0), (0.0, 0.0, 1), (0.05, -0.6, 2), (0.02, 0.03, 3), (-0.3, 0.3, 4), (0.0, 0.0, 5)],
)
def test_no_sentence_claims_a_direction_its_adjusted_test_does_not_support(data_shift, model_shift, seed):
    rng = np.random.default_rng(seed)
    rows = designed_rows(rng, data_shift, model_shift)
    ablation = AblationConfig(design="full", seeds=[0, 1, 2], factors={
        "scale.method": {"side": "data", "values": ["none", "standard"]},
        "model.batch_norm": {"side": "model", "values": [False, True]},
    })
    best = str({"scale.method": "standard", "model.batch_norm": True})
    baseline = str({"scale.method": "none", "model.batch_norm": False})
    families = adjust_together(
        factor_effects(rows, ablation, "score", True), interaction_effects(rows, ablation, "score", True),
        side_effects(rows, ablation, "score", True), [variant_effect(rows, best, baseline, "score", True)],
    )
    every = [effect for family in families for effect in family]
    assert len({effect.tests for effect in every}) == 1 and every[0].tests < len(every)  # duplicates counted once
    for effect in every:
        sentence = effect.sentence()
        claims = "raised" in sentence or "lowered" in sentence
        assert claims == effect.decided == (effect.p_holm < 0.05), sentence
        if claims:
            assert ("raised" in sentence) == (effect.summary.mean > 0) and (effect.adjusted_low > 0 or effect.adjusted_high < 0)
        else:
            assert "indistinguishable from noise" in sentence and effect.adjusted_low <= 0 <= effect.adjusted_high
        assert -1 <= effect.simultaneous_low <= effect.adjusted_low <= effect.summary.low <= effect.summary.high <= 1 or effect.side == "interaction"


@pytest.mark.parametrize("fixed_test_sets", [True, False])
def test_means_of_different_test_sets_carry_each_test_sets_own_noise(fixed_test_sets):
    # Four seeds whose arms scored different test samples (300 and 200 of them): the seeds agree
    # closely, but each arm's accuracy is still one draw of its test set.
    rng = np.random.default_rng(3)
    treated = {s: (rng.random(300) < 0.9).astype(float) for s in range(4)}
    reference = {s: (rng.random(200) < 0.85).astype(float) for s in range(4)}
    effect = paired_effect("x", "data", treated, reference, shared_samples=fixed_test_sets)
    means = [treated[s].mean() - reference[s].mean() for s in range(4)]
    noise = np.mean([treated[s].var(ddof=1) / 300 + reference[s].var(ddof=1) / 200 for s in range(4)])
    seeds_only = np.var(means, ddof=1) / 4
    expected = seeds_only + noise if fixed_test_sets else max(np.var(means, ddof=1), noise) / 4
    assert effect.summary.se == pytest.approx(math.sqrt(expected)) and effect.summary.df == 3
    assert effect.summary.se > math.sqrt(seeds_only) if fixed_test_sets else effect.summary.se >= math.sqrt(seeds_only)


def test_k_fold_scores_get_nadeau_and_bengios_corrected_variance():
    """Three seeds of four folds of 25 samples, models trained on 60: the mean of the 12 fold
    estimates, its variance (1/12 + 25/60) s^2 and 11 degrees of freedom; more seeds shrink only
    the first term, so a small enough effect is out of reach of any number of seeds."""
    rng = np.random.default_rng(0)
    vectors = [rng.integers(0, 2, 100).astype(float) - rng.integers(0, 2, 100) for _ in range(3)]
    folds = Folds(k=4, test_samples=25, train_samples=60)
    summary = summarize_runs(vectors, folds, DIFFERENCE_RANGE)
    estimates = np.array([vector.reshape(4, 25).mean(axis=1) for vector in vectors]).ravel()
    se = math.sqrt((1 / 12 + 25 / 60) * estimates.var(ddof=1))
    assert summary.n == 12 and summary.df == 11
    assert summary.mean == pytest.approx(estimates.mean()) and summary.se == pytest.approx(se)
    assert (summary.low, summary.high) == pytest.approx(scipy_stats.t.interval(0.95, 11, loc=estimates.mean(), scale=se))
    floor = math.sqrt(25 / 60 * estimates.var(ddof=1))  # what infinitely many seeds would leave
    assert seeds_to_decide(summary, 2.5 * floor, 0.05) is None
    assert seeds_to_decide(summary, 4 * floor, 0.05) >= 1
    alike = summarize_runs([np.zeros(100)] * 3, folds, DIFFERENCE_RANGE)  # nothing varied: an exact bound, not [0, 0]
    assert alike.exact == "binomial" and alike.low < 0 < alike.high


def test_k_fold_intervals_cover_the_true_difference_of_two_learners():
    """Nearest centroids on all 10 of 10 Gaussian features against the first 3 (`simulations.kfold_coverage`),
    300 datasets of 200 samples. Nadeau and Bengio's correction is a heuristic, and conservative for
    a learner this stable: the intervals cover the truth at least 95% of the time (about 99% here), never less."""
    assert kfold_coverage(np.random.default_rng(0), 300) >= 0.95


def test_an_effect_no_number_of_seeds_decides_says_what_limits_it():
    """Where every seed flips the same few of the shared test samples, the samples' own noise is the
    floor: the sentence names them and k-fold; under k-fold the floor is the dataset's."""
    rng = np.random.default_rng(0)
    reference = {s: (rng.random(100) < 0.9).astype(float) for s in range(5)}
    flipped = np.zeros(100)
    flipped[[3, 50]], flipped[7] = 1.0, -1.0
    treated = {s: np.clip(reference[s] + flipped, 0, 1) for s in range(5)}
    crossed = paired_effect("x", "model", treated, reference, shared_samples=True)
    assert crossed.seeds_to_decide is None and not crossed.decided
    assert crossed.sentence().endswith("more seeds cannot decide an effect of this size on these 100 test samples (k-fold resampling tests every sample)")
    folds = Folds(k=4, test_samples=25, train_samples=60)
    per_fold = paired_effect("x", "model", {s: rng.normal(0.002, 0.2, 100) for s in range(3)}, {s: np.zeros(100) for s in range(3)}, shared_samples=folds)
    assert per_fold.seeds_to_decide is None
    assert per_fold.sentence().endswith("more seeds cannot decide an effect of this size: what they do not average away (the test samples, or under k-fold the dataset) is too large")
