import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import FAST, ROOT, cli
from pipeline import cli as cli_module
from pipeline.cli import main


def test_run_prints_table_and_writes_record(tmp_path):
    done = cli("run", *FAST, "--cache-dir", "c", "--runs-dir", "r", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["stage", "key", "cache", "seconds"]
    assert [line.split()[0] for line in lines[1:5]] == ["collect", "augment", "scale", "train"]
    assert all(line.split()[2] == "miss" for line in lines[1:5])
    assert "test accuracy:" in done.stdout
    (record,) = (tmp_path / "r").glob("*/run.json")
    assert json.loads(record.read_text())["metrics"]["epochs_run"] == 3

    again = cli("run", *FAST, "--cache-dir", "c", "--runs-dir", "r", "--quiet", cwd=tmp_path)
    assert again.returncode == 0 and len(again.stdout.splitlines()) == 1
    assert again.stdout.startswith("test accuracy ") and again.stdout.rstrip().endswith("run.json")


def test_json_prints_the_record_summary_and_nothing_else(tmp_path):
    done = cli("run", "--json", *FAST, "--cache-dir", "c", "--runs-dir", "r", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    record = json.loads((tmp_path / summary["record"]).read_text())
    assert summary["metrics"]["test_accuracy"] == record["metrics"]["test_accuracy"]
    assert [stage["cache"] for stage in summary["stages"]] == ["miss"] * 4
    assert summary["model"] == record["model"] and summary["model"]["parameters"] > 0


def test_options_and_overrides_go_anywhere_after_the_command(tmp_path, monkeypatch, capsys):
    """The parser's job, so in this process (the `python -m pipeline` entry has tests of its own)."""
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--quiet", "train.epochs=3", "--cache-dir", "c", "model.channels=[8]", "--runs-dir", "r", "model.hidden=[16]"]) == 0
    (record,) = (tmp_path / "r").glob("*/run.json")
    config = json.loads(record.read_text())["config"]
    assert config["train"]["epochs"] == 3 and config["model"]["channels"] == [8] and config["model"]["hidden"] == [16]
    capsys.readouterr()
    for args in (["cache", "verify", "--cache-dir", "c"], ["cache", "--cache-dir", "c", "verify"], ["cache", "ls", "--cache-dir", "c"]):
        assert main(args) == 0
        assert "4 entries" in capsys.readouterr().out
    for args, unrecognized in ((["cache", "verify", "--cache-dri", "c"], "--cache-dri"), (["cache", "ls", "train.epochs=3"], "train.epochs=3")):
        with pytest.raises(SystemExit) as exited:
            main(args)
        assert exited.value.code == 2 and f"unrecognized arguments: {unrecognized}" in capsys.readouterr().err


def test_data_warnings_are_one_line_kept_in_the_record_and_shown_again_on_a_hit(tmp_path):
    first = cli("run", *FAST, "data.source=sklearn:iris", "--quiet", cwd=tmp_path)
    second = cli("run", *FAST, "data.source=sklearn:iris", "--quiet", cwd=tmp_path)
    for done in (first, second):
        assert done.returncode == 0, done.stderr
        assert done.stderr.splitlines() == ["warning: sklearn:iris: 1 duplicate feature rows"]
    records = [json.loads(path.read_text()) for path in (tmp_path / "runs").glob("*/run.json")]
    assert all(record["warnings"] == ["sklearn:iris: 1 duplicate feature rows"] for record in records)
    assert sorted(record["stages"][0]["cache"] for record in records) == ["hit", "miss"]


def test_explain_into_a_closed_pipe_ends_quietly(tmp_path):
    command = f"{sys.executable} -m pipeline explain {' '.join(FAST)} | head -1"
    done = subprocess.run(command, shell=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    assert done.stdout.startswith("collect") and len(done.stdout.splitlines()) == 1
    assert done.stderr == ""


def test_the_command_freezes_the_collector_only_as_it_ends(monkeypatch, capsys):
    """`python -m pipeline` skips the collector's walk at exit; the status and output are main's."""
    frozen = []  # what the command had printed when the collector was frozen
    monkeypatch.setattr(cli_module.gc, "freeze", lambda: frozen.append(capsys.readouterr()))
    assert cli_module.command(["show-config", "train.epochs=3"]) == 0
    assert len(frozen) == 1 and "epochs: 3" in frozen[0].out
    assert cli_module.command(["show-config", "train.epochs=zero"]) == 2
    assert len(frozen) == 2 and "train.epochs" in frozen[1].err
    with pytest.raises(SystemExit) as stopped:
        cli_module.command(["--help"])
    assert stopped.value.code == 0 and len(frozen) == 3 and "usage" in frozen[2].out


def test_cache_dir_from_environment(tmp_path):
    done = cli("run", *FAST, "--quiet", cwd=tmp_path, env={"PIPELINE_CACHE_DIR": str(tmp_path / "envcache")})
    assert done.returncode == 0, done.stderr
    stages = sorted(p.name for p in (tmp_path / "envcache").iterdir() if not p.name.startswith("."))
    assert stages == ["augment", "collect", "scale", "train"]
    assert (tmp_path / "runs").is_dir()


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "trian.epochs=5"], "Did you mean 'train.epochs'?"),
        (["run", "train.epochs=-1"], "'train.epochs'"),
        (["run", "scale.method=zscore"], "'none', 'minmax' or 'standard'"),
        (["show-config", "--config", "missing.yaml"], "missing.yaml"),
    ],
)
def test_bad_config_exits_2_and_writes_nothing(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_show_config_resolves_file_and_overrides(tmp_path, monkeypatch, capsys):
    (tmp_path / "my.yaml").write_text("train: {epochs: 9}\n")
    monkeypatch.chdir(tmp_path)
    assert main(["show-config", "--config", "my.yaml", "model.dropout=0.25"]) == 0
    shown = capsys.readouterr().out
    assert "epochs: 9" in shown and "dropout: 0.25" in shown


@pytest.mark.slow
def test_concurrent_runs_build_each_key_once(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "pipeline", "run", *FAST, "--quiet", "--cache-dir", "c", "--runs-dir", "r"]
    processes = [subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for process in processes:
        assert process.wait(timeout=300) == 0, process.stderr.read()
        process.stderr.close()
    records = [json.loads(path.read_text()) for path in (tmp_path / "r").glob("*/run.json")]
    assert len(records) == 3
    for index, name in enumerate(["collect", "augment", "scale", "train"]):
        outcomes = [record["stages"][index] for record in records]
        assert sorted(o["cache"] for o in outcomes) == ["hit", "hit", "miss"], name
        assert len({o["output_sha256"] for o in outcomes}) == 1


def weight_checksums_and_history(cache_dir):
    (meta_path,) = (cache_dir / "train").glob("*/meta.json")
    meta = json.loads(meta_path.read_text())
    weights = {name: entry["sha256"] for name, entry in meta["files"].items()}
    history = [{k: v for k, v in row.items() if k != "seconds"} for row in meta["info"]["history"]]
    return weights, history, meta["info"]["metrics"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "device",
    [
        pytest.param(["train.device=cpu"], id="cpu"),
        # On CUDA only deterministic kernels promise bit-identical weights (see the README).
        pytest.param(["train.device=cuda", "train.deterministic=true"], marks=pytest.mark.cuda, id="cuda-deterministic"),
    ],
)
def test_killed_training_resumes_to_the_same_result(tmp_path, device):
    # A checkpoint after every epoch, so the kill after epoch 2 leaves epoch 2's.
    args = ["run", "train.epochs=5", "model.channels=[8]", "model.hidden=[16]", "model.dropout=0.2", "train.checkpoint_every=0"]
    args += [*device, "--quiet"]
    whole = cli(*args, "--cache-dir", "whole", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr

    killed = cli(*args, "--cache-dir", "killed", cwd=tmp_path, fault="kill-after-epoch=2")
    assert killed.returncode == -9
    (checkpoint,) = (tmp_path / "killed" / ".checkpoints" / "train").glob("*.pt")
    assert not list((tmp_path / "killed" / "train").glob("*/meta.json"))

    resumed = cli(*args, "--cache-dir", "killed", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert not checkpoint.exists()
    weights, history, metrics = weight_checksums_and_history(tmp_path / "killed")
    expected_weights, expected_history, expected_metrics = weight_checksums_and_history(tmp_path / "whole")
    assert weights == expected_weights
    assert history == expected_history
    assert metrics["resumed_from_epoch"] == 2
    assert metrics["test_accuracy"] == expected_metrics["test_accuracy"]


def test_cuda_device_without_cuda_is_a_clear_error(tmp_path, monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # also on a machine that has CUDA
    monkeypatch.chdir(tmp_path)
    assert main(["run", "train.device=cuda"]) == 2
    assert "train.device is 'cuda' but CUDA is not available" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_header_less_uci_table_runs_with_the_target_by_position(tmp_path, capsys):
    rng = np.random.default_rng(0)
    rows = [[*(rng.normal(size=3) + label).round(3), label] for label in (3, 5, 6) for _ in range(40)]
    (tmp_path / "quality.csv").write_text("\n".join(";".join(str(v).replace(".", ",") for v in row) for row in rows) + "\n")
    args = ["run", "data.source=csv:" + str(tmp_path / "quality.csv"), "data.target=-1", "train.epochs=2", "train.device=cpu", "--json"]
    assert main([*args, "--cache-dir", str(tmp_path / "c"), "--runs-dir", str(tmp_path / "r")]) == 0
    summary = json.loads(capsys.readouterr().out)
    record = json.loads(Path(summary["record"]).read_text())
    assert sum(sum(counts) for counts in record["data"]["class_counts"].values()) == 120  # no row taken for a header
    assert record["data"]["class_names"] == ["3", "5", "6"] and record["data"]["feature_names"] == ["0", "1", "2"]
    assert record["data"]["provenance"]["decimal"] == "," and summary["model"]["type"] == "mlp"


def _fails_with(exc):
    def fit_array(*args, **kwargs):
        raise exc

    return fit_array


@pytest.mark.parametrize(
    "raised, message",
    [
        pytest.param("diverged", r"error: training diverged: NaN or inf at epoch 2, batch 2.*a lower optim\.lr", id="diverged"),
        pytest.param("oom", r"error: training ran out of memory on cpu; lower train\.batch_size", id="out-of-memory"),
    ],
)
def test_a_run_that_fails_at_run_time_exits_1_and_keeps_the_data_stages(tmp_path, monkeypatch, capsys, raised, message):
    import torch

    import trainers.loop

    exc = trainers.loop.TrainingDiverged("NaN or inf at epoch 2, batch 2") if raised == "diverged" else torch.OutOfMemoryError("out of memory")
    monkeypatch.setattr(trainers.loop, "fit_array", _fails_with(exc))
    args = ["run", *FAST, "train.device=cpu", "--quiet", "--cache-dir", str(tmp_path / "c"), "--runs-dir", str(tmp_path / "r")]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert re.search(message, err) and "entries cached before the failure are intact" in err
    assert {p.parent.parent.name for p in (tmp_path / "c").glob("*/*/meta.json")} == {"collect", "augment", "scale"}
    assert not (tmp_path / "r").exists()
    assert main([*args, "train.epochs=0"]) == 2  # a configuration error is still the user's to fix: 2


def test_a_fused_ablation_that_diverges_exits_1(tmp_path, monkeypatch, capsys):
    import trainers.loop

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(trainers.loop, "fit_array", _fails_with(trainers.loop.TrainingDiverged("NaN or inf at epoch 1, batch 1")))
    (tmp_path / "a.yaml").write_text(
        "data: {source: 'sklearn:wine'}\nmodel: {hidden: [8]}\ntrain: {epochs: 2, device: cpu}\n"
        "ablation:\n  seeds: [0, 1]\n  factors:\n    model.dropout: {side: model, values: [0.0, 0.3]}\n"
    )
    assert main(["ablate", "--config", "a.yaml", "--cache-dir", "c", "--out", "out", "--quiet"]) == 1
    assert "error: training diverged" in capsys.readouterr().err and not (tmp_path / "out" / "summary.json").exists()


def test_an_unreachable_tracker_exits_1_before_any_work(tmp_path, monkeypatch, capsys):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    args = ["run", *FAST, "tracking.uri=http://127.0.0.1:9", "--track", "mlflow", "--cache-dir", str(tmp_path / "c"), "--runs-dir", str(tmp_path / "r")]
    assert main(args) == 1
    assert "error: MLflow at tracking.uri=http://127.0.0.1:9 could not log" in capsys.readouterr().err
    assert not (tmp_path / "c").exists() and not (tmp_path / "r").exists()


@pytest.mark.parametrize("jobs, message", [("0", "0 is fewer than 1"), ("-3", "-3 is fewer than 1"), ("two", "'two' is not a whole number")])
def test_ablate_jobs_must_count_at_least_one_worker(tmp_path, monkeypatch, capsys, jobs, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(["ablate", "--jobs", jobs])
    assert exited.value.code == 2 and f"argument --jobs: {message}" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
