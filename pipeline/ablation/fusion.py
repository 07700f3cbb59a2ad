"""Fused ablation trainings: the runs whose training differs only in settings a member of a fused
array may hold on its own train as one array, and each member's result is cached under the key
its solo run would have, so fusion is an execution detail (like the number of threads).

Member-level settings: `train.seed`, `train.epochs`, `train.label_smoothing`, the optimizer's
`lr`, `momentum`, `nesterov` and `weight_decay`, `model.dropout` and `model.dropout_input`,
and every `schedule` and `early_stop` setting. Data-side variants fuse too, when their scaled
arrays have the same shapes. Everything else (architecture, batch norm, activation, init,
optimizer, batch size, device, precision) must match.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any, Collection

import torch

import trainers.capacity
import trainers.devices
import trainers.loop
from pipeline.ablation.tasks import Task, run_task, task_config, task_result
from pipeline.cache import CachedArtifact, CacheStore
from pipeline.config import Config
from pipeline.records import write_run_record
from pipeline.runner import (
    PlannedStage,
    StageOutcome,
    plan_stages,
    run_record,
    run_stages,
)
from pipeline.stages import RunContext, default_stages
from pipeline.stages.collect import SPLITS
from pipeline.stages.train import (
    TrainStage,
    architecture,
    build_array,
    data_on_device,
    kill_hook,
    member_artifact,
    member_for,
    place_splits,
    precision_for,
    regularizers,
    seed_everything,
)
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
    tasks: list[Task], fuse: bool, max_members: int = MAX_MEMBERS, solo: Collection[tuple[str, int]] = ()
) -> list[list[Task]]:
    """The tasks in units of work: each task alone (`fuse` off, or its (variant, seed) in `solo`:
    a network that does not fuse), or units of up to `max_members` tasks that may train as one array. Within a fusion group, the tasks whose data is collected
    and augmented alike up to the seeds (and so has the same shapes) stay in one unit where
    they fit: a unit trains one array per shape of data, and splitting a data variant across
    units would train more, smaller arrays."""
    if not fuse:
        return [[task] for task in tasks]
    groups: dict[str, dict[str, list[Task]]] = {}
    alone = [[task] for task in tasks if (task.variant, task.seed) in solo]
    for task in (task for task in tasks if (task.variant, task.seed) not in solo):
        config = task_config(task)
        settings = [config.data.model_dump(mode="json", exclude={"seed"}), config.augment.model_dump(mode="json", exclude={"seed"})]
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


UnitMember = tuple[Config, list[StageOutcome], dict[str, CachedArtifact], PlannedStage]


def _shape_key(results: dict[str, CachedArtifact]) -> tuple:
    arrays = results["scale"].artifact.arrays
    return tuple(arrays[f"x_{split}"].shape for split in SPLITS), len(results["collect"].artifact.info["class_names"])


def run_unit(tasks: list[Task], threads: int | None = None) -> list[dict[str, Any]]:
    """Run a unit's trainings: a unit of one as `pipeline run` does; a larger one runs every
    member's data stages, then trains the members that miss the cache as one fused array per
    shape of data (split into as few arrays as the device's memory needs), and writes each
    member's entry and run record."""
    if len(tasks) == 1:
        return [run_task(tasks[0], threads)]
    if threads:
        torch.set_num_threads(threads)
    store = CacheStore(tasks[0].cache_dir)
    members: list[UnitMember] = []
    for task in tasks:
        config = task_config(task)
        outcomes, results = run_stages(config, store, context=QUIET, stages=default_stages()[:3])
        members.append((config, outcomes, results, plan_stages(config)[-1].keyed_on(results)))
    trained: dict[int, tuple[StageOutcome, CachedArtifact]] = {}
    by_shape: dict[tuple, list[int]] = {}
    for index, (_, _, results, _) in enumerate(members):
        by_shape.setdefault(_shape_key(results), []).append(index)
    for indices in by_shape.values():
        for array_indices in split_evenly(indices, _members_per_array(members[indices[0]])):
            trained.update(zip(array_indices, _train_members([members[i] for i in array_indices], store, tasks[0].resume)))
    output = []
    for index, (task, (config, outcomes, results, _)) in enumerate(zip(tasks, members)):
        outcome, cached = trained[index]
        record = run_record(config, [*outcomes, outcome], {**results, "train": cached}, task.cache_dir)
        run_dir = write_run_record(Path(task.runs_dir), record, cached.artifact.info["history"])
        output.append(task_result(task, str(run_dir), record, {**results, "train": cached}))
    return output


def _members_per_array(member: UnitMember) -> int:
    """How many members of this shape of data the training device holds in one array."""
    config, _, results, _ = member
    spec = config.model.model_dump(exclude={"sync_batch_norm"})
    shape = results["scale"].artifact.arrays["x_train"].shape[1:]
    classes = len(results["collect"].artifact.info["class_names"])
    device = trainers.devices.resolve_device(config.train.device)
    return trainers.capacity.members_that_fit(spec, shape, classes, config.train.batch_size, device, MAX_MEMBERS)


def _train_members(members: list[UnitMember], store: CacheStore, resume: bool) -> list[tuple[StageOutcome, CachedArtifact]]:
    """Each member's train entry: a cache hit, or trained with the other members that miss as one
    array (continued from its checkpoint with `resume`). The entries' locks are held meanwhile (in
    key order), so no other process builds them too."""
    steps = [step for _, _, _, step in members]
    keys = sorted({step.key for step in steps})
    started = time.perf_counter()
    with contextlib.ExitStack() as locks:
        writable = all([locks.enter_context(store.guard("train", key)) for key in keys])
        cached = {key: store.load("train", key) for key in keys}
        first_of_key = {step.key: index for index, step in reversed(list(enumerate(steps)))}
        to_build = [index for key, index in sorted(first_of_key.items(), key=lambda item: item[1]) if cached[key] is None]
        if to_build and not writable:
            raise store.cannot_build("train", steps[to_build[0]].key)
        if to_build:
            building = [members[i] for i in to_build]
            checkpoint = array_checkpoint(store, [step.key for _, _, _, step in building])
            locks.enter_context(store.lock("train", checkpoint.stem))  # so `cache gc` leaves a live array's checkpoint alone
            cached.update(_train_fused(building, store, checkpoint, resume))
    seconds = (time.perf_counter() - started) / max(1, len(to_build))
    built = {steps[i].key for i in to_build}
    results = []
    for index, step in enumerate(steps):
        status = "miss" if step.key in built and first_of_key[step.key] == index else "hit"
        entry = cached[step.key]
        results.append((StageOutcome("train", step.key, status, seconds if status == "miss" else 0.0, entry.sha256), entry))
    return results


def array_checkpoint(store: CacheStore, keys: list[str]) -> Path:
    """Where the array of these members (train keys, in member order) keeps its checkpoint."""
    return store.checkpoint_path("train", "array-" + hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16])


