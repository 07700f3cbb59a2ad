"""`python -m pipeline ...`: parse the command line and call the Python API (`pipeline.api`),
the cache tools (`pipeline.maintenance`) or the report renderer, then print what they return."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
import warnings
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Sequence

from datasets import DataWarning
from pipeline import api
from pipeline.ablation.scores import METRICS
from pipeline.cache import CacheStore
from pipeline.config import ConfigError, config_to_yaml
from pipeline.errors import RunFailed

if TYPE_CHECKING:
    from pipeline.ablation.planning import DesignPlan
    from pipeline.ablation.results import Ablation
    from pipeline.runner import RunResult

DEFAULT_CACHE_DIR = api.DEFAULT_CACHE_DIR
DEFAULT_RUNS_DIR = api.DEFAULT_RUNS_DIR
EXIT_USAGE = 2  # the input must change: a usage, configuration or data error
EXIT_FAILURE = 1  # the run failed: a diverged training, out of memory, an unreachable tracker, a disk error


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help="a YAML or JSON config file")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. train.epochs=5")


def _add_cache_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache-dir", default=argparse.SUPPRESS,
        help=f"stage cache folder (default: $PIPELINE_CACHE_DIR or {DEFAULT_CACHE_DIR})",
    )


def _add_output_arguments(parser: argparse.ArgumentParser, result: str) -> None:
    parser.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help=f"no progress bar; only {result}")
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=f"print {result} as one JSON object, nothing else")


def _add_track_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--track", choices=["mlflow"], help="also log the run(s) to MLflow, at tracking.uri (default sqlite:///mlflow.db)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The CLI. Common options (`--config`, `--cache-dir`, `--quiet`, `--json`) and `key=value`
    overrides may come anywhere after the command, before or after `cache`'s action."""
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run collect -> augment -> scale (-> pretrain) -> train, reusing cached stages")
    _add_config_arguments(run)
    _add_cache_argument(run)
    run.add_argument("--runs-dir", default=DEFAULT_RUNS_DIR, help=f"where run records go (default: {DEFAULT_RUNS_DIR})")
    run.add_argument("--force", action="store_true", help="rebuild every stage even when it is cached")
    run.add_argument("--resume", action="store_true", help="continue an interrupted training from its last checkpoint")
    _add_output_arguments(run, "one result line (test accuracy, record)")
    _add_track_argument(run)

    show = commands.add_parser("show-config", help="print the fully resolved configuration as YAML")
    _add_config_arguments(show)

    ablate = commands.add_parser("ablate", help="run an ablation (the config's `ablation:` section) and write its report")
    _add_config_arguments(ablate)
    _add_cache_argument(ablate)
    ablate.add_argument("--out", help="where the records and report go (default: ablations/<id>/)")
    ablate.add_argument("--jobs", type=_positive, default=1, help="local worker processes sharing the cache (default: 1)")
    ablate.add_argument("--executor", choices=["local", "ray"], default="local", help="run trainings locally or as Ray tasks")
    ablate.add_argument("--ray-address", help="a running Ray cluster (default: start a local Ray instance)")
    ablate.add_argument(
        "--fuse", choices=["on", "off"], default="on",
        help="train the runs that differ only in member-level settings as one fused network (default: on)",
    )
    ablate.add_argument("--resume", action="store_true", help="continue interrupted trainings (fused or not) from their checkpoints")
    ablate.add_argument(
        "--plan", action="store_true",
        help="train nothing: print the trainings, their units, a time estimate and the smallest effect the design decides",
    )
    ablate.add_argument("--like", metavar="DIR", help="with --plan: take the variances from the ablation in DIR")
    _add_output_arguments(ablate, "one result line (the verdict, the report)")
    _add_track_argument(ablate)

    report = commands.add_parser("report", help="re-render an ablation's report from its records, without training")
    report.add_argument("folder", help="an ablation folder (holding summary.json)")
    report.add_argument(
        "--metric", choices=list(METRICS),
        help="re-render in this metric (default: the ablation's own, ablation.metric)",
    )

    explain = commands.add_parser("explain", help="for each stage, say whether it would hit and, if not, what changed")
    _add_config_arguments(explain)
    _add_cache_argument(explain)

    cache = commands.add_parser("cache", help="inspect, check and prune the stage cache")
    _add_cache_argument(cache)
    actions = cache.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = actions.add_parser("ls", help="entries (stage, key, what they hold, size, age, last used) and checkpoints")
    ls.add_argument("--stage", choices=["collect", "augment", "scale", "pretrain", "train"], help="only this stage's entries")
    verify = actions.add_parser("verify", help="re-hash every entry; remove corrupt ones and orphaned temporary folders")
    gc = actions.add_parser("gc", help="remove entries, checkpoints and locks by size, age or count (never one in use)")
    gc.add_argument("--max-size", help="keep the cache under this size, least recently used first out (e.g. 2GB)")
    gc.add_argument("--older-than", help="remove entries not used for this long (e.g. 30d, 12h)")
    gc.add_argument("--keep-last", type=int, help="keep only the N most recently used entries of each stage")
    for action in (ls, verify, gc):
        _add_cache_argument(action)
    return parser


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line: `key=value` words anywhere after the command are overrides, and
    the common options fall back to their defaults only when given nowhere."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    overrides = [word for word in extra if "=" in word and not word.startswith("-")]
    unknown = [word for word in extra if word not in overrides]
    if unknown or (overrides and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown or overrides)}")
    if overrides:
        args.overrides = [*args.overrides, *overrides]
    defaults = {
        "config": None,
        "cache_dir": api.default_cache_dir(),
        "quiet": False,
        "json": False,
    }
    for name, value in defaults.items():
        if not hasattr(args, name):
            setattr(args, name, value)
    return args


