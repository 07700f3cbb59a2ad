import os
import random

import numpy as np
import pytest
import torch

# albumentations must not look for updates online while the tests run.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

# Small settings that keep a whole pipeline run to a second or two on a CPU.
FAST = ["train.epochs=3", "model.channels=[8]", "model.hidden=[16]"]


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture
def dirs(tmp_path):
    """A fresh cache folder and runs folder for one test."""
    return {"cache_dir": tmp_path / "cache", "runs_dir": tmp_path / "runs"}
