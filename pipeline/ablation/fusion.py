"""Training an ablation's units: the runs whose training differs only in settings a member of a
fused array may hold on its own train as one array, and each member's result is cached under the
key its solo run would have, so fusion is an execution detail (like the number of threads).

Member-level settings: `train.seed`, `train.epochs`, `train.label_smoothing`, the optimizer's
`lr`, `momentum`, `nesterov` and `weight_decay`, `model.dropout` and `model.dropout_input`,
and every `schedule` and `early_stop` setting. Data-side variants fuse too, when their scaled
arrays have the same shapes. Everything else (architecture, batch norm, activation, init,
optimizer, batch size, device, precision) must match.

Every unit, of one run or of many, trains through `pipeline.stages.train.train_unit`, the
function `pipeline run`'s train stage calls.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Collection

import numpy as np
import torch

import trainers.capacity
import trainers.devices
from pipeline.ablation import progress
from pipeline.ablation.plan import Task, TrainingResult
from pipeline.cache import CachedArtifact, CacheStore
from pipeline.config import Config
from pipeline.lookup import shape_of
from pipeline.plugins import import_config_plugins
from pipeline.records import write_run_record
from pipeline.runner import PlannedStage, StageOutcome, plan_stages, run_record, run_stages
from pipeline.stages import RunContext, TrainStage, stages_before_training, training_stage
from pipeline.stages.collect import SPLITS
from pipeline.stages.train import train_unit, unit_member
from trainers.capacity import split_evenly

MEMBER_SETTINGS = {
    "model": {"dropout", "dropout_input"},
    "optim": {"lr", "momentum", "nesterov", "weight_decay"},
    "train": {"seed", "epochs", "label_smoothing"},
    "schedule": None,  # every setting
    "early_stop": None,
}
MAX_MEMBERS = 32
QUIET = RunContext(progress=False)
# What reading an ablation in needs of each run, by stage: small, so it travels with the result.
# `id_test` and `id_val` name each sample (see `pipeline.stages.collect`): runs on different
# splits are paired by them (`pipeline.ablation.pairing`), never by position.
PREDICTIONS = {"train": ("test_probabilities", "val_probabilities"), "scale": ("y_test", "y_val", "id_test", "id_val")}
log = logging.getLogger(__name__)


def fusion_key(config: Config) -> str:
    """What runs must share to train as one array: the training's parameters less the member-level ones."""
    params = TrainStage().params(config)
    shared = {}
    for section, value in params.items():
        if section in MEMBER_SETTINGS:
            own = MEMBER_SETTINGS[section]
            value = {} if own is None else {k: v for k, v in value.items() if k not in own}
        shared[section] = value
    return json.dumps(shared, sort_keys=True)


def fusion_units(
    tasks: list[Task], fuse: bool, max_members: int = MAX_MEMBERS, solo: Collection[tuple[str, int, int | None]] = ()
) -> list[list[Task]]:
    """The tasks in units of work: each task alone (`fuse` off, or its (variant, seed, fold) in `solo`:
    a network that does not fuse), or units of up to `max_members` tasks that may train as one array. Within a fusion group, the tasks whose data is collected
    and augmented alike up to the seeds (and so has the same shapes) stay in one unit where
    they fit: a unit trains one array per shape of data, and splitting a data variant across
    units would train more, smaller arrays."""
    if not fuse:
        return [[task] for task in tasks]
    groups: dict[str, dict[str, list[Task]]] = {}
    alone = [[task] for task in tasks if task.run in solo]
    for task in (task for task in tasks if task.run not in solo):
        config = task.config
        # Seeds and folds draw other samples of the same shapes (k-fold's folds are equal in size).
        settings = [config.data.model_dump(mode="json", exclude={"seed", "fold"}), config.augment.model_dump(mode="json", exclude={"seed"})]
        data_shape = json.dumps(settings, sort_keys=True)
        groups.setdefault(fusion_key(config), {}).setdefault(data_shape, []).append(task)
    return alone + [unit for by_data in groups.values() for unit in pack(list(by_data.values()), max_members)]


