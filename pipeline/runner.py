"""The runner: walks the stage graph, reuses cached outputs, builds what is missing, times everything."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from pipeline.cache import CacheStore, CachedArtifact
from pipeline.config import Config
from pipeline.keys import cache_key, code_fingerprint
from pipeline.records import write_run_record
from pipeline.stages import RunContext, Stage, default_stages


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
    run_dir: Path
    stages: list[StageOutcome]
    metrics: dict[str, Any]
    history: list[dict[str, float]]
    record: dict[str, Any]


@dataclass(frozen=True)
class PlannedStage:
    """A stage with everything that identifies its output, known before anything runs."""

    stage: Stage
    params: dict[str, Any]
    input_keys: dict[str, str]
    code: str
    key: str


def plan_stages(config: Config, stages: list[Stage] | None = None) -> list[PlannedStage]:
    """Every stage's parameters and key, in order. Keys depend only on parameters, code and
    upstream keys, so a bad setting (a missing file, an absent GPU) stops the run before any work."""
    planned: list[PlannedStage] = []
    keys: dict[str, str] = {}
    for stage in stages or default_stages():
        input_keys = {name: keys[name] for name in stage.inputs}
        params = stage.params(config)
        code = code_fingerprint(stage.code(config))
        key = cache_key(stage.name, stage.version, code, params, input_keys)
        keys[stage.name] = key
        planned.append(PlannedStage(stage, params, input_keys, code, key))
    return planned


def run_stages(
    config: Config,
    store: CacheStore,
    *,
    force: bool = False,
    context: RunContext = RunContext(),
    stages: list[Stage] | None = None,
) -> tuple[list[StageOutcome], dict[str, CachedArtifact]]:
    """Run every stage in order, each a cache hit or a build, and return outcomes and artifacts.

    The entry's lock is held while looking it up, so a process that finds another building
    the same key waits for it and then reads its result instead of building it twice.
    """
    outcomes: list[StageOutcome] = []
    results: dict[str, CachedArtifact] = {}
    for step in plan_stages(config, stages):
        stage, key = step.stage, step.key
        started = time.perf_counter()
        with store.lock(stage.name, key):
            cached = None if force else store.load(stage.name, key)
            status: Literal["hit", "miss"] = "hit"
            if cached is None:
                status = "miss"
                checkpoint = store.checkpoint_path(stage.name, key)
                stage_context = replace(context, checkpoint=checkpoint)
                try:
                    artifact = stage.run({name: results[name].artifact for name in stage.inputs}, config, stage_context)
                except ValueError as exc:
                    raise StageError(f"stage {stage.name!r} failed: {exc}") from exc
                meta = {"version": stage.version, "code": step.code, "params": step.params, "inputs": step.input_keys}
                meta["build_seconds"] = time.perf_counter() - started
                cached = store.save(stage.name, key, artifact, meta)
                checkpoint.unlink(missing_ok=True)
        results[stage.name] = cached
        outcomes.append(StageOutcome(stage.name, key, status, time.perf_counter() - started, cached.sha256))
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
    """Run collect -> augment -> scale -> train with caching and write `runs/<id>/run.json` and `history.csv`.

    With `resume`, a stage whose build was interrupted continues from its checkpoint.
    """
    context = RunContext(progress=progress, resume=resume)
    outcomes, results = run_stages(config, CacheStore(cache_dir), force=force, context=context)
    train_info = results["train"].artifact.info
    record = {
        "config": config.model_dump(mode="json"),
        "stages": [asdict(outcome) for outcome in outcomes],
        "metrics": train_info["metrics"],
        "diagnosis": train_info["diagnosis"],
        "data": results["collect"].artifact.info,
        "scaling": results["scale"].artifact.info,
        "device": train_info["device"],
        "precision": train_info["precision"],
        "train_samples": train_info["train_samples"],
        "cache_dir": str(Path(cache_dir).resolve()),
    }
    run_dir = write_run_record(Path(runs_dir), record, train_info["history"])
    return RunResult(run_dir, outcomes, train_info["metrics"], train_info["history"], record)
