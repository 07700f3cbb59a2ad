"""Planning an ablation before training it (`ablate --plan`): how many trainings and in which fused
units, how long they will take on this device (from a one-epoch probe of the largest unit), and the
smallest effect the design can decide with 80% power once its p-values are adjusted together.

The detectable effect comes from a previous ablation's variance components when one is given
(`like`); else from how often the probe's members of different variants disagree on the test
samples they share (after two epochs networks disagree more than trained ones, so this errs
large); else, where no two probed members share test samples, from the baseline's expected
accuracy p, as if the variants erred independently (2p(1-p) of the samples differ). Trains
nothing that is kept: the data stages are built (cheap, and cached), the probe is discarded."""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.ablation.design import AblationConfig
from pipeline.ablation.effects import adjust_together, factor_effects, interaction_effects, side_effects, variant_effect
from pipeline.ablation.fusion import fusion_units, read_data
from pipeline.ablation.plan import AblationPlan, Task, plan_ablation
from pipeline.ablation.prepare import prepare
from pipeline.ablation.report import read_summary
from pipeline.ablation.scores import METRICS
from pipeline.ablation.stats import ALPHA, Summary, detectable_at, seeds_to_decide
from pipeline.cache import CacheStore
from pipeline.runner import plan_stages
from pipeline.stages import training_stage
from pipeline.stages.train import train_unit, unit_member


@dataclass(frozen=True)
class DesignPlan:
    """What an ablation will cost and what it can decide, before any training."""

    variants: int
    seeds: int
    trainings: int
    cached: int  # trainings whose result the cache already holds
    units: list[int]  # members per unit, as they will train
    epochs: int  # the most epochs a training may run
    seconds_per_member_epoch: float  # measured by the probe
    estimated_seconds: float  # every uncached training running all its epochs: early stopping only shortens it
    tests: int  # distinct tests in the report's family (p-values are adjusted over these)
    test_samples: int  # per seed: of one fold under k-fold
    shared_samples: bool  # every seed scores the same test samples
    variance_source: str  # where the detectable effect's variances come from
    detectable: float  # the smallest effect decided with 80% power, adjusted over `tests`; the metric's span: none is
    resolution: float | None  # the effect the user wants resolved, if any
    seeds_to_resolve: int | None  # seeds that would resolve it (None: no number of seeds would)
    kfold_detectable: float | None = None  # a holdout design's detectable effect were it 5-fold with these seeds
    folds: int | None = None  # k-fold resampling: trainings per variant and seed
    looks: tuple[int, ...] = ()  # seeds until decided: the seed counts it may look at (the plan above is the first look's)

    @property
    def resolves(self) -> bool | None:
        return None if self.resolution is None else self.detectable <= self.resolution


def _family_size(plan: AblationPlan, samples: int) -> int:
    """How many distinct tests the report will adjust together: the effects the analysis computes,
    found by running it on random scores of this design's shape."""
    rng = np.random.default_rng(0)
    by_variant = {variant.name: variant.settings for variant in plan.variants}
    rows = [
        {"variant": task.variant, "settings": by_variant[task.variant], "seed": task.seed,
         "per_sample": {"score": rng.integers(0, 2, samples).astype(float)}}
        for task in plan.tasks
    ]
    ablation, names = plan.ablation, [variant.name for variant in plan.variants]
    gain = [variant_effect(rows, names[-1], names[0], "score", True)] if len(names) > 1 else []
    families = adjust_together(
        factor_effects(rows, ablation, "score", True), interaction_effects(rows, ablation, "score", True),
        side_effects(rows, ablation, "score", True), [effect for effect in gain if effect is not None],
    )
    return max(1, next((effect.tests for family in families for effect in family), 1))


def _components_like(folder: Path) -> tuple[float, float, float, str]:
    """The median variance components (seed, sample, residual) of a previous ablation's effects."""
    summary = read_summary(folder)
    found = [e["summary"] for key in ("effects", "side_effects") for e in summary[key] if e["summary"].get("seed_var") is not None]
    if not found:
        raise ValueError(f"{folder} holds no effect with variance components to plan from: run it again with this gainsplit.")
    parts = [statistics.median(float(s[name] or 0.0) for s in found) for name in ("seed_var", "sample_var", "residual_var")]
    return parts[0], parts[1], parts[2], f"the variances of the ablation in {folder}"


