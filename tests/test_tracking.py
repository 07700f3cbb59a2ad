"""`--track mlflow`: runs logged to a real MLflow store in a temporary folder, read back with MlflowClient."""

import json
import sys
from pathlib import Path

import pytest

from conftest import FAST
from pipeline.cli import main

mlflow = pytest.importorskip("mlflow")


def runs_of(uri):
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("gainsplit")
    return client, client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])


def test_a_run_is_logged_with_its_config_curves_metrics_and_records_and_a_cached_rerun_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MLflow keeps a SQLite store's artifacts in ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["run", *FAST, "train.device=cpu", f"tracking.uri={uri}", "--track", "mlflow", "--cache-dir", str(tmp_path / "c"), "--runs-dir", str(tmp_path / "r")]
    assert main([*args, "--json"]) == 0
    record = json.loads(Path(json.loads(capsys.readouterr().out)["record"]).read_text())
    assert main([*args, "--quiet"]) == 0
    client, (first, again) = runs_of(uri)
    assert first.data.params["train.epochs"] == "3" and first.data.params["model.channels"] == "[8]"
    assert first.data.metrics["test_accuracy"] == pytest.approx(record["metrics"]["test_accuracy"])
    curve = client.get_metric_history(first.info.run_id, "val_loss")
    assert [point.step for point in curve] == list(range(1, record["metrics"]["epochs_run"] + 1))
    assert first.data.tags["gainsplit.cached"] == "false" and first.data.tags["gainsplit.stage.train"] == "miss"
    assert again.data.tags["gainsplit.cached"] == "true" and again.data.tags["gainsplit.stage.train"] == "hit"
    assert again.data.metrics["test_accuracy"] == first.data.metrics["test_accuracy"]  # the cached result, not a new training
    assert sorted(a.path for a in client.list_artifacts(first.info.run_id)) == ["history.csv", "run.json"]


def test_an_ablation_is_a_parent_run_with_a_child_per_variant_and_seed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    (tmp_path / "a.yaml").write_text(
        "data: {source: 'sklearn:wine'}\nmodel: {hidden: [8]}\ntrain: {epochs: 2, device: cpu}\n"
        f"tracking: {{uri: '{uri}', experiment: gainsplit}}\n"
        "ablation:\n  seeds: [0, 1]\n  factors:\n    model.dropout: {side: model, values: [0.0, 0.3]}\n"
    )
    out = tmp_path / "out"
    assert main(["ablate", "--config", str(tmp_path / "a.yaml"), "--out", str(out), "--cache-dir", str(tmp_path / "c"), "--quiet", "--track", "mlflow"]) == 0
    client, runs = runs_of(uri)
    parents = [r for r in runs if r.data.tags.get("gainsplit.kind") == "ablation"]
    assert len(parents) == 1
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted((r.data.tags["gainsplit.variant"], r.data.tags["gainsplit.seed"]) for r in children) == [
        ("baseline", "0"), ("baseline", "1"), ("model.dropout=0.3", "0"), ("model.dropout=0.3", "1"),
    ]
    summary = json.loads((out / "summary.json").read_text())
    assert parent.data.tags["gainsplit.best_variant"] == summary["best_variant"] and parent.data.params["metric"] == "accuracy"
    # Every effect, with its interval and adjusted p-value, is a metric of the parent run.
    effect = summary["effects"][0]
    logged = {key: value for key, value in parent.data.metrics.items() if key.startswith("effect.")}
    (mean_key,) = [key for key in logged if key.endswith(".mean") and "model.dropout from 0.0 to 0.3" in key]
    stem = mean_key.removesuffix(".mean")
    assert logged[mean_key] == pytest.approx(effect["summary"]["mean"])
    assert logged[f"{stem}.p_holm"] == pytest.approx(effect["p_holm"]) and logged[f"{stem}.p"] == pytest.approx(effect["p_value"])
    assert logged[f"{stem}.low"] <= logged[mean_key] <= logged[f"{stem}.high"]
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"report.md", "report.html", "summary.json", "runs.csv", "plots"} <= artifacts
    assert (tmp_path / "mlruns").is_dir()


def test_tracking_without_mlflow_installed_is_a_clear_error_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if it were not installed
    status = main(["run", *FAST, "--track", "mlflow", "--cache-dir", str(tmp_path / "c"), "--runs-dir", str(tmp_path / "r")])
    assert status == 2 and "--track mlflow needs MLflow: pip install -e '.[mlflow]'" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_mlflow_refusing_its_file_store_says_what_to_use_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    if int(mlflow.__version__.split(".")[0]) < 3:
        pytest.skip("MLflow 2 still takes a file store")
    status = main(["run", *FAST, "--track", "mlflow", f"tracking.uri=file:{tmp_path / 'mlruns'}", "--cache-dir", str(tmp_path / "c"), "--runs-dir", str(tmp_path / "r")])
    error = capsys.readouterr().err
    if status == 0:
        pytest.skip(f"MLflow {mlflow.__version__} still takes a file store")
    assert status == 2 and "MLflow refuses the file store at tracking.uri=file:" in error and "tracking.uri=sqlite:///mlflow.db" in error
    assert not (tmp_path / "c").exists() and not (tmp_path / "r").exists()
