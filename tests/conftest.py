import os
import random
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

# albumentations must not look for updates online while the tests run.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
# cuBLAS reads this when it starts; in-process runs with train.deterministic=true need it set first.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

# Small settings that keep a whole pipeline run to a second or two on a CPU.
FAST = ["train.epochs=3", "model.channels=[8]", "model.hidden=[16]"]


def pytest_collection_modifyitems(config, items):
    """Tests marked `cuda` skip cleanly on a machine without a CUDA device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def fake_cuda(monkeypatch):
    """Pretend this machine has two CUDA devices, the current one `cuda:0`, without touching a GPU.

    Set `fake_cuda.current` or `fake_cuda.count` to change them.
    """
    state = SimpleNamespace(count=2, current=0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: state.count)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: state.current)
    return state


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _restore_determinism_flags():
    """An in-process run with train.deterministic=true sets process-wide flags; undo them."""
    flags = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    yield
    torch.use_deterministic_algorithms(flags[0])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = flags[1:]


@pytest.fixture
def dirs(tmp_path):
    """A fresh cache folder and runs folder for one test."""
    return {"cache_dir": tmp_path / "cache", "runs_dir": tmp_path / "runs"}


ROOT = Path(__file__).resolve().parents[1]


def cli(*args, cwd, env=None, fault=None):
    """`python -m pipeline ARGS` in a subprocess, with this checkout importable; `fault` (e.g.
    "kill-after-epoch=2") runs it through `inject_fault.py` instead."""
    command = [sys.executable, str(ROOT / "tests" / "inject_fault.py"), fault] if fault else [sys.executable, "-m", "pipeline"]
    return subprocess.run(
        [*command, *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


HOLD_LOCK = "import sys, time; from filelock import FileLock; lock = FileLock(sys.argv[1]); lock.acquire(); print('held', flush=True); time.sleep(120)"


def hold_lock(path):
    """A separate process that takes the file lock at `path` and keeps it until killed."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def stop(holder):
    holder.kill()
    holder.wait(timeout=10)
    holder.stdout.close()
