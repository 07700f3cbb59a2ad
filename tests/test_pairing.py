"""Pairing runs by sample identity: the same samples pair per sample, different test sets pair on
the samples they share (or, with too few, per seed), and flips and ensembles follow."""

import numpy as np
import pytest

from pipeline.ablation.analysis import ensembles, flips
from pipeline.ablation.design import AblationConfig, expand
from pipeline.ablation.effects import factor_effects, side_effects
from pipeline.ablation.pairing import MIN_SHARED, Pairer, SampleIds, align, decide, trace
from pipeline.ablation.plan import TrainingResult

SOURCE = '["sklearn:digits", {}]'


def samples(ids, source=SOURCE):
    return SampleIds(source, np.asarray(ids, dtype=np.int64))


def test_the_same_samples_in_the_same_order_pair_per_sample():
    pairing, positions = decide({0: [samples(range(50)), samples(range(50))], 1: [samples(range(50)), samples(range(50))]}, crossed=True)
    assert (pairing.label, pairing.samples) == ("per sample", 50)
    assert all(np.array_equal(p, np.arange(50)) for found in positions.values() for p in found)


def test_shared_samples_are_aligned_by_identity_not_position():
    same, (first, second) = align([samples([5, 3, 9, 1]), samples([1, 2, 3, 4, 5])])
    assert not same
    # The shared ids 1, 3 and 5, in id order, at their positions in each run's own arrays.
    assert first.tolist() == [3, 1, 0] and second.tolist() == [0, 2, 4]


@pytest.mark.parametrize(
    ("shared", "crossed", "label"),
    [
        (MIN_SHARED, True, f"per sample, on the {MIN_SHARED} shared test samples"),
        (MIN_SHARED - 1, True, "per seed (different test samples)"),
        # Each seed draws its own split: pairing must keep half of the smaller test set.
        (60, False, "per sample, on the 60 shared test samples"),
        (49, False, "per seed (different test samples)"),
    ],
)
def test_different_test_sets_pair_on_enough_shared_samples_else_per_seed(shared, crossed, label):
    ours, theirs = samples(range(100)), samples(range(100 - shared, 200 - shared))
    pairing, positions = decide({0: [ours, theirs]}, crossed)
    assert pairing.label == label
    assert (positions is None) == label.startswith("per seed")


def test_samples_of_different_sources_never_pair():
    pairing, positions = decide({0: [samples(range(100)), samples(range(100), source='["sklearn:wine", {}]')]}, crossed=True)
    assert pairing.label == "per seed (different test samples)" and positions is None


LIST = AblationConfig(design="list", seeds=[0, 1, 2], variants={"a": {}, "b": {"data.seed": 7}})


def list_rows_and_pairer(overlap_start):
    """Variant a scores ids 0-99, b ids `overlap_start`-(overlap_start + 99): per sample, a is right
    on ids below 75, b on ids below 90 (the same for every seed), so b gains exactly on ids 75-89."""
    ids = {"a": np.arange(100), "b": np.arange(overlap_start, overlap_start + 100)}
    correct = {name: (found < {"a": 75, "b": 90}[name]).astype(float) for name, found in ids.items()}
    rows, runs = [], {}
    for name, settings in LIST.variants.items():
        for seed in LIST.seeds:
            rows.append({"variant": name, "settings": settings, "seed": seed, "score": correct[name].mean(), "per_sample": {"score": correct[name]}})
            runs[(name, seed)] = samples(ids[name])

    def rescore(run, positions):
        return correct[run[0]][positions]

    return rows, Pairer(runs, crossed=True), rescore


def test_an_effect_between_different_splits_is_paired_on_the_shared_ids():
    rows, pairer, rescore = list_rows_and_pairer(overlap_start=50)
    assert not pairer.uniform
    ((effect, pairing),) = pairer.effects("list", lambda found: factor_effects(found, LIST, "score", True), rows, "score", rescore)
    assert pairing.label == "per sample, on the 50 shared test samples"
    assert effect.summary.mean == pytest.approx(15 / 50)  # ids 75-89 of the shared 50-99
    # By position, the same vectors read b's 40 right of ids 50-149 against a's 75 of ids 0-99:
    # the number pairing by identity replaces.
    by_position = factor_effects(rows, LIST, "score", True)[0]
    assert by_position.summary.mean == pytest.approx(0.40 - 0.75)


