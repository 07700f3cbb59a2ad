"""Running an ablation: plan every training, build the data once, train the units (with the
executor of `executors.py`), analyse the results and write `summary.json`."""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Collection

import numpy as np
from tqdm.auto import tqdm

from datasets import DataWarning
from pipeline.ablation.analysis import analyse
from pipeline.ablation.design import AblationConfig
from pipeline.ablation.executors import EXECUTORS, run_local, run_on_ray
from pipeline.ablation.fusion import fusion_units
from pipeline.ablation.plan import Task, TrainingResult, plan_ablation
from pipeline.ablation.prepare import ablation_stages, prepare
from pipeline.ablation.report import FLIPPED_FILE, SUMMARY_FILE
from pipeline.ablation.stats import json_safe
from pipeline.cache import CacheStore

def execute(
    tasks: list[Task], jobs: int, progress: bool, executor: str = "local", ray_address: str | None = None,
    ray_options: dict[str, Any] | None = None, fuse: bool = True, solo: Collection[tuple[str, int, int | None]] = (),
) -> list[TrainingResult]:
    """Run the trainings with the chosen executor, those that can train as one fused array
    together (`fuse`), those in `solo` (variant, seed, fold) one at a time; results come back in task order."""
    if executor not in EXECUTORS:
        raise ValueError(f"Unknown executor {executor!r}. Known: {', '.join(EXECUTORS)}.")
    units = fusion_units(tasks, fuse, solo=solo)
    bar = tqdm(total=len(tasks), desc="ablation", unit="run", disable=not progress)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # `prepare` said it about the data, once
        try:
            if executor == "ray":
                return run_on_ray(tasks, units, ray_address, lambda: bar.update(1), ray_options)
            return run_local(tasks, units, jobs, lambda: bar.update(1))
        finally:
            bar.close()


def run_ablation(
    base: dict[str, Any],
    overrides: list[str],
    ablation: AblationConfig,
    out_dir: Path,
    cache_dir: Path,
    jobs: int = 1,
    progress: bool = True,
    executor: str = "local",
    ray_address: str | None = None,
    ray_options: dict[str, Any] | None = None,
    fuse: bool = True,
    resume: bool = False,
) -> dict[str, Any]:
    """Run every training of the ablation and write `<out>/summary.json` (and `flipped.npz` for
    image data); return the summary. Plan -> prepare data -> train -> analyse, each once."""
    plan = plan_ablation(base, overrides, ablation, cache_dir.resolve(), out_dir.resolve() / "runs", resume)
    started = time.perf_counter()
    prepared = prepare(plan.tasks, progress, ablation.metric)
    plan = replace(plan, tasks=prepared.tasks)
    results = execute(plan.tasks, jobs, progress, executor, ray_address, ray_options, fuse, prepared.solo)
    for result in results:
        result.stages = ablation_stages(result, prepared)
    summary, flipped = analyse(plan, results, CacheStore(cache_dir), fuse)
    for run in summary["runs"]:
        run["run_dir"] = os.path.relpath(run["run_dir"], out_dir)
    summary["seconds"] = time.perf_counter() - started
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / FLIPPED_FILE).unlink(missing_ok=True)
    if flipped:
        np.savez(out_dir / FLIPPED_FILE, **flipped)
    (out_dir / SUMMARY_FILE).write_text(json.dumps(json_safe(summary), indent=1, default=str, allow_nan=False))
    return summary
