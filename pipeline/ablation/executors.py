"""Where an ablation's trainings run: in this process, in local worker processes, or as Ray tasks.

Every executor runs the same `run_unit` on the same units of tasks (one task, or several that
train as one fused array) and returns results in task order, so the summary and report do not
depend on the executor. Workers share the stage cache
through the file system; its atomic writes and per-key locks make each key built once, also
across the nodes of a Ray cluster when the cache folder is on a file system they all mount.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

from datasets import DataWarning
from pipeline.ablation import progress
from pipeline.ablation.fusion import run_unit
from pipeline.ablation.plan import Task, TrainingResult
from pipeline.errors import RunFailed

EXECUTORS = ("local", "ray")


Unit = list[Task]


def _in_task_order(units: list[Unit], unit_results: list[list[TrainingResult]], tasks: list[Task]) -> list[TrainingResult]:
    position = {id(task): index for index, task in enumerate(tasks)}
    ordered: dict[int, TrainingResult] = {}
    for unit, results in zip(units, unit_results):
        for task, result in zip(unit, results):
            ordered[position[id(task)]] = result
    return [ordered[index] for index in range(len(tasks))]


def run_local(tasks: list[Task], units: list[Unit], jobs: int, done: progress.Sink) -> list[TrainingResult]:
    """In this process (`jobs` 1), or in `jobs` spawned processes that split the cores, and the
    GPUs when there are several, between them. `done` hears the member-epochs trained, as they train."""
    if jobs <= 1:
        with progress.reporting_to(done):
            return _in_task_order(units, [run_unit(unit) for unit in units], tasks)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    context = get_context("spawn")
    queue = context.Queue()
    with progress.receiving(queue, done):
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=start_worker, initargs=(context.Value("i", 0), queue)) as pool:
            unit_results = list(pool.map(run_unit, units, [threads] * len(units)))
    return _in_task_order(units, unit_results, tasks)


def start_worker(counter: Any, queue: Any) -> None:
    """A local worker: quiet about the data (preparing the ablation already warned about it, once),
    on its GPU, reporting its progress through `queue`."""
    warnings.simplefilter("ignore", DataWarning)
    claim_gpu(counter)
    progress.start_sending(queue)


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
    device = task.config.train.device
    return device.startswith("cuda") or (device == "auto" and cluster_gpus > 0)


def _token_hint() -> str:
    """Ray 2.59 and later start clusters with token authentication: a driver without
    RAY_AUTH_MODE=token sends no token and is turned away with a message about a crashed instance."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
        return " (RAY_AUTH_MODE=token is set: is this the cluster's token, in RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token?)"
    return (
        "; if the cluster uses token authentication (Ray 2.59 and later turn it on by default), run with RAY_AUTH_MODE=token "
        "and the cluster's token in ~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN (docs/distributed.md)"
    )


def run_on_ray(
    tasks: list[Task],
    units: list[Unit],
    address: str | None,
    done: progress.Sink,
    init_options: dict[str, Any] | None = None,
) -> list[TrainingResult]:
    """Each unit as a Ray task declaring one CPU, and one GPU when it trains on CUDA; `done`
    hears a unit's member-epochs when it returns.

    Without `address`, a local Ray instance is started for the ablation and stopped after it.
    """
    try:
        import ray
    except ImportError:
        raise ValueError("--executor ray needs Ray: pip install 'gainsplit[ray]' (on every node of the cluster).") from None
    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, **(init_options or {}))
        except (ConnectionError, ray.exceptions.AuthenticationError) as exc:
            raise RunFailed(f"cannot reach the Ray cluster at {address}: {exc}{_token_hint()}") from None
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        remote = ray.remote(run_unit)
        refs = [remote.options(num_cpus=1, num_gpus=1 if wants_gpu(unit[0], gpus) else 0).remote(unit, 1) for unit in units]
        unit_results = []
        for unit, ref in zip(units, refs):
            unit_results.append(ray.get(ref))
            done(progress.budget(unit))
        return _in_task_order(units, unit_results, tasks)
    finally:
        if started_here:
            ray.shutdown()
