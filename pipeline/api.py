"""The Python API: run the pipeline, run an ablation or load one, and read the results as objects
and pandas DataFrames. The command line (`python -m pipeline`) parses its arguments and calls
these functions.

A configuration is given as a dict (the YAML file's mapping), a path to a YAML or JSON file, a
parsed `Config`, or None for the embedded default; `overrides` are dotted `key=value` strings
applied on top, as on the command line.
"""

from __future__ import annotations

import contextlib
import copy
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union

from pipeline.config import Config, load_config, parse_override, read_config_file
from pipeline.errors import RunFailed

if TYPE_CHECKING:
    from pipeline.ablation.design import AblationConfig
    from pipeline.ablation.planning import DesignPlan
    from pipeline.ablation.results import Ablation
    from pipeline.runner import RunResult
    from pipeline.tracking import MlflowTracker

ConfigSource = Union[str, os.PathLike, Mapping[str, Any], Config, None]
DEFAULT_CACHE_DIR, CACHE_DIR_VARIABLE = ".pipeline-cache", "PIPELINE_CACHE_DIR"
DEFAULT_RUNS_DIR = "runs"


def default_cache_dir() -> str:
    """`$PIPELINE_CACHE_DIR`, else `.pipeline-cache` in the working directory."""
    return os.environ.get(CACHE_DIR_VARIABLE, DEFAULT_CACHE_DIR)


def _tree(config: ConfigSource) -> dict[str, Any] | None:
    """The configuration as a mapping to override (None: the default)."""
    if config is None:
        return None
    if isinstance(config, Config):
        return config.model_dump(mode="json")
    if isinstance(config, Mapping):
        return copy.deepcopy(dict(config))
    return read_config_file(config)


def resolve_config(config: ConfigSource = None, overrides: Sequence[str] = ()) -> Config:
    """The validated configuration of `config` with `overrides` applied, its `ablation:` section
    (when it has one) checked too; a `ConfigError` names the key, value or file at fault."""
    parsed = load_config(None, overrides, base=_tree(config))
    if parsed.ablation is not None:
        from pipeline.ablation.design import parse_ablation

        parse_ablation(parsed.ablation)
    return parsed


def _tracker(track: str | None, config: Config) -> MlflowTracker | None:
    """The tracker `track` asks for, made before any work so a missing MLflow stops nothing midway."""
    if track is None:
        return None
    if track != "mlflow":
        raise ValueError(f"track must be 'mlflow' or None, got {track!r}.")
    from pipeline.tracking import MlflowTracker

    return MlflowTracker(config.tracking.uri, config.tracking.experiment)


@contextlib.contextmanager
def _kept(record: Path | None) -> Iterator[None]:
    """A failure after the work is done says where its record is."""
    try:
        yield
    except RunFailed as exc:
        raise RunFailed(f"{exc}; the record is kept in {record}") from exc


def run(
    config: ConfigSource = None,
    overrides: Sequence[str] = (),
    *,
    cache_dir: str | Path | None = None,
    runs_dir: str | Path = DEFAULT_RUNS_DIR,
    force: bool = False,
    resume: bool = False,
    progress: bool = False,
    track: Literal["mlflow"] | None = None,
) -> RunResult:
    """Run collect -> augment -> scale (-> pretrain) -> train, reusing every cached stage, and write the run's
    record (`runs/<id>/run.json`, `history.csv`). `force` rebuilds every stage; `resume` continues
    an interrupted training; `track="mlflow"` also logs the run to MLflow (`tracking.*`)."""
    from pipeline.runner import run_pipeline

    parsed = resolve_config(config, overrides)
    tracking = _tracker(track, parsed)
    result = run_pipeline(parsed, cache_dir or default_cache_dir(), runs_dir, force=force, resume=resume, progress=progress)
    if tracking is not None and result.run_dir is not None:
        with tracking.reached(), _kept(result.record_path):
            result.tracking_id = tracking.log_run(result.run_dir)
    return result