def format_summary(result: RunResult) -> str:
    """The table printed after a run: stage, short key, hit/miss, seconds; then the test metrics."""
    lines = [f"{'stage':<9} {'key':<12} {'cache':<5} {'seconds':>8}"]
    for outcome in result.stages:
        lines.append(f"{outcome.name:<9} {outcome.key[:12]:<12} {outcome.cache:<5} {outcome.seconds:>8.3f}")
    total = sum(outcome.seconds for outcome in result.stages)
    lines.append(f"{'total':<9} {'':<12} {'':<5} {total:>8.3f}")
    metrics = result.metrics
    lines.append("")
    lines.append(
        f"test accuracy: {metrics['test_accuracy']:.4f}  test loss: {metrics['test_loss']:.4f}  "
        f"best epoch: {metrics['best_epoch']} of {metrics['epochs_run']} run"
    )
    lines += [f"note: {caveat}" for caveat in result.record["diagnosis"].get("caveats", [])]
    lines.append(f"run record: {result.run_dir / 'run.json'}")
    return "\n".join(lines)


def ablate(args: argparse.Namespace) -> int:
    """Run the ablation in the config file (or the embedded default) and render its report; with
    `--plan`, say what it would train and could decide instead."""
    if args.like and not args.plan:
        raise ValueError("--like is read by --plan only.")
    if args.plan:
        plan = api.plan(args.config, args.overrides, cache_dir=args.cache_dir, fuse=args.fuse == "on", like=args.like)
        print(json.dumps(asdict(plan), indent=1, allow_nan=False, default=str) if args.json else format_plan(plan))
        return 0
    quiet = args.quiet or args.json
    ablation = api.ablate(
        args.config, args.overrides, out=args.out, cache_dir=args.cache_dir, jobs=args.jobs, executor=args.executor,
        ray_address=args.ray_address, fuse=args.fuse == "on", resume=args.resume, progress=not quiet, track=args.track,
    )
    if ablation.tracking_id is not None and not quiet:
        print(f"mlflow: ablation run {ablation.tracking_id} (a child per variant and seed)", file=sys.stderr)
    print(ablation_summary(ablation, args))
    return 0


def _positive(text: str) -> int:
    """An argument that counts something: a whole number of at least 1."""
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{number} is fewer than 1")
    return number


