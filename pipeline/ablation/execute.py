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

from datasets import DataWarning
from pipeline.ablation.analysis import analyse
from pipeline.ablation.design import AblationConfig
from pipeline.ablation.executors import EXECUTORS, run_local, run_on_ray
from pipeline.ablation.fusion import fusion_units
from pipeline.ablation.plan import AblationPlan, Task, TrainingResult, plan_ablation
from pipeline.ablation.prepare import ablation_stages, prepare
from pipeline.ablation.progress import ProgressBar
from pipeline.ablation.report import FLIPPED_FILE, SUMMARY_FILE
from pipeline.ablation.scores import METRICS
from pipeline.ablation.sequential import Looks
from pipeline.ablation.stats import json_safe
from pipeline.cache import CacheStore
from pipeline.files import naming, write_atomic
from pipeline.keys import remembered_fingerprints

def execute(
    tasks: list[Task], jobs: int, progress: bool, executor: str = "local", ray_address: str | None = None,
    ray_options: dict[str, Any] | None = None, fuse: bool = True, solo: Collection[tuple[str, int, int | None]] = (),
) -> list[TrainingResult]:
    """Run the trainings with the chosen executor, those that can train as one fused array
    together (`fuse`), those in `solo` (variant, seed, fold) one at a time; results come back in task order."""
    if executor not in EXECUTORS:
        raise ValueError(f"Unknown executor {executor!r}. Known: {', '.join(EXECUTORS)}.")
    units = fusion_units(tasks, fuse, solo=solo)
    bar = ProgressBar(tasks, progress)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # `prepare` said it about the data, once
        try:
            if executor == "ray":
                return run_on_ray(tasks, units, ray_address, bar, ray_options)
            return run_local(tasks, units, jobs, bar)
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
    image data); return the summary. Plan -> prepare data -> train -> analyse, each once; with
    `ablation.until_decided`, again for each look's added seeds (trained as fused batches) until
    `stop_reason` has one."""
    started = time.perf_counter()
    counts, seeds = ablation.looks(), ablation.all_seeds()
    store = CacheStore(cache_dir)
    tasks: list[Task] = []
    results: list[TrainingResult] = []
    # The stages' code fingerprints from the cache's file, as a single run reads them: else each
    # ablation parses every stage module again.
    with remembered_fingerprints(store.root):
        for taken, count in enumerate(counts, 1):
            # This look's design, a fixed one of the seeds so far (`summary.json` keeps the looks apart, under `sequential`).
            design = ablation.model_copy(update={"seeds": seeds[:count], "until_decided": None})
            plan = plan_ablation(base, overrides, design, cache_dir.resolve(), out_dir.resolve() / "runs", resume)
            trained = {task.seed for task in tasks}
            prepared = prepare([task for task in plan.tasks if task.seed not in trained], progress, ablation.metric)
            fresh = execute(prepared.tasks, jobs, progress, executor, ray_address, ray_options, fuse, prepared.solo)
            for result in fresh:
                result.stages = ablation_stages(result, prepared)
            tasks, results = _in_plan_order(plan, tasks + prepared.tasks, results + fresh)
            looks = Looks(counts, taken, ablation.until_decided.boundary) if ablation.until_decided is not None else None
            summary, flipped = analyse(replace(plan, tasks=tasks), results, store, fuse, looks)
            reason = stop_reason(summary, ablation, taken == len(counts))
            if reason:
                break
    if ablation.until_decided is not None:
        summary["sequential"] |= {"stopped": reason, "until_decided": ablation.until_decided.model_dump(mode="json")}
    for run in summary["runs"]:
        run["run_dir"] = os.path.relpath(run["run_dir"], out_dir)
    summary["seconds"] = time.perf_counter() - started
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / FLIPPED_FILE).unlink(missing_ok=True)
    if flipped:
        with naming(out_dir / FLIPPED_FILE):
            np.savez(out_dir / FLIPPED_FILE, **flipped)
    write_atomic(out_dir / SUMMARY_FILE, json.dumps(json_safe(summary), indent=1, default=str, allow_nan=False))
    return summary


def _in_plan_order(plan: AblationPlan, tasks: list[Task], results: list[TrainingResult]) -> tuple[list[Task], list[TrainingResult]]:
    """Tasks and results as one plan of every seed so far would order them (variant, seed, fold)."""
    order = {task.run: position for position, task in enumerate(plan.tasks)}
    return sorted(tasks, key=lambda task: order[task.run]), sorted(results, key=lambda result: order[result.run])


def stop_reason(summary: dict[str, Any], ablation: AblationConfig, last_look: bool) -> str:
    """Why the ablation stops after this look ("" to go on): every effect of its metric decided,
    or undecided with an interval narrower than `until_decided.resolution`; or no look left."""
    if ablation.until_decided is None:
        return ""
    resolution = ablation.until_decided.resolution
    scale = METRICS[ablation.metric].scale
    gain = summary["verdict"]["gain"]
    listed = summary["effects"] + summary["interactions"] + summary["side_effects"] + ([gain] if gain else [])
    effects = list({effect["test_id"] or effect["name"]: effect for effect in listed}.values())  # a test met twice counts once
    open_ = [
        effect for effect in effects
        if not effect["decided"] and (resolution is None or not (effect["adjusted_high"] - effect["adjusted_low"]) * scale < resolution)
    ]
    if not open_:
        narrow = f" or narrower than {resolution:g}" if resolution is not None else ""
        return f"every effect was decided{narrow}"
    if last_look:
        return f"max_seeds ({ablation.until_decided.max_seeds}) reached with {len(open_)} of {len(effects)} effects open"
    return ""
