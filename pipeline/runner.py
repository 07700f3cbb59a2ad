"""The runner: walks the stage graph, reuses cached outputs, builds what is missing, times everything."""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping

import torch

from datasets import DataWarning
from pipeline.cache import CacheStore, CachedArtifact, output_digest
from pipeline.config import Config
from pipeline.keys import cache_key, code_fingerprint, remembered_fingerprints
from pipeline.records import write_run_record
from pipeline.stages import RunContext, Stage, default_stages
from trainers.devices import resolve_device
from trainers.distributed import SINGLE, init_from_env, shutdown
from trainers.loop import HISTORY_COLUMNS

if TYPE_CHECKING:
    import pandas as pd


class StageError(ValueError):
    """A stage could not run on this input; the message names the stage and the cause."""


@dataclass
class StageOutcome:
    """What happened to one stage in one run; these field names are read by reports and scripts."""

    name: str
    key: str
    cache: Literal["hit", "miss"]
    seconds: float
    output_sha256: str


@dataclass
class RunResult:
    """What a run did: each stage's outcome, the test metrics, the per-epoch history, the run
    record (`run.json`'s content) and where it went. `run_dir` is None on the ranks of a torchrun
    job other than rank 0."""

    run_dir: Path | None
    stages: list[StageOutcome]
    metrics: dict[str, Any]
    epochs: list[dict[str, float]] = field(repr=False)  # the history's rows, as `history.csv` holds them
    record: dict[str, Any] = field(repr=False)
    artifacts: dict[str, CachedArtifact] = field(default_factory=dict, repr=False)  # each stage's output, as this run met it
    tracking_id: str | None = None  # the MLflow run it was logged to, when tracked

    @property
    def history(self) -> pd.DataFrame:
        """One row per epoch: train and validation loss and accuracy, learning rate, seconds."""
        import pandas as pd

        return pd.DataFrame(self.epochs, columns=list(HISTORY_COLUMNS))

    @property
    def record_path(self) -> Path | None:
        """`run.json` of this run (None on ranks other than 0)."""
        return None if self.run_dir is None else self.run_dir / "run.json"

    @property
    def stage_table(self) -> pd.DataFrame:
        """One row per stage: name, key, cache hit or miss, seconds, output digest."""
        import pandas as pd

        return pd.DataFrame([asdict(outcome) for outcome in self.stages])


@dataclass(frozen=True)
class PlannedStage:
    """A stage with its parameters and code, checked before anything runs; keyed once the
    digests of its inputs' outputs are known (`keyed`)."""

    stage: Stage
    params: dict[str, Any]
    code: str
    label: str  # what tells the entry apart to a person (`cache ls`), not part of the key
    source: str  # the data source it was made from (`explain` looks among these first)
    inputs: dict[str, str] | None = None  # upstream stage -> digest of its output
    key: str | None = None

    def keyed(self, inputs: Mapping[str, str]) -> "PlannedStage":
        """This stage keyed on its inputs' output digests: byte-identical upstream output, same key."""
        key = cache_key(self.stage.name, self.stage.version, self.code, self.params, inputs)
        return replace(self, inputs=dict(inputs), key=key)

    def keyed_on(self, results: Mapping[str, CachedArtifact]) -> "PlannedStage":
        return self.keyed({name: output_digest(results[name]) for name in self.stage.inputs})

    def meta(self) -> dict[str, Any]:
        """What the entry's manifest records of how it was computed (`explain` compares these)."""
        return {
            "version": self.stage.version, "code": self.code, "params": self.params, "inputs": self.inputs,
            "label": self.label, "source": self.source,
        }


def plan_stages(config: Config, stages: list[Stage] | None = None) -> list[PlannedStage]:
    """Every stage's parameters and code fingerprint, in order, so a bad setting (a missing file,
    an absent GPU) stops the run before any work. Keys come later: each chains on the digest of
    its inputs' output, not on their keys (early cutoff, as build systems do)."""
    return [
        PlannedStage(stage, stage.params(config), code_fingerprint(stage.code(config)), stage.describe(config), config.data.source)
        for stage in stages or default_stages(config)
    ]


def _build(step: PlannedStage, store: CacheStore, results: dict[str, CachedArtifact], config: Config, context: RunContext) -> CachedArtifact:
    """Run the stage and, on rank 0, commit its entry (and drop its checkpoint)."""
    stage, key = step.stage, step.key
    started = time.perf_counter()
    checkpoint = store.checkpoint_path(stage.name, key)
    try:
        artifact = stage.run({name: results[name].artifact for name in stage.inputs}, config, replace(context, checkpoint=checkpoint, params=step.params))
    except ValueError as exc:
        raise StageError(f"stage {stage.name!r} failed: {exc}") from exc
    if not context.distributed.is_main:
        return CachedArtifact(artifact, "", {"key": key})
    meta = {**step.meta(), "build_seconds": time.perf_counter() - started}
    cached = store.save(stage.name, key, artifact, meta)
    checkpoint.unlink(missing_ok=True)
    return cached


Outcome = tuple[CachedArtifact, Literal["hit", "miss"]]


def _lookup_or_build(
    step: PlannedStage, store: CacheStore, results: dict[str, CachedArtifact], config: Config, context: RunContext, force: bool
) -> Outcome:
    """The entry's lock is held while looking it up, so a process that finds another building the
    same key waits for it and then reads its result instead of building it twice."""
    with store.guard(step.stage.name, step.key) as writable:
        cached = None if force else store.load(step.stage.name, step.key)
        if cached is not None:
            return cached, "hit"
        if not writable:
            raise store.cannot_build(step.stage.name, step.key)
        return _build(step, store, results, config, context), "miss"


