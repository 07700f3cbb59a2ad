"""One training across processes: torchrun with gloo on the CPU against the single-process run, and
NCCL on every GPU where there are GPUs."""

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT, cli
from pipeline.cli import main
from trainers.distributed import Distributed, init_from_env, shutdown

# Without BatchNorm (whose batch statistics are per rank on the CPU) two ranks' averaged gradients
# are the full batch's gradient: the runs agree up to float rounding.
SETTINGS = ["train.epochs=4", "train.device=cpu", "model.batch_norm=false", "--quiet", "--cache-dir", "cache", "--runs-dir", "runs"]


def test_shards_partition_every_batch():
    rows = torch.arange(10)
    shards = [Distributed(rank, 3).shard(rows) for rank in range(3)]
    assert sorted(torch.cat(shards).tolist()) == list(range(10))
    assert [len(s) for s in shards] == [4, 3, 3]


def test_ddp_without_torchrun_is_a_clear_error(tmp_path, capsys, monkeypatch):
    for name in ("WORLD_SIZE", "RANK"):
        monkeypatch.delenv(name, raising=False)
    status = main(["run", "train.distributed=ddp", "--cache-dir", str(tmp_path / "c"), "--runs-dir", str(tmp_path / "r")])
    assert status == 2
    assert "runs under torchrun" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_single_rank_job_trains_data_parallel_and_leaves_its_group(monkeypatch):
    """torchrun --nproc_per_node 1 (one GPU): still DDP, and the group is destroyed (NCCL warned before)."""
    env = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    context = init_from_env("cpu")
    try:
        assert context.active and context.is_main and torch.distributed.is_initialized()
    finally:
        shutdown(context)
    assert not torch.distributed.is_initialized()
    assert not Distributed().active


def torchrun(nproc: int, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node N -m pipeline run ARGS` on a free port, with this checkout importable."""
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port", str(free_port())]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([*launch, "-m", "pipeline", "run", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.rounding
def test_torchrun_two_processes_match_the_single_process_run(tmp_path):
    """Two ranks' averaged gradients are the full batch's gradient summed in another order, so the
    runs differ by float rounding, which Adam carries from step to step: within ten epochs the
    losses drifted apart by 1e-7 to 5e-3 of themselves on default and AVX2 kernels (1 and 2
    threads) and by 6e-4 on AVX-512, while another seed's differ by 4e-2 to 4e-1 from the second
    epoch on. So the losses agree within 3e-2 of themselves and the accuracies within two
    samples, not bit for bit."""
    ddp = torchrun(2, "train.distributed=ddp", *SETTINGS, cwd=tmp_path)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    (record_path,) = (tmp_path / "runs").glob("*/run.json")
    record = json.loads(record_path.read_text())
    assert record["world_size"] == 2

    single = cli("run", *SETTINGS, cwd=tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/run.json")]
    (alone,) = [r for r in records if r["world_size"] == 1]
    test_samples, val_samples = (sum(alone["data"]["class_counts"][split]) for split in ("test", "val"))
    assert abs(record["metrics"]["test_accuracy"] - alone["metrics"]["test_accuracy"]) * test_samples <= 2 + 1e-9
    histories = [list(csv.DictReader((p.parent / "history.csv").read_text().splitlines())) for p in (tmp_path / "runs").glob("*/run.json")]
    for ours, theirs in zip(*histories, strict=True):
        for column in ("train_loss", "val_loss"):
            assert float(ours[column]) == pytest.approx(float(theirs[column]), rel=3e-2), column
        assert abs(float(ours["val_accuracy"]) - float(theirs["val_accuracy"])) * val_samples <= 2 + 1e-9
    # The data stages were built once, by rank 0 of the torchrun job, and reused by the single run.
    assert [s["cache"] for s in alone["stages"][:3]] == ["hit", "hit", "hit"]


@pytest.mark.slow
@pytest.mark.cuda
def test_ddp_over_nccl_on_every_gpu_with_sync_batch_norm(tmp_path):
    gpus = torch.cuda.device_count()
    args = ["train.distributed=ddp", "train.device=cuda", "model.sync_batch_norm=true", "train.epochs=5"]
    done = torchrun(gpus, *args, "--quiet", "--cache-dir", "cache", "--runs-dir", "runs", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    (record_path,) = (tmp_path / "runs").glob("*/run.json")
    record = json.loads(record_path.read_text())
    assert record["world_size"] == gpus and record["sync_batch_norm"] is True
    assert record["device"] == "cuda:0" and record["metrics"]["test_accuracy"] >= 0.9
    assert "destroy_process_group" not in done.stderr  # the process group was left cleanly


@pytest.mark.slow
@pytest.mark.cuda
def test_more_ranks_than_gpus_stop_with_the_counts_and_the_fix(tmp_path):
    gpus = torch.cuda.device_count()
    done = torchrun(gpus + 1, "train.distributed=ddp", "train.device=cuda", "--quiet", "--cache-dir", "cache", cwd=tmp_path)
    assert done.returncode != 0
    assert f"torchrun started {gpus + 1} processes on this machine but it has {gpus} GPU(s)" in done.stderr
    assert "invalid device ordinal" not in done.stderr
    assert not (tmp_path / "cache").exists()
