"""Metrics from stored probabilities: sklearn's numbers, and each test sample's part in them."""

import warnings

import numpy as np
import pytest
from sklearn import metrics as sk

from pipeline.ablation.scores import EPSILON, METRICS, _auc_without_each, _macro_f1_without_each, applicable, per_sample, score


def predictions(n, classes, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=n)
    logits = rng.normal(size=(n, classes)) + 1.5 * np.eye(classes)[labels]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return probabilities, labels


@pytest.mark.parametrize("name", list(METRICS))
def test_each_samples_parts_average_to_sklearns_score(name):
    probabilities, labels = predictions(200, 2 if name == "roc_auc" else 4)
    parts = per_sample(name, probabilities, labels)
    assert parts.shape == labels.shape
    assert parts.mean() == pytest.approx(score(name, probabilities, labels), abs=1e-12)


def test_scores_are_sklearns_to_the_bit():
    """Over float32 and float64 probabilities, certain ones, classes absent from the labels or
    from the predictions: the numbers sklearn.metrics gives, exactly."""
    rng = np.random.default_rng(0)
    for trial in range(120):
        n, k = int(rng.integers(1, 300)), int(rng.integers(2, 12))
        labels = rng.integers(0, k if trial % 3 else max(1, k // 2), size=n)
        logits = rng.normal(size=(n, k)) * rng.uniform(0.1, 30) + rng.uniform(0, 5) * np.eye(k)[labels]
        probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities = (probabilities / probabilities.sum(axis=1, keepdims=True)).astype(np.float32 if trial % 2 else np.float64)
        if trial % 5 == 0:
            probabilities[: n // 3] = np.eye(k, dtype=probabilities.dtype)[labels[: n // 3]]
        predicted = probabilities.argmax(axis=1)
        present = np.unique(np.concatenate([labels, predicted]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sklearn's about classes only predicted and sums off 1 in float32
            expected = {
                "accuracy": sk.accuracy_score(labels, predicted),
                "balanced_accuracy": sk.balanced_accuracy_score(labels, predicted),
                "macro_f1": sk.f1_score(labels, predicted, average="macro", labels=present, zero_division=0),
                "log_loss": sk.log_loss(labels, np.clip(probabilities, EPSILON, 1 - EPSILON), labels=np.arange(k)),
            }
        assert {name: score(name, probabilities, labels) for name in expected} == {name: float(value) for name, value in expected.items()}, trial


def test_the_log_loss_of_probabilities_that_are_not_finite_is_an_error():
    probabilities, labels = predictions(20, 3)
    probabilities[4] = np.nan
    with pytest.raises(ValueError, match="not finite"):
        score("log_loss", probabilities, labels)


def test_leave_one_out_scores_match_recomputing_without_each_sample():
    probabilities, labels = predictions(40, 3, seed=1)
    predicted = probabilities.argmax(axis=1)
    classes = np.unique(np.concatenate([labels, predicted]))
    brute = [sk.f1_score(np.delete(labels, i), np.delete(predicted, i), labels=classes, average="macro", zero_division=0) for i in range(40)]
    np.testing.assert_allclose(_macro_f1_without_each(probabilities, labels), brute)
    binary, truth = predictions(40, 2, seed=2)
    binary[:5, 1] = binary[5:10, 1]  # ties between samples count a half
    brute = [sk.roc_auc_score(np.delete(truth, i), np.delete(binary[:, 1], i)) for i in range(40)]
    np.testing.assert_allclose(_auc_without_each(binary, truth), brute)


def test_accuracy_parts_are_correctness_and_roc_auc_needs_two_classes():
    probabilities, labels = predictions(50, 3)
    np.testing.assert_array_equal(per_sample("accuracy", probabilities, labels), probabilities.argmax(axis=1) == labels)
    assert applicable("roc_auc", 2) and not applicable("roc_auc", 3) and applicable("macro_f1", 3)


def test_an_ablation_reads_in_its_metric_and_re_renders_in_another(tmp_path, capsys):
    import json

    from pipeline.cli import main

    (tmp_path / "cancer.yaml").write_text(
        "data: {source: 'sklearn:breast_cancer'}\nmodel: {hidden: [8]}\ntrain: {epochs: 2, device: cpu}\n"
        "ablation:\n  metric: macro_f1\n  seeds: [0, 1]\n  factors:\n    model.dropout: {side: model, values: [0.0, 0.3]}\n"
    )
    out = tmp_path / "out"
    assert main(["ablate", "--config", str(tmp_path / "cancer.yaml"), "--out", str(out), "--cache-dir", str(tmp_path / "c"), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metric"] == "macro_f1" and set(summary["by_metric"]) == set(METRICS)  # two classes: ROC-AUC too
    assert all("test macro-F1" in effect["sentence"] for effect in summary["effects"])
    runs = [json.loads((out / run["run_dir"] / "run.json").read_text()) for run in summary["runs"]]
    assert all("per_class_accuracy" in run["metrics"] for run in runs)
    for name in ("accuracy", "log_loss"):
        reading = summary["by_metric"][name]
        chooser = max if METRICS[name].higher_is_better else min
        assert reading["best_variant"] == chooser(reading["scores"], key=lambda v: reading["scores"][v]["validation"]["mean"])
    assert summary["by_metric"]["accuracy"]["scores"]["baseline"]["test"]["mean"] == pytest.approx(summary["variants"][0]["test_accuracy"]["mean"])
    report = (out / "report.md").read_text()
    assert "Effects in test macro-F1 (percentage points)" in report and "| variant | test macro-F1 |" in report
    capsys.readouterr()
    before = (out / "report.md").read_text()
    assert main(["report", str(out), "--metric", "log_loss"]) == 0
    assert capsys.readouterr().out.strip() == str(out / "by-log_loss" / "report.md")
    assert (out / "report.md").read_text() == before  # the report in the ablation's own metric stays
    report = (out / "by-log_loss" / "report.md").read_text()
    assert "Effects in test log loss;" in report and "lowest mean validation log loss" in report
    assert all(effect["sentence"][1:] in report for effect in summary["by_metric"]["log_loss"]["effects"])
    with pytest.raises(SystemExit) as usage:  # argparse names the choices
        main(["report", str(out), "--metric", "nonsense"])
    assert usage.value.code == 2 and "invalid choice: 'nonsense'" in capsys.readouterr().err


def test_roc_auc_on_more_than_two_classes_stops_before_anything_trains(tmp_path, capsys):
    from pipeline.cli import main

    (tmp_path / "digits.yaml").write_text(
        "model: {channels: [4], hidden: [8]}\ntrain: {epochs: 1, device: cpu}\n"
        "ablation:\n  metric: roc_auc\n  seeds: [0, 1]\n  factors:\n    model.dropout: {side: model, values: [0.0, 0.3]}\n"
    )
    status = main(["ablate", "--config", str(tmp_path / "digits.yaml"), "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "c"), "--quiet"])
    assert status == 2 and "ablation.metric=roc_auc is for two classes; this data has 10" in capsys.readouterr().err
    assert not (tmp_path / "c" / "train").exists() and not (tmp_path / "out").exists()


def test_the_config_accepts_exactly_the_metrics_there_are():
    from typing import get_args

    from pipeline.ablation.design import AblationConfig

    assert set(get_args(AblationConfig.model_fields["metric"].annotation)) == set(METRICS)
