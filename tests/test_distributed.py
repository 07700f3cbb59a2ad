"""One training across processes: torchrun with gloo on the CPU, against the single-process run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipeline.cli import main
from trainers.distributed import Distributed

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ["train.epochs=10", "--quiet", "--cache-dir", "cache", "--runs-dir", "runs"]


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


@pytest.mark.slow
def test_torchrun_two_processes_match_the_single_process_run(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517"]
    ddp = subprocess.run([*launch, "-m", "pipeline", "run", "train.distributed=ddp", *SETTINGS], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    (record_path,) = (tmp_path / "runs").glob("*/run.json")
    record = json.loads(record_path.read_text())
    assert record["world_size"] == 2

    single = subprocess.run([sys.executable, "-m", "pipeline", "run", *SETTINGS], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/run.json")]
    (alone,) = [r for r in records if r["world_size"] == 1]
    assert abs(record["metrics"]["test_accuracy"] - alone["metrics"]["test_accuracy"]) <= 0.01
    # The data stages were built once, by rank 0 of the torchrun job, and reused by the single run.
    assert [s["cache"] for s in alone["stages"][:3]] == ["hit", "hit", "hit"]
