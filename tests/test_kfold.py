"""Cross-validated ablations: every sample tested once per seed, folds fused like seeds, effects
with Nadeau and Bengio's corrected variance."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from pipeline.ablation.design import AblationConfig
from pipeline.ablation.execute import run_ablation
from pipeline.api import load_ablation
from pipeline.config import ConfigError

BASE = {"train": {"epochs": 3, "device": "cpu"}, "model": {"channels": [8], "hidden": [16]}}
KFOLD = AblationConfig(
    design="full", seeds=[0, 1], vary=["train", "split"], resampling={"kind": "kfold", "folds": 4},
    factors={"scale.method": {"side": "data", "values": ["none", "standard"]}},
)


def test_a_k_fold_ablation_tests_every_sample_once_per_seed_and_corrects_the_variance(tmp_path):
    summary = run_ablation(BASE, [], KFOLD, tmp_path / "out", tmp_path / "cache", progress=False)
    assert summary["stages"]["train"] == {"built": 16, "hit": 0}  # 2 variants x 2 seeds x 4 folds
    records = {}
    for run in summary["runs"]:
        record = json.loads((tmp_path / "out" / run["run_dir"] / "run.json").read_text())
        records[(run["variant"], run["seed"], run["fold"])] = record
        assert record["fused_members"] == 16  # the folds fuse like the seeds (equal shapes)
    ids = {}
    for (variant, seed, fold), record in records.items():
        collect_key = next(stage["key"] for stage in record["stages"] if stage["name"] == "collect")
        ids.setdefault((variant, seed), []).append(np.load(tmp_path / "cache" / "collect" / collect_key / "id_test.npy"))
    for tested in ids.values():  # 1797 digits, 4 folds: one sample left out of the tests, the rest tested once
        everyone = np.concatenate(tested)
        assert len(everyone) == len(np.unique(everyone)) == 1796
    assert not np.array_equal(ids[("baseline", 0)][0], ids[("baseline", 1)][0])  # each seed its own partition

    # The effect from the runs' own test accuracies, fold by fold: (1/8 + n_test/n_train) s^2, 7 df.
    names = [v["name"] for v in summary["variants"]]
    differences = np.array([
        records[(names[1], seed, fold)]["metrics"]["test_accuracy"] - records[(names[0], seed, fold)]["metrics"]["test_accuracy"]
        for seed in (0, 1) for fold in range(4)
    ])
    first = records[(names[0], 0, 0)]
    test, train = sum(first["data"]["class_counts"]["test"]), sum(first["data"]["class_counts"]["train"])
    (effect,) = summary["effects"]
    assert effect["summary"]["n"] == 8 and effect["summary"]["df"] == 7 and effect["pairing"] == "per sample"
    assert effect["summary"]["mean"] == pytest.approx(differences.mean())
    assert effect["summary"]["se"] == pytest.approx(math.sqrt((1 / 8 + test / train) * differences.var(ddof=1)))
    assert summary["uncertainty"]["resampling"] == {"kind": "kfold", "folds": 4}
    assert any("Nadeau and Bengio" in source for source in summary["uncertainty"]["sources"])

    # Macro-F1 is each fold's model's on its own fold, averaged (not one F1 of the folds' pooled predictions).
    from sklearn.metrics import f1_score

    def fold_f1(record):
        train_key = next(stage["key"] for stage in record["stages"] if stage["name"] == "train")
        scale_key = next(stage["key"] for stage in record["stages"] if stage["name"] == "scale")
        predicted = np.load(tmp_path / "cache" / "train" / train_key / "test_probabilities.npy").argmax(axis=1)
        return f1_score(np.load(tmp_path / "cache" / "scale" / scale_key / "y_test.npy"), predicted, average="macro")

    for name in names:
        expected = np.mean([fold_f1(records[(name, seed, fold)]) for seed in (0, 1) for fold in range(4)])
        assert summary["by_metric"]["macro_f1"]["scores"][name]["test"]["mean"] == pytest.approx(expected, abs=1e-9)

    flipped = np.load(tmp_path / "out" / "flipped.npz")  # images of samples from every fold, read from their own fold's data
    assert len(flipped["images"]) > 0 and set(flipped["kinds"]) <= {"fixed", "broke"}
    ablation = load_ablation(tmp_path / "out")
    assert sorted(ablation.runs["fold"]) == sorted(list(range(4)) * 4)
    report = ablation.report(tmp_path / "out").read_text()
    assert "Nadeau and Bengio's corrected variance" in report and "Seconds per stage are means over the seeds (each seed's folds added)" in report


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"resampling": {"kind": "kfold"}}, r"add 'split' to vary"),
        ({"resampling": {"folds": 3}}, r"resampling\.folds=3 is set but resampling\.kind is 'holdout'"),
        ({"resampling": {"kind": "kfold"}, "vary": ["train", "split"], "factors": {"data.test_fraction": {"side": "data", "values": [0.2, 0.3]}}},
         r"data\.test_fraction cannot vary"),
    ],
)
def test_k_fold_settings_that_cannot_hold_are_refused(section, message):
    from pipeline.ablation.design import parse_ablation

    factors = {"factors": {"scale.method": {"side": "data", "values": ["none", "standard"]}}}
    with pytest.raises(ConfigError, match=message):
        parse_ablation({**factors, **section})