def format_plan(plan: DesignPlan) -> str:
    """What `ablate --plan` prints: the cost, then what the design can decide."""
    units = ", ".join(f"{size}" for size in plan.units)
    lines = [
        f"trainings   {plan.trainings} ({plan.variants} variants x {plan.seeds} seeds"
        + (f" x {plan.folds} folds" if plan.folds else "") + f"), {plan.cached} already cached",
        f"units       {len(plan.units)} ({units} members; a unit trains as one fused array)",
        f"time        about {plan.estimated_seconds:.0f} s on this device at most ({plan.epochs} epochs each, "
        f"{plan.seconds_per_member_epoch:.3f} s per member-epoch measured; early stopping only shortens it)",
        f"detectable  {plan.detectable * 100:.1f} points with 80% power, adjusted over {plan.tests} tests, "
        + (f"every sample tested once per seed ({plan.folds} folds of {plan.test_samples})" if plan.folds
           else f"{plan.test_samples} test samples{' shared by every seed' if plan.shared_samples else ' per seed'}")
        + ("; that is the whole range: this design decides no effect" if plan.detectable >= 1 else ""),
        f"            from {plan.variance_source}",
    ]
    if plan.looks:
        most = plan.trainings // plan.seeds * plan.looks[-1]
        lines.append(
            f"looks       at {', '.join(map(str, plan.looks))} seeds until every effect is decided: the trainings and time above "
            f"are the first look's, the detectable effect a fixed design's of that many seeds (the boundary asks more of early "
            f"looks); at most {most} trainings, about {plan.estimated_seconds * most / plan.trainings:.0f} s"
        )
    if plan.kfold_detectable is not None and plan.kfold_detectable < plan.detectable:
        lines.append(
            f"k-fold      {plan.kfold_detectable * 100:.1f} points with 5 folds and these seeds, every sample tested "
            "(ablation.resampling: {kind: kfold, folds: 5}; add split to ablation.vary)"
        )
    if plan.resolution is not None:
        wanted = f"{plan.resolution * 100:.1f} points"
        if plan.resolves:
            lines.append(f"resolution  {wanted}: this design resolves it")
        elif plan.seeds_to_resolve is not None:
            lines.append(f"resolution  {wanted}: not with {plan.seeds} seeds; about {plan.seeds_to_resolve} seeds would")
        else:
            limit = "this dataset (the variance the folds' shared training data keeps)" if plan.folds else f"{plan.test_samples} test samples; a larger test split would"
            lines.append(f"resolution  {wanted}: no number of seeds would on {limit}")
    return "\n".join(lines)


def ablation_summary(ablation: Ablation, args: argparse.Namespace) -> str:
    """What `ablate` prints: the stages built and hit and every effect's sentence; the verdict and
    the report with `--quiet`; one JSON object with `--json`."""
    summary = ablation.summary
    report = ablation.folder / "report.md"
    sentences = [effect["sentence"] for effect in summary["side_effects"] + summary["effects"] + summary["interactions"]]
    if args.json:
        return json.dumps({"report": str(report), "summary": str(ablation.folder / "summary.json"), "verdict": ablation.verdict,
                           "effects": sentences, "stages": summary["stages"]}, indent=1)
    if args.quiet:
        return f"{ablation.verdict}  report {report}"
    lines = [f"{name:<8} built {counts['built']:>3}  hit {counts['hit']:>3}" for name, counts in summary["stages"].items()]
    lines += [f"- {sentence}" for sentence in sentences]
    lines.append(f"report: {report} (and {report.with_suffix('.html').name}, runs.csv, summary.json)")
    return "\n".join(lines)


def cache_command(args: argparse.Namespace) -> int:
    from pipeline import maintenance

    store = CacheStore(args.cache_dir)
    if args.action == "ls":
        print(maintenance.list_entries(store, args.stage))
    elif args.action == "verify":
        report = maintenance.verify(store)
        for line in report.corrupt:
            print(f"removed corrupt entry {line}")
        for line in report.temp_removed:
            print(f"removed orphaned temporary folder {line}")
        for line in report.skipped_busy:
            print(f"skipped {line}: in use by another process")
        print(f"{report.checked} entries checked, {len(report.corrupt)} corrupt, {len(report.temp_removed)} temporary folders removed")
    else:
        report = maintenance.collect_garbage(store, max_size=args.max_size, older_than=args.older_than, keep_last=args.keep_last)
        for item in report.removed:
            print(f"removed {item.kind} {item.stage}/{item.key[:12]} ({maintenance.human_size(item.bytes)})")
        for item in report.busy:
            print(f"kept {item.kind} {item.stage}/{item.key[:12]}: in use by another process")
        entries = sum(item.kind == "entry" for item in report.removed)
        freed = maintenance.human_size(sum(item.bytes for item in report.removed))
        print(f"{entries} entries and {len(report.removed) - entries} checkpoints removed, {freed} freed; {report.locks_removed} stale lock files removed")
    return 0


