"""`python -m pipeline ...`: run the pipeline, or show the resolved configuration."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

from pipeline.config import ConfigError, config_to_yaml, load_config
from pipeline.runner import RunResult, run_pipeline

DEFAULT_CACHE_DIR = ".pipeline-cache"
DEFAULT_RUNS_DIR = "runs"
EXIT_USAGE = 2


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="a YAML or JSON config file")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. train.epochs=5")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run collect -> augment -> scale -> train, reusing cached stages")
    _add_config_arguments(run)
    run.add_argument(
        "--cache-dir",
        default=os.environ.get("PIPELINE_CACHE_DIR", DEFAULT_CACHE_DIR),
        help=f"stage cache folder (default: $PIPELINE_CACHE_DIR or {DEFAULT_CACHE_DIR})",
    )
    run.add_argument("--runs-dir", default=DEFAULT_RUNS_DIR, help=f"where run records go (default: {DEFAULT_RUNS_DIR})")
    run.add_argument("--force", action="store_true", help="rebuild every stage even when it is cached")
    run.add_argument("--resume", action="store_true", help="continue an interrupted training from its last checkpoint")
    run.add_argument("--quiet", action="store_true", help="no progress bar and no summary table")

    show = commands.add_parser("show-config", help="print the fully resolved configuration as YAML")
    _add_config_arguments(show)
    return parser


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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        config = load_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "show-config":
        print(config_to_yaml(config), end="")
        return 0
    try:
        result = run_pipeline(
            config, args.cache_dir, args.runs_dir, force=args.force, resume=args.resume, progress=not args.quiet
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not args.quiet:
        print(format_summary(result))
    return 0