def _components(disagreement: float, shared: bool, source: str) -> tuple[float, float, float, str]:
    """Variance components of a paired difference on samples of which this share differ between the
    arms: the samples' share where every seed scores the same ones (conservatively: as if the seeds
    agreed on each), the residual's where each seed draws its own."""
    parts = (0.0, disagreement, 0.0) if shared else (0.0, 0.0, disagreement)
    return (*parts, source)


@dataclass(frozen=True)
class Probe:
    """Two epochs of (up to ten members of) the largest unit, trained and discarded."""

    seconds_per_member_epoch: float  # the second epoch's: the first pays for warming up
    overhead_seconds: float  # per unit: building the array, evaluating it
    accuracy: float  # mean test accuracy of the probed members
    disagreement: float | None  # mean share of shared test samples two probed variants classify differently


PROBE_EPOCHS = 2


PROBE_MEMBERS = 10  # a fused array's time per member levels off well before this many


def _probe(units: list[list[Task]], store: CacheStore) -> Probe:
    unit = max(units, key=len)[:PROBE_MEMBERS]
    members, shared = [], {}
    for task in unit:
        _, results = read_data(task, store)
        config = task.config.model_copy(update={"train": task.config.train.model_copy(update={"epochs": PROBE_EPOCHS})})
        scaled = shared.setdefault(task.data["scale"], results["scale"].artifact.arrays)
        members.append(unit_member(config, {name: cached.artifact for name, cached in results.items()}, scaled))
    started = time.perf_counter()
    artifacts = train_unit(members)
    total = time.perf_counter() - started
    epochs = [row["seconds"] for row in artifacts[0].info["history"]]
    predictions = [artifact.arrays["test_probabilities"].argmax(axis=1) for artifact in artifacts]
    pairs = [
        float(np.mean(predictions[i] != predictions[j]))
        for i in range(len(unit)) for j in range(i + 1, len(unit))
        if unit[i].variant != unit[j].variant and unit[i].data["collect"] == unit[j].data["collect"]
    ]
    return Probe(
        epochs[-1] / len(unit), max(0.0, total - sum(epochs)),
        float(np.mean([artifact.info["metrics"]["test_accuracy"] for artifact in artifacts])),
        float(np.mean(pairs)) if pairs else None,
    )


def _cached_accuracy(tasks: list[Task], store: CacheStore) -> tuple[set[int], list[float]]:
    """Which trainings the cache holds (by `id`), and the baseline's cached test accuracies."""
    cached: set[int] = set()
    baseline = []
    data: dict[tuple[str, ...], Any] = {}  # each data preparation read once
    for task in tasks:
        preparation = tuple(task.data.values())
        if preparation not in data:
            data[preparation] = read_data(task, store)[1]
        results = data[preparation]
        key = plan_stages(task.config, [training_stage(task.config)])[0].keyed_on(results).key
        manifest = store.manifest("train", key)
        if manifest is not None:
            cached.add(id(task))
            if task.variant == tasks[0].variant:
                baseline.append(manifest["info"]["metrics"]["test_accuracy"])
    return cached, baseline


