"""Where an ablation's trainings run: in this process, in local worker processes, or as Ray tasks.

Every executor runs the same `run_task` on the same `Task` and returns results in task order,
so the summary and report do not depend on the executor. Workers share the stage cache
through the file system; its atomic writes and per-key locks make each key built once, also
across the nodes of a Ray cluster when the cache folder is on a file system they all mount.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any, Callable

from pipeline.config import Config, load_config
from pipeline.runner import run_pipeline

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class Task:
    """One training of the ablation, as plain data a worker process or Ray task can take."""

    variant: str
    seed: int
    base: dict[str, Any]
    overrides: tuple[str, ...]
    cache_dir: str
    runs_dir: str


def task_config(task: Task) -> Config:
    return load_config(None, [*task.overrides, f"train.seed={task.seed}"], base=task.base)


def run_task(task: Task, threads: int | None = None) -> dict[str, Any]:
    """Run one training through the cached pipeline; `threads` caps torch's intra-op threads."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    result = run_pipeline(task_config(task), task.cache_dir, task.runs_dir, progress=False)
    return {"variant": task.variant, "seed": task.seed, "run_dir": str(result.run_dir), "record": result.record}


def run_local(tasks: list[Task], jobs: int, done: Callable[[], None]) -> list[dict[str, Any]]:
    """In this process (`jobs` 1), or in `jobs` spawned processes that split the cores, and the
    GPUs when there are several, between them."""
    if jobs <= 1:
        results = []
        for task in tasks:
            results.append(run_task(task))
            done()
        return results
    threads = max(1, (os.cpu_count() or 1) // jobs)
    context = get_context("spawn")
    results = []
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=claim_gpu, initargs=(context.Value("i", 0),)) as pool:
        for result in pool.map(run_task, tasks, [threads] * len(tasks)):
            results.append(result)
            done()
    return results


def claim_gpu(counter: Any) -> None:
    """Make the next GPU in turn this worker's current CUDA device, so that `--jobs 8` on eight
    GPUs trains on all eight (`train.device` auto or cuda means the current device; an explicit
    cuda:N is kept). With one GPU or none, nothing changes."""
    import torch

    if not torch.cuda.is_available() or torch.cuda.device_count() < 2:
        return
    with counter.get_lock():
        index, counter.value = counter.value, counter.value + 1
    torch.cuda.set_device(index % torch.cuda.device_count())


def wants_gpu(task: Task, cluster_gpus: float) -> bool:
    device = task_config(task).train.device
    return device.startswith("cuda") or (device == "auto" and cluster_gpus > 0)


def run_on_ray(
    tasks: list[Task], address: str | None, done: Callable[[], None], init_options: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Each training as a Ray task declaring one CPU, and one GPU when it trains on CUDA.

    Without `address`, a local Ray instance is started for the ablation and stopped after it.
    """
    try:
        import ray
    except ImportError:
        raise ValueError("--executor ray needs Ray: pip install 'gainsplit[ray]' (on every node of the cluster).") from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, **(init_options or {}))
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        remote = ray.remote(run_task)
        refs = [remote.options(num_cpus=1, num_gpus=1 if wants_gpu(task, gpus) else 0).remote(task, 1) for task in tasks]
        results = []
        for ref in refs:
            results.append(ray.get(ref))
            done()
        return results
    finally:
        if started_here:
            ray.shutdown()