def _ablation_parts(config: ConfigSource, overrides: Sequence[str]) -> tuple[Config, AblationConfig, dict[str, Any], list[str]]:
    """An ablation's configuration (None: the embedded default) parsed: the whole, its design, the
    base every training starts from, and the overrides that reach every training (`ablation.*`
    overrides shape the design only)."""
    from pipeline.ablation.design import parse_ablation

    if config is None:
        from pipeline.ablation.default import DEFAULT_ABLATION

        tree = copy.deepcopy(DEFAULT_ABLATION)
    else:
        tree = _tree(config) or {}
    parsed = resolve_config(tree, overrides)
    design = parse_ablation(parsed.ablation, str(config))
    base = {key: value for key, value in tree.items() if key != "ablation"}
    return parsed, design, base, [text for text in overrides if parse_override(text)[0].split(".")[0] != "ablation"]


def ablate(
    config: ConfigSource = None,
    overrides: Sequence[str] = (),
    *,
    out: str | Path | None = None,
    cache_dir: str | Path | None = None,
    jobs: int = 1,
    executor: Literal["local", "ray"] = "local",
    ray_address: str | None = None,
    ray_options: dict[str, Any] | None = None,
    fuse: bool = True,
    resume: bool = False,
    progress: bool = False,
    report: bool = True,
    track: Literal["mlflow"] | None = None,
) -> Ablation:
    """Run the ablation of `config`'s `ablation:` section (None: the embedded default) and return
    it as an `Ablation`; with `report`, also render `report.md` and `report.html` into `out`
    (default: `ablations/<time>/`). `ablation.*` overrides shape the design; the others reach
    every training. Runs that differ only in member-level settings train as one fused array
    (`fuse`); `jobs` local worker processes, or Ray tasks (`executor="ray"`), share the cache."""
    from pipeline.ablation.execute import run_ablation
    from pipeline.ablation.report import render
    from pipeline.ablation.results import Ablation

    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}.")
    parsed, design, base, run_overrides = _ablation_parts(config, overrides)
    folder = Path(out) if out is not None else Path("ablations") / time.strftime("%Y%m%d-%H%M%S")
    tracking = _tracker(track, parsed)
    run_ablation(
        base, run_overrides, design, folder, Path(cache_dir or default_cache_dir()), jobs, progress,
        executor=executor, ray_address=ray_address, ray_options=ray_options, fuse=fuse, resume=resume,
    )
    if report:
        render(folder)
    ablation = Ablation.load(folder)
    if tracking is not None:
        with tracking.reached(), _kept(folder):
            ablation.tracking_id = tracking.log_ablation(folder, ablation.summary)
    return ablation


def plan(
    config: ConfigSource = None,
    overrides: Sequence[str] = (),
    *,
    cache_dir: str | Path | None = None,
    fuse: bool = True,
    like: str | Path | None = None,
) -> DesignPlan:
    """What `ablate` with the same arguments would train and could decide, without training it:
    trainings and fused units, an estimate of their time on this device (a one-epoch probe),
    and the smallest effect the design decides with 80% power, from the variances of the
    ablation in `like` or from the baseline's expected accuracy; with `ablation.resolution`,
    whether the design resolves it and how many seeds would."""
    from pipeline.ablation.planning import plan_design
    from pipeline.ablation.scores import METRICS

    _, design, base, run_overrides = _ablation_parts(config, overrides)
    resolution = None if design.resolution is None else design.resolution / METRICS[design.metric].scale
    return plan_design(
        base, run_overrides, design, Path(cache_dir or default_cache_dir()), fuse=fuse,
        like=None if like is None else Path(like), resolution=resolution,
    )


def load_ablation(folder: str | Path, metric: str | None = None) -> Ablation:
    """The ablation in `folder`, as `ablate` returned it (or as the command line wrote it), read in
    its own metric or in `metric`."""
    from pipeline.ablation.results import Ablation

    return Ablation.load(folder, metric)
