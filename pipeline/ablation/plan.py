"""An ablation's plan: its variants and, per variant and seed, one training as plain data (a
`Task`) that a worker process or a Ray task can take. Every configuration is parsed here, once.

Refused here, before anything is built: a variant (or the configuration every run shares) that
sets a seed the seed list sets (`ablation.vary` says which: `train.seed` always, `data.seed` with
`split`, `augment.seed` with `augment`), which the list would silently override; and two
variants that resolve to the same configuration, which would train the same runs and count them
as two. A seed the list does not set is the variant's own and is kept (its data may then differ
from the others': `pipeline.ablation.pairing` pairs such runs on the test samples they share)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.ablation.design import AblationConfig, Variant, expand
from pipeline.config import Config, ConfigError, dotted, load_config, parse_override
from pipeline.keys import canonical_json
from pipeline.stages import AugmentStage, CollectStage, ScaleStage, TrainStage



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
    fold: int | None = None  # k-fold resampling: the fold this training is tested on

    @property
    def run(self) -> tuple[str, int, int | None]:
        """Which training of the ablation this is: (variant, seed, fold)."""
        return self.variant, self.seed, self.fold


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
    fold: int | None = None  # k-fold: the fold it was tested on (None once its folds are merged, see `pipeline.ablation.folds`)
    folds: list[TrainingResult] = field(default_factory=list)  # k-fold, merged: its fold trainings in fold order

    @property
    def run(self) -> tuple[str, int, int | None]:
        return self.variant, self.seed, self.fold


def plan_ablation(
    base: dict[str, Any], overrides: list[str], ablation: AblationConfig, cache_dir: Path, runs_dir: Path, resume: bool = False
) -> AblationPlan:
    """Variants and their trainings, each configuration parsed and validated before anything runs.

    `base` is the config file's mapping without its `ablation` section; `overrides` apply to
    every training; with `resume`, interrupted trainings continue from their checkpoints."""
    variants = expand(ablation)
    refuse_seeds_the_list_sets(base, overrides, ablation, variants)
    tasks = []
    kfold = ablation.resampling.kind == "kfold"
    for variant in variants:
        for seed in ablation.seeds:
            for fold, picks in enumerate(ablation.fold_overrides()):
                try:
                    config = load_config(None, [*overrides, *variant.overrides(), *ablation.seed_overrides(seed), *picks], base=base)
                except ConfigError as exc:
                    raise ConfigError(f"ablation variant {variant.name!r}: {exc}") from None
                tasks.append(Task(variant.name, seed, config, str(cache_dir), str(runs_dir), resume, fold=fold if kfold else None))
    refuse_alike_variants(variants, [task for task in tasks if task.seed == ablation.seeds[0]])
    return AblationPlan(ablation, variants, tasks)


def _set_by(overrides: list[str]) -> dict[str, Any]:
    """What dotted `key=value` overrides set, each as its leaves (`train={seed: 3}` sets train.seed)."""
    leaves: dict[str, Any] = {}
    for text in overrides:
        key, value = parse_override(text)
        leaves.update(dotted(value, key))
    return leaves


def _seed_advice(source: str, key: str) -> str:
    if source == "train":
        return f"drop {key} from it; to train other seeds, list them in ablation.seeds"
    return (
        f"drop {key} from it, or remove '{source}' from ablation.vary so that its own {key} is kept "
        f"(its data then differs from the other variants', and its effect is paired on the test samples they share)"
    )


def refuse_seeds_the_list_sets(base: dict[str, Any], overrides: list[str], ablation: AblationConfig, variants: list[Variant]) -> None:
    """A `ConfigError` for a seed that the seed list sets and something else sets too: a factor or
    variant (the list would silently override it, and the variant would train, and be cached, as
    another's), or the configuration every run shares, unless it sets the default (a whole
    `Config` written out holds every seed at 0)."""
    defaults = dotted(Config().model_dump(mode="json"))
    shared = {**dotted(base), **_set_by(overrides)}
    for source, key in ablation.seed_keys().items():
        why = "the seed list sets it in every run" + ("" if source == "train" else f", as ablation.vary lists '{source}'")
        if key in ablation.factors:
            raise ConfigError(f"ablation factor {key} cannot vary: {why}; {_seed_advice(source, key)}.")
        for variant in variants:
            if key in _set_by(variant.overrides()):
                raise ConfigError(f"ablation variant {variant.name!r} sets {key}, but {why}; {_seed_advice(source, key)}.")
        if key in shared and canonical_json(shared[key]) != canonical_json(defaults[key]):
            raise ConfigError(f"the configuration sets {key}={shared[key]}, but {why}; remove it, or list the seeds you mean in ablation.seeds.")


def resolved_settings(config: Config) -> str:
    """Every setting a stage reads, as the stages read them (defaults filled in, settings a source
    does not read left out, `train.device: auto` resolved): equal for two configurations that
    compute the same thing."""
    settings = {"collect": CollectStage().settings(config), "augment": AugmentStage().params(config), "scale": ScaleStage().params(config)}
    try:
        settings["train"] = TrainStage().params(config)
    except ValueError:  # a device this machine lacks: `prepare` names it
        settings["train"] = {name: getattr(config, name).model_dump(mode="json") for name in ("model", "optim", "schedule", "early_stop", "train")}
    return canonical_json(settings)


def refuse_alike_variants(variants: list[Variant], tasks: list[Task]) -> None:
    """A `ConfigError` naming two variants whose configurations (of one seed) resolve alike: they
    would train the same runs (the second all cache hits) and count them as two variants."""
    seen: dict[str, str] = {}
    sets = {variant.name: ", ".join(variant.overrides()) or "nothing" for variant in variants}
    for task in tasks:
        first = seen.setdefault(resolved_settings(task.config), task.variant)
        if first != task.variant:
            raise ConfigError(
                f"ablation variants {first!r} (sets {sets[first]}) and {task.variant!r} (sets {sets[task.variant]}) resolve to the same "
                f"configuration once defaults are filled in, so they would train the same runs and count them twice; drop one, or change what it sets."
            )