def _train_fused(members: list[UnitMember], store: CacheStore, checkpoint: Path, resume: bool) -> dict[str, CachedArtifact]:
    """Train `members` as one fused array and commit each member's entry under its own train key;
    the array's checkpoint goes once every entry is in."""
    configs = [config for config, _, _, _ in members]
    first = configs[0]
    device = trainers.devices.resolve_device(first.train.device)
    precision = precision_for(first, device)
    seed_everything(first.train.seed, first.train.deterministic)
    scale_keys = [next(o.key for o in outcomes if o.name == "scale") for _, outcomes, _, _ in members]
    scaled = {key: results["scale"].artifact.arrays for key, (_, _, results, _) in zip(scale_keys, members)}
    on_device = data_on_device(first, list(scaled.values()), device)
    placed = {key: place_splits(arrays, device, on_device) for key, arrays in scaled.items()}  # one copy per data variant
    splits = [placed[key] for key in scale_keys]
    class_names = members[0][2]["collect"].artifact.info["class_names"]
    started = time.perf_counter()
    array = build_array(configs, tuple(splits[0]["train"].x.shape[1:]), len(class_names), device)
    loop_members = [
        member_for(config, own, results["augment"].artifact.info) for config, own, (_, _, results, _) in zip(configs, splits, members)
    ]
    if checkpoint.exists() and not resume:
        log.warning("Starting over: %s holds an interrupted fused training; pass --resume to continue it.", checkpoint)
    fitted = trainers.loop.fit_array(
        array, loop_members, batch_size=first.train.batch_size, device=device, precision=precision, progress=False,
        checkpoint=checkpoint, checkpoint_every=first.train.checkpoint_every, resume=resume, on_epoch_end=kill_hook(),
        cuda_graphs=first.train.cuda_graphs,
    )
    test_data = trainers.loop.ArrayData([own["test"] for own in splits], "test")
    test = trainers.loop.predict_array(array.module, test_data, device, precision)
    val = trainers.loop.predict_array(array.module, trainers.loop.ArrayData([own["val"] for own in splits], "val"), device, precision)
    train = trainers.loop.evaluate_array(array.module, trainers.loop.ArrayData([own["train"] for own in splits], "train"), device, precision)
    seconds = (time.perf_counter() - started) / len(members)
    how = {
        "device": str(device),
        "precision": precision,
        "data_on_device": on_device,
        "world_size": 1,
        "sync_batch_norm": False,
        "fused_members": len(members),
        "cuda_graphs": fitted[0].graph_replays > 0,
    }
    entries = {}
    for k, ((config, _, results, step), own, result) in enumerate(zip(members, splits, fitted)):
        artifact = member_artifact(
            array.member_state_dict(k), test[k], own, result, class_names, how, val_logits=val[k],
            train_accuracy=float(train[k, 1]), uses=regularizers(config, results["augment"].artifact.info),
            model=architecture(config, own, class_names),
        )
        meta = {**step.meta(), "build_seconds": seconds}
        entries[step.key] = store.save("train", step.key, artifact, meta)
    checkpoint.unlink(missing_ok=True)
    return entries