def pack(parts: list[list[Task]], capacity: int) -> list[list[Task]]:
    """Parts into as few units of at most `capacity` tasks as first-fit decreasing finds; a part
    larger than `capacity` is first cut into near-equal pieces."""
    pieces = [piece for part in parts for piece in split_evenly(part, capacity)]
    units: list[list[Task]] = []
    for piece in sorted(pieces, key=len, reverse=True):
        unit = next((unit for unit in units if len(unit) + len(piece) <= capacity), None)
        if unit is None:
            units.append(list(piece))
        else:
            unit.extend(piece)
    return units


@dataclass
class PreparedRun:
    """A task of a unit with its data read from the cache and its train stage keyed."""

    task: Task
    data: list[StageOutcome]
    results: dict[str, CachedArtifact]
    train: PlannedStage

    @property
    def shape(self) -> tuple:
        """What runs must share to train in one array: the shapes of their data and their classes."""
        arrays = self.results["scale"].artifact.arrays
        return tuple(shape_of(arrays, f"x_{split}") for split in SPLITS), len(self.results["collect"].artifact.info["class_names"])


def read_data(task: Task, store: CacheStore) -> tuple[list[StageOutcome], dict[str, CachedArtifact]]:
    """The entries the ablation built for `task` before training it (`Task.data`: its data stages
    and any pretraining), read and verified; built again, with a warning, where one is gone (a
    `cache gc` meanwhile): the same key gives the same bytes, or the ablation stops."""
    outcomes, results = [], {}
    for name in (stage.name for stage in stages_before_training(task.config)):
        started = time.perf_counter()
        cached = store.load(name, task.data[name]) if name in task.data else None
        if cached is None:
            return _build_data_again(task, store, name)
        results[name] = cached
        outcomes.append(StageOutcome(name, task.data[name], "hit", time.perf_counter() - started, cached.sha256))
    return outcomes, results


def _build_data_again(task: Task, store: CacheStore, missing: str) -> tuple[list[StageOutcome], dict[str, CachedArtifact]]:
    if task.data:
        log.warning("the cache no longer holds %s entry %s (removed during the ablation?); building it again", missing, task.data[missing][:12])
    outcomes, results = run_stages(task.config, store, context=QUIET, stages=stages_before_training(task.config))
    changed = [o.name for o in outcomes if task.data and o.key != task.data[o.name]]
    if changed:
        raise ValueError(f"{changed[0]} entry {task.data[changed[0]][:12]} came out under another key when built again: the data changed during the ablation")
    return outcomes, results


def run_unit(tasks: list[Task], threads: int | None = None) -> list[TrainingResult]:
    """Run a unit's trainings: read every member's data, train the members that miss the cache as
    one array per shape of data (split into as few arrays as the device's memory needs), and
    write each member's entry and run record."""
    if threads:
        torch.set_num_threads(threads)
    counted = progress.Counted()
    store = CacheStore(tasks[0].cache_dir)
    runs = []
    for task in tasks:
        import_config_plugins(task.config)  # a worker process receives the configuration parsed
        outcomes, results = read_data(task, store)
        runs.append(PreparedRun(task, outcomes, results, plan_stages(task.config, [training_stage(task.config)])[0].keyed_on(results)))
    trained: dict[int, tuple[StageOutcome, CachedArtifact]] = {}
    by_shape: dict[tuple, list[int]] = {}
    for index, run in enumerate(runs):
        by_shape.setdefault(run.shape, []).append(index)
    for indices in by_shape.values():
        for array_indices in split_evenly(indices, _members_per_array(runs[indices[0]])):
            trained.update(zip(array_indices, _train_members([runs[i] for i in array_indices], store, counted)))
    finished = [_finish(run, *trained[index]) for index, run in enumerate(runs)]
    counted(progress.budget(tasks) - counted.total)  # what early stopping left untrained
    progress.flush()
    return finished


def _finish(run: PreparedRun, outcome: StageOutcome, cached: CachedArtifact) -> TrainingResult:
    """A trained run's record written, and its result as the ablation reads it in."""
    task, results = run.task, {**run.results, "train": cached}
    record = run_record(task.config, [*run.data, outcome], results, task.cache_dir)
    run_dir = write_run_record(Path(task.runs_dir), record, cached.artifact.info["history"])
    predictions = {name: np.array(results[stage].artifact.arrays[name]) for stage, names in PREDICTIONS.items() for name in names}
    return TrainingResult(task.variant, task.seed, str(run_dir), record, predictions, fold=task.fold)


