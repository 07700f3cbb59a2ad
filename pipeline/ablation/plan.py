"""An ablation's plan: its variants and, per variant and seed, one training as plain data (a
`Task`) that a worker process or a Ray task can take. Every configuration is parsed here, once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.ablation.design import AblationConfig, Variant, expand
from pipeline.config import Config, ConfigError, load_config

DATA_STAGES = ("collect", "augment", "scale")


@dataclass(frozen=True)
class Task:
    """One training of the ablation: a variant's configuration with its seed applied.

    `data` holds the keys of the data stages' entries once the ablation has built them
    (`prepare`), so a worker reads them instead of planning them again."""

    variant: str
    seed: int
    config: Config
    cache_dir: str
    runs_dir: str
    resume: bool = False  # continue an interrupted training from its checkpoint
    data: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AblationPlan:
    """What an ablation will train: its design, its variants in order (the first is the
    baseline) and every (variant, seed) training."""

    ablation: AblationConfig
    variants: list[Variant]
    tasks: list[Task]


@dataclass
class TrainingResult:
    """One finished training as the ablation reads it in: its run record, where it went, its
    stages as the ablation met them, and its predictions (copied out of the cache as soon as the
    run has them, so a `cache gc` meanwhile loses nothing)."""

    variant: str
    seed: int
    run_dir: str
    record: dict[str, Any]
    predictions: dict[str, np.ndarray]
    stages: list[dict[str, Any]] = field(default_factory=list)


def plan_ablation(
    base: dict[str, Any], overrides: list[str], ablation: AblationConfig, cache_dir: Path, runs_dir: Path, resume: bool = False
) -> AblationPlan:
    """Variants and their trainings, each configuration parsed and validated before anything runs.

    `base` is the config file's mapping without its `ablation` section; `overrides` apply to
    every training; with `resume`, interrupted trainings continue from their checkpoints."""
    variants = expand(ablation)
    tasks = []
    for variant in variants:
        for seed in ablation.seeds:
            try:
                config = load_config(None, [*overrides, *variant.overrides(), *ablation.seed_overrides(seed)], base=base)
            except ConfigError as exc:
                raise ConfigError(f"ablation variant {variant.name!r}: {exc}") from None
            tasks.append(Task(variant.name, seed, config, str(cache_dir), str(runs_dir), resume))
    return AblationPlan(ablation, variants, tasks)