RESULT_METRICS = ("test_accuracy", "test_loss", "best_epoch", "epochs_run", "kept_epoch", "stop_reason")


def result_line(result: RunResult) -> str:
    """What `--quiet` keeps of a run: its test numbers and where its record went."""
    metrics = result.metrics
    return f"test accuracy {metrics['test_accuracy']:.4f}  test loss {metrics['test_loss']:.4f}  record {result.run_dir / 'run.json'}"


def result_json(result: RunResult) -> dict[str, Any]:
    """What `--json` prints of a run: the record's summary, for scripts."""
    record = result.record
    return {
        "record": str(result.run_dir / "run.json"),
        "metrics": {name: result.metrics[name] for name in RESULT_METRICS if name in result.metrics},
        "stages": [{"name": o.name, "key": o.key, "cache": o.cache, "seconds": o.seconds} for o in result.stages],
        "model": record["model"],
        "device": record["device"],
        "warnings": record["warnings"],
    }


def run_command(args: argparse.Namespace) -> int:
    quiet = args.quiet or args.json
    result = api.run(
        args.config, args.overrides, cache_dir=args.cache_dir, runs_dir=args.runs_dir, force=args.force, resume=args.resume,
        progress=not quiet, track=args.track,
    )
    if result.run_dir is None:  # under torchrun, rank 0 reports
        return 0
    if result.tracking_id is not None and not quiet:
        tracking = result.record["config"]["tracking"]
        print(f"mlflow: run {result.tracking_id} in experiment {tracking['experiment']!r} at {tracking['uri']}", file=sys.stderr)
    if args.json:
        print(json.dumps(result_json(result), indent=1, allow_nan=False))
    else:
        print(result_line(result) if args.quiet else format_summary(result))
    return 0


def show_config_command(args: argparse.Namespace) -> int:
    print(config_to_yaml(api.resolve_config(args.config, args.overrides)), end="")
    return 0


def explain_command(args: argparse.Namespace) -> int:
    from pipeline.explain import explain

    print("\n".join(explain(api.resolve_config(args.config, args.overrides), CacheStore(args.cache_dir))))
    return 0


def report_command(args: argparse.Namespace) -> int:
    from pipeline.ablation.report import render

    print(render(args.folder, args.metric))
    return 0


COMMANDS = {
    "run": run_command,
    "show-config": show_config_command,
    "ablate": ablate,
    "report": report_command,
    "explain": explain_command,
    "cache": cache_command,
}


def show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None, line: str | None = None) -> None:
    """A warning as one line that speaks of the data, not of the line of code that raised it."""
    text = " ".join(str(message).split())
    if not issubclass(category, DataWarning):
        text += f" ({category.__name__})"
    print(f"warning: {text}", file=sys.stderr)


class _LowercaseLevel(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(_LowercaseLevel())
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    shown = warnings.showwarning
    warnings.showwarning = show_warning
    try:
        return COMMANDS[args.command](args)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RunFailed as exc:
        print(f"error: {exc}; entries cached before the failure are intact.", file=sys.stderr)
        return EXIT_FAILURE
    except BrokenPipeError:
        # The reader went away (`explain | head -1`): stop quietly, as the Python docs advise.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}; entries cached before the failure are intact.", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        warnings.showwarning = shown


def command(argv: Sequence[str] | None = None) -> int:
    """`main` as a process of its own (`python -m pipeline`, the `gainsplit` script). At exit the
    interpreter's garbage collector would walk every object torch made, several times over; they
    are frozen out of its reach instead, as the process is ending anyway. Exit handlers still run
    and the standard streams are still flushed."""
    try:
        return main(argv)
    finally:
        gc.freeze()
