"""`python -m pipeline ...`: run the pipeline, or show the resolved configuration."""

from __future__ import annotations

import argparse
import copy
import logging
import os
import sys
import time
from pathlib import Path
from typing import Sequence

from pipeline.cache import CacheStore
from pipeline.config import ConfigError, config_to_yaml, load_config, read_config_file
from pipeline.runner import RunResult, run_pipeline

DEFAULT_CACHE_DIR = ".pipeline-cache"
DEFAULT_RUNS_DIR = "runs"
EXIT_USAGE = 2
EXIT_FAILURE = 1


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="a YAML or JSON config file")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. train.epochs=5")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run collect -> augment -> scale -> train, reusing cached stages")
    _add_config_arguments(run)
    _add_cache_argument(run)
    run.add_argument("--runs-dir", default=DEFAULT_RUNS_DIR, help=f"where run records go (default: {DEFAULT_RUNS_DIR})")
    run.add_argument("--force", action="store_true", help="rebuild every stage even when it is cached")
    run.add_argument("--resume", action="store_true", help="continue an interrupted training from its last checkpoint")
    run.add_argument("--quiet", action="store_true", help="no progress bar and no summary table")

    show = commands.add_parser("show-config", help="print the fully resolved configuration as YAML")
    _add_config_arguments(show)

    ablate = commands.add_parser("ablate", help="run an ablation (the config's `ablation:` section) and write its report")
    _add_config_arguments(ablate)
    _add_cache_argument(ablate)
    ablate.add_argument("--out", help="where the records and report go (default: ablations/<id>/)")
    ablate.add_argument("--jobs", type=int, default=1, help="local worker processes sharing the cache (default: 1)")
    ablate.add_argument("--executor", choices=["local", "ray"], default="local", help="run trainings locally or as Ray tasks")
    ablate.add_argument("--ray-address", help="a running Ray cluster (default: start a local Ray instance)")
    ablate.add_argument(
        "--fuse", choices=["on", "off"], default="on",
        help="train the runs that differ only in member-level settings as one fused network (default: on)",
    )
    ablate.add_argument("--resume", action="store_true", help="continue interrupted trainings (fused or not) from their checkpoints")
    ablate.add_argument("--quiet", action="store_true", help="no progress bar and no summary")

    report = commands.add_parser("report", help="re-render an ablation's report from its records, without training")
    report.add_argument("folder", help="an ablation folder (holding summary.json)")

    explain = commands.add_parser("explain", help="for each stage, say whether it would hit and, if not, what changed")
    _add_config_arguments(explain)
    _add_cache_argument(explain)

    cache = commands.add_parser("cache", help="inspect, check and prune the stage cache")
    _add_cache_argument(cache)
    actions = cache.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("ls", help="entries with stage, key, size, age, last used")
    actions.add_parser("verify", help="re-hash every entry; remove corrupt ones and orphaned temporary folders")
    gc = actions.add_parser("gc", help="remove entries by size, age or count (never one in use)")
    gc.add_argument("--max-size", help="keep the cache under this size, least recently used first out (e.g. 2GB)")
    gc.add_argument("--older-than", help="remove entries not used for this long (e.g. 30d, 12h)")
    gc.add_argument("--keep-last", type=int, help="keep only the N most recently used entries of each stage")
    return parser


def _add_cache_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache-dir",
        default=os.environ.get("PIPELINE_CACHE_DIR", DEFAULT_CACHE_DIR),
        help=f"stage cache folder (default: $PIPELINE_CACHE_DIR or {DEFAULT_CACHE_DIR})",
    )


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
    lines.append(f"run record: {result.run_dir / 'run.json'}")
    return "\n".join(lines)


def ablate(args: argparse.Namespace) -> int:
    """Run the ablation in the config file (or the embedded default) and render its report."""
    from pipeline.ablation.default import DEFAULT_ABLATION
    from pipeline.ablation.execute import run_ablation
    from pipeline.ablation.report import render

    tree = read_config_file(args.config) if args.config else copy.deepcopy(DEFAULT_ABLATION)
    config = load_config(None, args.overrides, base=tree)
    if config.ablation is None:
        raise ConfigError(f"{args.config} has no 'ablation:' section (design, seeds, factors).")
    base = {key: value for key, value in tree.items() if key != "ablation"}
    out = Path(args.out) if args.out else Path("ablations") / time.strftime("%Y%m%d-%H%M%S")
    summary = run_ablation(
        base, args.overrides, config.ablation, out, Path(args.cache_dir), args.jobs, not args.quiet,
        executor=args.executor, ray_address=args.ray_address, fuse=args.fuse == "on", resume=args.resume,
    )
    report = render(out)
    if not args.quiet:
        for name, counts in summary["stages"].items():
            print(f"{name:<8} built {counts['built']:>3}  hit {counts['hit']:>3}")
        for effect in summary["side_effects"] + summary["effects"] + summary["interactions"]:
            print(f"- {effect['sentence']}")
        print(f"report: {report} (and {report.with_suffix('.html').name}, runs.csv, summary.json)")
    return 0


def cache_command(args: argparse.Namespace) -> int:
    from pipeline import maintenance

    store = CacheStore(args.cache_dir)
    if args.action == "ls":
        print(maintenance.list_entries(store))
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
        if args.max_size is None and args.older_than is None and args.keep_last is None:
            raise ValueError("cache gc needs --max-size, --older-than or --keep-last.")
        if args.keep_last is not None and args.keep_last < 0:
            raise ValueError(f"--keep-last must be >= 0, got {args.keep_last}.")
        removed, busy = maintenance.collect_garbage(
            store,
            max_size=maintenance.parse_size(args.max_size) if args.max_size else None,
            older_than=maintenance.parse_age(args.older_than) if args.older_than else None,
            keep_last=args.keep_last,
        )
        for entry in removed:
            print(f"removed {entry.stage}/{entry.key[:12]} ({maintenance.human_size(entry.bytes)})")
        for entry in busy:
            print(f"kept {entry.stage}/{entry.key[:12]}: in use by another process")
        print(f"{len(removed)} entries removed, {maintenance.human_size(sum(e.bytes for e in removed))} freed")
    return 0


def run_command(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    result = run_pipeline(config, args.cache_dir, args.runs_dir, force=args.force, resume=args.resume, progress=not args.quiet)
    if not args.quiet and result.run_dir is not None:  # under torchrun, rank 0 reports
        print(format_summary(result))
    return 0


def show_config_command(args: argparse.Namespace) -> int:
    print(config_to_yaml(load_config(args.config, args.overrides)), end="")
    return 0


def explain_command(args: argparse.Namespace) -> int:
    from pipeline.explain import explain

    print("\n".join(explain(load_config(args.config, args.overrides), CacheStore(args.cache_dir))))
    return 0


def report_command(args: argparse.Namespace) -> int:
    from pipeline.ablation.report import render

    print(render(args.folder))
    return 0


COMMANDS = {
    "run": run_command,
    "show-config": show_config_command,
    "ablate": ablate,
    "report": report_command,
    "explain": explain_command,
    "cache": cache_command,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        return COMMANDS[args.command](args)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}; entries cached before the failure are intact.", file=sys.stderr)
        return EXIT_FAILURE