def _members_per_array(run: PreparedRun) -> int:
    """How many members of this shape of data the training device holds in one array."""
    config = run.task.config
    spec = config.model.spec()
    shape = shape_of(run.results["scale"].artifact.arrays, "x_train")[1:]
    classes = len(run.results["collect"].artifact.info["class_names"])
    device = trainers.devices.resolve_device(config.train.device)
    return trainers.capacity.members_that_fit(spec, shape, classes, config.train.batch_size, device, MAX_MEMBERS)


def _train_members(runs: list[PreparedRun], store: CacheStore, counted: progress.Counted) -> list[tuple[StageOutcome, CachedArtifact]]:
    """Each run's train entry: a cache hit, or trained with the other runs that miss as one
    array (continued from its checkpoint with `Task.resume`). The entries' locks are held
    meanwhile (in key order), so no other process builds them too."""
    steps = [run.train for run in runs]
    keys = sorted({step.key for step in steps})
    started = time.perf_counter()
    with contextlib.ExitStack() as locks:
        writable = all([locks.enter_context(store.guard("train", key)) for key in keys])
        cached = {key: store.load("train", key) for key in keys}
        first_of_key = {step.key: index for index, step in reversed(list(enumerate(steps)))}
        to_build = [index for key, index in sorted(first_of_key.items(), key=lambda item: item[1]) if cached[key] is None]
        if to_build and not writable:
            raise store.cannot_build("train", steps[to_build[0]].key)
        counted(progress.budget([run.task for i, run in enumerate(runs) if i not in to_build]))  # found in the cache
        if to_build:
            building = [runs[i] for i in to_build]
            checkpoint = array_checkpoint(store, [run.train.key for run in building])
            if len(building) > 1:  # a run alone keeps its checkpoint under its own key, guarded by the lock held above
                locks.enter_context(store.lock("train", checkpoint.stem))  # so `cache gc` leaves a live array's checkpoint alone
            cached.update(_train_and_save(building, store, checkpoint, counted))
    seconds = (time.perf_counter() - started) / max(1, len(to_build))
    built = {steps[i].key for i in to_build}
    results = []
    for index, step in enumerate(steps):
        status = "miss" if step.key in built and first_of_key[step.key] == index else "hit"
        entry = cached[step.key]
        results.append((StageOutcome("train", step.key, status, seconds if status == "miss" else 0.0, entry.sha256), entry))
    return results


def array_checkpoint(store: CacheStore, keys: list[str]) -> Path:
    """Where the array of these members (train keys, in member order) keeps its checkpoint; a
    run alone keeps it where `pipeline run` of the same configuration would."""
    if len(keys) == 1:
        return store.checkpoint_path("train", keys[0])
    return store.checkpoint_path("train", "array-" + hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16])


def _train_and_save(runs: list[PreparedRun], store: CacheStore, checkpoint: Path, counted: progress.Counted) -> dict[str, CachedArtifact]:
    """Train `runs` as one unit and commit each run's entry under its own train key; the unit's
    checkpoint goes once every entry is in."""
    shared: dict[str, dict] = {}  # one scaled mapping per data variant: placed on the device once
    members = [
        unit_member(
            run.task.config,
            {name: cached.artifact for name, cached in run.results.items()},
            shared.setdefault(run.results["scale"].sha256, run.results["scale"].artifact.arrays),
        )
        for run in runs
    ]
    started = time.perf_counter()
    artifacts = train_unit(members, checkpoint=checkpoint, resume=runs[0].task.resume, on_steps=counted)
    seconds = (time.perf_counter() - started) / len(runs)
    entries = {
        run.train.key: store.save("train", run.train.key, artifact, {**run.train.meta(), "build_seconds": seconds})
        for run, artifact in zip(runs, artifacts)
    }
    checkpoint.unlink(missing_ok=True)
    return entries
