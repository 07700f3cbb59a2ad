"""One training of an ablation as plain data a worker process or Ray task can take, and how it runs alone."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.cache import CachedArtifact
from pipeline.config import Config, load_config
from pipeline.runner import run_pipeline

# What reading an ablation in needs of each run, by stage: small, so it travels with the result.
PREDICTIONS = {"train": ("test_probabilities", "val_probabilities"), "scale": ("y_test", "y_val")}


@dataclass(frozen=True)
class Task:
    """One training of the ablation: a variant's overrides on the base config, and a seed."""

    variant: str
    seed: int
    base: dict[str, Any]
    overrides: tuple[str, ...]
    cache_dir: str
    runs_dir: str
    resume: bool = False  # continue an interrupted training from its checkpoint
    seed_overrides: tuple[str, ...] = ()  # what the seed sets (train.seed, and data.seed / augment.seed when varied)


def task_config(task: Task) -> Config:
    return load_config(None, [*task.overrides, *(task.seed_overrides or (f"train.seed={task.seed}",))], base=task.base)


def run_task(task: Task, threads: int | None = None) -> dict[str, Any]:
    """Run one training through the cached pipeline; `threads` caps torch's intra-op threads."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    result = run_pipeline(task_config(task), task.cache_dir, task.runs_dir, resume=task.resume, progress=False)
    return task_result(task, str(result.run_dir), result.record, result.artifacts)


def task_result(task: Task, run_dir: str, record: dict[str, Any], artifacts: Mapping[str, CachedArtifact]) -> dict[str, Any]:
    """A training's result as the ablation reads it in: its record and its predictions, copied out
    of the cache as soon as the run has them, so a `cache gc` meanwhile loses nothing."""
    arrays = {name: np.array(artifacts[stage].artifact.arrays[name]) for stage, names in PREDICTIONS.items() for name in names}
    return {"variant": task.variant, "seed": task.seed, "run_dir": run_dir, "record": record, "arrays": arrays}