def _collective(
    step: PlannedStage, store: CacheStore, results: dict[str, CachedArtifact], config: Config, context: RunContext, force: bool
) -> Outcome:
    """A stage every rank runs together: rank 0 decides hit or miss under the lock and tells the
    others; on a miss all ranks run it and only rank 0 commits the entry."""
    distributed = context.distributed
    lock = store.lock(step.stage.name, step.key) if distributed.is_main else contextlib.nullcontext()
    with lock:
        cached = None if force or not distributed.is_main else store.load(step.stage.name, step.key)
        if distributed.from_main(torch.tensor(int(cached is not None))).item():
            return cached or _entry(store, step), "hit"
        return _build(step, store, results, config, context), "miss"


def _entry(store: CacheStore, step: PlannedStage) -> CachedArtifact:
    """An entry rank 0 has built or found: the other ranks only read it."""
    cached = store.load(step.stage.name, step.key)
    if cached is None:
        raise StageError(f"stage {step.stage.name!r}: rank 0 committed entry {step.key[:12]} but it cannot be read here.")
    return cached


def run_stages(
    config: Config,
    store: CacheStore,
    *,
    force: bool = False,
    context: RunContext = RunContext(),
    stages: list[Stage] | None = None,
) -> tuple[list[StageOutcome], dict[str, CachedArtifact]]:
    """Run every stage in order, each a cache hit or a build, and return outcomes and artifacts.

    In a torchrun job only rank 0 builds the stages before the first collective one; the
    other ranks wait for it and then read them from the cache.
    """
    distributed = context.distributed
    outcomes: list[StageOutcome] = []
    results: dict[str, CachedArtifact] = {}
    with remembered_fingerprints(store.root):
        steps = plan_stages(config, stages)
    first_collective = next((i for i, step in enumerate(steps) if step.stage.collective), len(steps))
    if distributed.active and not distributed.is_main:
        distributed.barrier()
    for index, planned in enumerate(steps):
        if distributed.active and distributed.is_main and index == first_collective:
            distributed.barrier()
        started = time.perf_counter()
        step = planned.keyed_on(results)
        if distributed.active and step.stage.collective:
            cached, status = _collective(step, store, results, config, context, force)
        elif distributed.active and not distributed.is_main:
            cached, status = _entry(store, step), "hit"
        else:
            cached, status = _lookup_or_build(step, store, results, config, context, force)
        results[step.stage.name] = cached
        outcomes.append(StageOutcome(step.stage.name, step.key, status, time.perf_counter() - started, cached.sha256))
        if distributed.is_main:
            for message in cached.artifact.info.get("warnings", []):
                warnings.warn(message, DataWarning, stacklevel=2)
    if distributed.active and distributed.is_main and first_collective == len(steps):
        distributed.barrier()
    return outcomes, results


def run_pipeline(
    config: Config,
    cache_dir: str | Path,
    runs_dir: str | Path,
    *,
    force: bool = False,
    resume: bool = False,
    progress: bool = True,
) -> RunResult:
    """Run collect -> augment -> scale (-> pretrain) -> train with caching and write `runs/<id>/run.json` and `history.csv`.

    With `resume`, a stage whose build was interrupted continues from its checkpoint.
    """
    device_type = resolve_device(config.train.device).type
    distributed = init_from_env(device_type) if config.train.distributed == "ddp" else SINGLE
    context = RunContext(progress=progress and distributed.is_main, resume=resume, distributed=distributed)
    try:
        outcomes, results = run_stages(config, CacheStore(cache_dir), force=force, context=context)
    finally:
        shutdown(distributed)
    if not distributed.is_main:
        return RunResult(None, outcomes, results["train"].artifact.info["metrics"], [], {}, results)
    record = run_record(config, outcomes, results, cache_dir)
    history = results["train"].artifact.info["history"]
    run_dir = write_run_record(Path(runs_dir), record, history)
    return RunResult(run_dir, outcomes, record["metrics"], history, record, results)


def run_record(config: Config, outcomes: list[StageOutcome], results: dict[str, CachedArtifact], cache_dir: str | Path) -> dict[str, Any]:
    """What `run.json` holds for one training, from its stages' outcomes and artifacts."""
    train_info = results["train"].artifact.info
    return {
        "config": config.model_dump(mode="json"),
        "stages": [asdict(outcome) for outcome in outcomes],
        "metrics": train_info["metrics"],
        "diagnosis": train_info["diagnosis"],
        "data": results["collect"].artifact.info,
        "scaling": results["scale"].artifact.info,
        **({"pretraining": results["pretrain"].artifact.info} if "pretrain" in results else {}),
        "model": train_info["model"],
        "device": train_info["device"],
        "precision": train_info["precision"],
        "train_samples": train_info["train_samples"],
        "world_size": train_info["world_size"],
        "sync_batch_norm": train_info["sync_batch_norm"],
        "fused_members": train_info["fused_members"],
        "cuda_graphs": train_info.get("cuda_graphs", False),
        "cache_dir": str(Path(cache_dir).resolve()),
        "warnings": [message for cached in results.values() for message in cached.artifact.info.get("warnings", [])],
    }