def plan_design(
    base: dict[str, Any], overrides: list[str], ablation: AblationConfig, cache_dir: Path, *, fuse: bool = True,
    like: Path | None = None, resolution: float | None = None,
) -> DesignPlan:
    """The plan of an ablation: trainings, units, time on this device, and what it can decide
    (`resolution`: the smallest effect the user wants resolved, in the metric's units)."""
    plan = plan_ablation(base, overrides, ablation, cache_dir.resolve(), cache_dir.resolve() / "plan-runs")
    store = CacheStore(cache_dir)
    prepared = prepare(plan.tasks, metric=ablation.metric)
    plan = replace(plan, tasks=prepared.tasks)
    units = fusion_units(plan.tasks, fuse, solo=prepared.solo)
    cached_tasks, baseline = _cached_accuracy(plan.tasks, store)
    cached = len(cached_tasks)
    training_units = sum(1 for unit in units if any(id(task) not in cached_tasks for task in unit))  # a unit wholly cached never starts
    probe = _probe(units, store)
    epochs = max(task.config.train.epochs for task in plan.tasks)
    _, results = read_data(plan.tasks[0], store)
    samples = int(results["scale"].artifact.arrays["y_test"].shape[0])
    shared = "split" not in ablation.vary or plan.tasks[0].config.data.fixed_test
    tests = _family_size(plan, samples)
    if like is not None and ablation.resampling.kind == "kfold":
        raise ValueError("--like plans from a held-out ablation's variances; a k-fold design is planned without it (its folds change what they mean)")
    if like is not None:
        seed_var, sample_var, residual_var, source = _components_like(like)
    elif probe.disagreement is not None:
        source = f"the probe's variants disagreeing on {probe.disagreement:.1%} of their shared test samples after {PROBE_EPOCHS} epochs"
        seed_var, sample_var, residual_var, source = _components(probe.disagreement, shared, source)
    else:
        accuracy, where = (float(np.mean(baseline)), "the cached baseline") if baseline else (probe.accuracy, f"the probe after {PROBE_EPOCHS} epochs")
        disagreement = 2 * accuracy * (1 - accuracy)
        source = f"an expected accuracy of {accuracy:.3f} ({where}), errors independent between variants"
        seed_var, sample_var, residual_var, source = _components(disagreement, shared, source)
    seeds, folds = len(ablation.seeds), ablation.resampling.folds if ablation.resampling.kind == "kfold" else None
    counts = results["collect"].artifact.info["class_counts"]
    span = METRICS[ablation.metric].span
    kfold_detectable = None
    averaged_over = samples  # the test samples a seed's mean averages; one fold estimate's under k-fold
    if folds is None and like is None:
        kfold_detectable = _kfold_detectable(seed_var + sample_var + residual_var, counts, seeds, ALPHA / tests, span)
    if folds is not None and like is None:  # a fold estimate's variance, as `stats.Folds` splits it (Nadeau and Bengio)
        per_fold = (seed_var + sample_var + residual_var) / samples
        correction = samples / sum(counts["train"])
        seed_var, sample_var, residual_var, averaged_over = per_fold / folds, correction * per_fold, 0.0, 1
    variance = seed_var / seeds + sample_var / averaged_over + residual_var / (seeds * averaged_over)
    df = seeds * folds - 1 if folds is not None else seeds - 1
    detectable = min(span, detectable_at(math.sqrt(variance), df, ALPHA / tests)) if variance > 0 and df > 0 else span
    difference = Summary(seeds, 0.0, 0.0, 0.0, 0.0, seed_var=seed_var, sample_var=sample_var, residual_var=residual_var, samples=averaged_over)
    return DesignPlan(
        variants=len(plan.variants), seeds=seeds, folds=folds, trainings=len(plan.tasks), cached=cached, units=[len(unit) for unit in units],
        epochs=epochs, seconds_per_member_epoch=probe.seconds_per_member_epoch,
        estimated_seconds=probe.seconds_per_member_epoch * epochs * (len(plan.tasks) - cached) + probe.overhead_seconds * training_units,
        tests=tests, test_samples=samples,
        shared_samples=shared, variance_source=source, detectable=detectable, resolution=resolution,
        seeds_to_resolve=None if resolution is None else seeds_to_decide(difference, resolution, ALPHA / tests),
        kfold_detectable=kfold_detectable, looks=ablation.looks() if ablation.until_decided is not None else (),
    )


KFOLD_ALTERNATIVE = 5


def _kfold_detectable(disagreement: float, counts: dict[str, list[int]], seeds: int, alpha: float, span: float) -> float:
    """The effect 5-fold resampling with these seeds would detect on all of this data, given the
    per-sample variance of a paired difference (`disagreement`): fold estimates of n/5 samples,
    Nadeau and Bengio's correction with the training folds less validation."""
    total = sum(sum(counts[split]) for split in ("train", "val", "test"))
    fold, train = total // KFOLD_ALTERNATIVE, total - total // KFOLD_ALTERNATIVE - sum(counts["val"])
    estimates = seeds * KFOLD_ALTERNATIVE
    variance = (1 / estimates + fold / train) * disagreement / fold
    return min(span, detectable_at(math.sqrt(variance), estimates - 1, alpha)) if variance > 0 else span