def test_an_effect_with_too_few_shared_samples_compares_per_seed_means():
    rows, pairer, rescore = list_rows_and_pairer(overlap_start=90)  # 10 shared samples
    ((effect, pairing),) = pairer.effects("list", lambda found: factor_effects(found, LIST, "score", True), rows, "score", rescore)
    assert (pairing.label, pairing.samples) == ("per seed (different test samples)", None)
    # Each run by its own mean: b is wrong on all its ids (90-189), a right on 75 of its 100.
    assert effect.summary.mean == pytest.approx(0.0 - 0.75)
    assert effect.summary.n == 3


def test_tracing_finds_the_variants_each_effect_reads():
    factors = {"data.seed": {"side": "data", "values": [0, 7]}, "model.dropout": {"side": "model", "values": [0.0, 0.3]}}
    design = AblationConfig(design="one_at_a_time", seeds=[0, 1], factors=factors)
    rows = [{"variant": v.name, "settings": v.settings, "seed": s, "score": 0.5} for v in expand(design) for s in design.seeds]
    reads = trace(lambda found: side_effects(found, design, "score"), rows, "score")
    names = [e.name for e in side_effects(rows, design, "score")]
    read = dict(zip(names, reads))
    assert read["the model-side changes"] == {"baseline", "model.dropout=0.3"}
    assert read["the data-side changes"] == {"baseline", "data.seed=7"}
    assert read["the data-by-model interaction"] == {"baseline", "data.seed=7", "model.dropout=0.3", "data.seed=7, model.dropout=0.3"}


def result(variant, seed, ids, correct=None, probabilities=None, labels=None):
    predictions = {"id_test": np.asarray(ids)}
    if probabilities is not None:
        predictions.update(test_probabilities=np.asarray(probabilities), y_test=np.asarray(labels))
    return TrainingResult(variant, seed, "", {"data": {"source": "sklearn:digits", "provenance": {}}}, predictions)


def test_flips_count_only_the_samples_both_runs_scored():
    ids = {"baseline": np.arange(40), "x": np.arange(10, 50)}  # 30 shared: ids 10-39
    right = {"baseline": ids["baseline"] < 20, "x": ids["x"] < 30}  # x fixed ids 20-29; nothing broke
    results = [result(name, seed, ids[name]) for name in ids for seed in (0, 1)]
    correct = [right[r.variant].astype(float) for r in results]
    found = flips(results, correct, "baseline", crossed=True)
    assert found == {"x": {"fixed": 10.0, "broke": 0.0, "pairing": "per sample, on the 30 shared test samples", "paired_samples": 30}}
    # By position, x's first 20 samples (ids 10-29) against the baseline's (ids 0-19) would read as nothing fixed.


def test_flips_leave_out_a_variant_that_shares_too_few_samples():
    results = [result("baseline", 0, np.arange(40)), result("x", 0, np.arange(35, 75))]
    correct = [np.ones(40), np.zeros(40)]
    assert flips(results, correct, "baseline", crossed=True) == {}


def test_ensemble_labels_keep_names_with_commas_apart():
    probabilities = [[0.9, 0.1], [0.2, 0.8]]
    names = ["a, b", "c", "a", "b, c"]
    results = [result(name, seed, [0, 1], probabilities=probabilities, labels=[0, 1]) for name in names for seed in (0, 1)]
    table = [{"name": name, "val_accuracy": {"mean": 0.9 - 0.1 * i}} for i, name in enumerate(names)]
    found = ensembles(results, table)
    assert found["top_k"]["variants"] == ["a, b", "c", "a"]
    assert found["top_k"]["label"] == 'ensemble of the top 3 variants by validation: "a, b", "c", "a"'
    assert found["per_variant"]["b, c"]["label"] == 'ensemble of 2 seeds of "b, c"'
    assert found["per_variant"]["b, c"]["test_accuracy"] == 1.0


def test_seeds_on_their_own_splits_are_not_averaged_into_an_ensemble():
    probabilities, labels = [[0.9, 0.1], [0.2, 0.8]], [0, 1]
    results = [result("a", seed, [seed, seed + 10], probabilities=probabilities, labels=labels) for seed in (0, 1)]
    found = ensembles(results, [{"name": "a", "val_accuracy": {"mean": 0.9}}])
    assert found["per_variant"]["a"]["test_accuracy"] is None and "different test samples" in found["per_variant"]["a"]["note"]
    assert found["top_k"] is None
