"""Before an ablation trains anything: every run's stages planned, its data stages built (or
found) and its network checked against the data, so a variant that cannot run stops the ablation
with its name before the first training, not after an hour of others. Two variants whose runs
come out alike once their data is built (the same training key: `augment.mode` auto and offline
on images) are refused here too: they would count one result twice."""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from tqdm.auto import tqdm

import trainers.arrays
import trainers.capacity
import trainers.devices
import trainers.models
from datasets import DataWarning
from pipeline.ablation.scores import applicable
from pipeline.ablation.plan import Task, TrainingResult
from pipeline.cache import CacheStore, output_digest
from pipeline.config import Config, ConfigError
from pipeline.lookup import shape_of
from pipeline.runner import PlannedStage, StageOutcome, plan_stages, run_stages
from pipeline.stages import RunContext

QUIET = RunContext(progress=False)


@dataclass
class Prepared:
    """The tasks with their data stages' keys filled in, each run's (variant, seed, fold) data-stage
    outcomes as the ablation met them, and the runs whose network does not fuse (a plugin's or
    torchvision's): those train one at a time."""

    tasks: list[Task] = field(default_factory=list)
    stages: dict[tuple[str, int, int | None], list[dict[str, Any]]] = field(default_factory=dict)
    solo: set[tuple[str, int, int | None]] = field(default_factory=set)
    fuses: dict[str, bool] = field(default_factory=dict)  # per distinct network and data shape, checked once: does it fuse
    # per data setting: outcomes, shape, classes, and the digests of the data stages' outputs (what the train key chains on)
    data: dict[str, tuple[list[StageOutcome], tuple[int, ...], int, dict[str, str]]] = field(default_factory=dict)
    trains: dict[tuple[int, int | None, str], str] = field(default_factory=dict)  # (seed, fold, train key) -> the variant that trains it


def prepare(tasks: list[Task], progress: bool = False, metric: str = "accuracy") -> Prepared:
    """Plan every task's stages and build its data stages (a data preparation several tasks share
    is built by the first and found by the others), once for the whole ablation: the trainings
    read them by key. Any problem is a `ConfigError` naming the variant."""
    prepared = Prepared()
    with warnings.catch_warnings(record=True) as caught:  # many runs share their data: say each thing about it once
        warnings.simplefilter("always", DataWarning)
        for task in tqdm(tasks, desc="preparing data", unit="run", disable=not progress):
            _prepare_one(task, metric, prepared)
    for message in dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, DataWarning)):
        warnings.warn(message, DataWarning, stacklevel=2)
    for other in (w for w in caught if not issubclass(w.category, DataWarning)):
        warnings.warn_explicit(other.message, other.category, other.filename, other.lineno)
    return prepared


def _prepare_one(task: Task, metric: str, prepared: Prepared) -> None:
    try:
        config = task.config
        steps = plan_stages(config)  # every stage's settings: a missing GPU, an unreadable file
        outcomes, shape, classes, digests = _data_stages(task, steps[:-1], prepared)
        spec = config.model.spec()
        network = json.dumps([spec, shape, classes, config.train.batch_size, config.train.device], sort_keys=True, default=str)
        if network not in prepared.fuses:  # runs differing in seed or data values share their network
            prepared.fuses[network] = _check_network(spec, shape, classes, config)
        if not applicable(metric, classes):
            raise ValueError(f"ablation.metric={metric} is for two classes; this data has {classes}")
    except ValueError as exc:
        raise ConfigError(f"ablation variant {task.variant!r} (seed {task.seed}) cannot run, so nothing was trained: {exc}") from None
    train_key = next(step for step in steps if step.stage.name == "train").keyed(digests).key
    first = prepared.trains.setdefault((task.seed, task.fold, train_key), task.variant)
    if first != task.variant:
        raise ConfigError(
            f"ablation variants {first!r} and {task.variant!r} train the same thing once their data is built (seed {task.seed}: the same "
            f"data and training settings, e.g. augment.mode auto is offline for images), so they would count one result twice; drop one. Nothing was trained."
        )
    prepared.tasks.append(replace(task, data={outcome.name: outcome.key for outcome in outcomes}))
    prepared.stages[task.run] = [asdict(outcome) for outcome in outcomes]
    if not prepared.fuses[network]:
        prepared.solo.add(task.run)


def _data_stages(task: Task, steps: list[PlannedStage], prepared: Prepared) -> tuple[list[StageOutcome], tuple[int, ...], int, dict[str, str]]:
    """The task's data stages (and its pretraining, where it has one) built or found, once per
    distinct setting: a run that shares them with an earlier one finds them (hits) without
    reading them again."""
    config = task.config
    setting = json.dumps([step.params for step in steps], sort_keys=True, default=str)
    if setting in prepared.data:
        outcomes, shape, classes, digests = prepared.data[setting]
        return [replace(outcome, cache="hit", seconds=0.0) for outcome in outcomes], shape, classes, digests
    outcomes, results = run_stages(config, CacheStore(task.cache_dir), context=QUIET, stages=[step.stage for step in steps])
    shape = shape_of(results["scale"].artifact.arrays, "x_train")[1:]
    digests = {name: output_digest(cached) for name, cached in results.items()}
    prepared.data[setting] = (outcomes, shape, len(results["collect"].artifact.info["class_names"]), digests)
    return outcomes, *prepared.data[setting][1:]


def _check_network(spec: dict[str, Any], shape: tuple[int, ...], classes: int, config: Config) -> bool:
    """The network builds for this data (no CNN on a table) and fits the device; whether it fuses."""
    trainers.models.architecture(spec, shape, classes)
    trainers.capacity.check_fits(spec, shape, classes, config.train.batch_size, trainers.devices.resolve_device(config.train.device))
    return trainers.arrays.model_fuses(spec, shape, classes)


def ablation_stages(result: TrainingResult, prepared: Prepared) -> list[dict[str, Any]]:
    """A run's stages as the ablation met them: data stages as `prepare` built or found them,
    the rest (training) as the run's record says."""
    data = prepared.stages[result.run]
    names = {stage["name"] for stage in data}
    return data + [stage for stage in result.record["stages"] if stage["name"] not in names]
