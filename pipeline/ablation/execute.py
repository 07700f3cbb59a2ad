"""Running an ablation: every variant times every seed through the cached pipeline (with the
executor of `executors.py`), then the numbers for the report."""

from __future__ import annotations

import json
import logging
import math
import os
import time
import warnings
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any, Collection

import numpy as np
from tqdm.auto import tqdm

from datasets import DataWarning
from pipeline.ablation.design import AblationConfig, Variant, expand
from pipeline.ablation.effects import adjust_together, factor_effects, interaction_effects, side_effects, variant_effect
from pipeline.ablation.executors import EXECUTORS, run_local, run_on_ray
from pipeline.ablation.fusion import fusion_units
from pipeline.ablation.prepare import QUIET, ablation_stages, prepare
from pipeline.ablation.scores import METRICS, Metric, applicable, per_sample, score
from pipeline.ablation.stats import ACCURACY_RANGE, LOSS_RANGE, Effect, json_safe, missing, summarize, summarize_runs
from pipeline.ablation.tasks import Task, task_config
from pipeline.cache import CacheStore
from pipeline.config import ConfigError
from pipeline.runner import run_stages
from pipeline.stages import default_stages
from trainers.baselines import ensemble_accuracy, sklearn_baselines

TOP_K = 3
log = logging.getLogger(__name__)


def plan_tasks(
    base: dict[str, Any], overrides: list[str], ablation: AblationConfig, cache_dir: Path, runs_dir: Path, resume: bool = False
) -> tuple[list[Variant], list[Task]]:
    """Variants and their trainings; every variant's configuration is validated before anything runs.

    `base` is the config file's mapping without its `ablation` section; with `resume`, interrupted
    trainings continue from their checkpoints.
    """
    variants = expand(ablation)
    tasks = []
    for variant in variants:
        for seed in ablation.seeds:
            task = Task(
                variant.name, seed, base, (*overrides, *variant.overrides()), str(cache_dir), str(runs_dir), resume,
                tuple(ablation.seed_overrides(seed)),
            )
            try:
                task_config(task)
            except ConfigError as exc:
                raise ConfigError(f"ablation variant {variant.name!r}: {exc}") from None
            tasks.append(task)
    return variants, tasks


def execute(
    tasks: list[Task], jobs: int, progress: bool, executor: str = "local", ray_address: str | None = None,
    ray_options: dict[str, Any] | None = None, fuse: bool = True, solo: Collection[tuple[str, int]] = (),
) -> list[dict[str, Any]]:
    """Run the trainings with the chosen executor, those that can train as one fused array
    together (`fuse`), those in `solo` (variant, seed) one at a time; results come back in task order."""
    if executor not in EXECUTORS:
        raise ValueError(f"Unknown executor {executor!r}. Known: {', '.join(EXECUTORS)}.")
    units = fusion_units(tasks, fuse, solo=solo)
    bar = tqdm(total=len(tasks), desc="ablation", unit="run", disable=not progress)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # `prepare` said it about the data, once
        try:
            if executor == "ray":
                return run_on_ray(tasks, units, ray_address, lambda: bar.update(1), ray_options)
            return run_local(tasks, units, jobs, lambda: bar.update(1))
        finally:
            bar.close()


def stage_counts(results: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """How many entries of each stage this ablation built and how many it found cached."""
    counts: dict[str, Counter] = {}
    for result in results:
        for stage in result["stages"]:
            counts.setdefault(stage["name"], Counter())["built" if stage["cache"] == "miss" else "hit"] += 1
    return {name: {"built": c["built"], "hit": c["hit"]} for name, c in counts.items()}


def _stage_key(record: dict[str, Any], name: str) -> str:
    return next(stage["key"] for stage in record["stages"] if stage["name"] == name)


class ScaledData:
    """The scaled arrays of the runs' data, each read (and verified) once per ablation for the
    baselines and figures; an entry `cache gc` removed meanwhile is built again from its run's
    settings (the data stages are deterministic: the same key, the same bytes)."""

    def __init__(self, store: CacheStore, tasks: list[Task], results: list[dict[str, Any]]) -> None:
        self.store = store
        self._task_of = {_stage_key(result["record"], "scale"): task for task, result in zip(tasks, results)}
        self._read: dict[str, dict[str, np.ndarray]] = {}

    def __call__(self, record: dict[str, Any]) -> dict[str, np.ndarray]:
        key = _stage_key(record, "scale")
        if key not in self._read:
            cached = self.store.load("scale", key)
            if cached is None:
                log.warning("the cache no longer holds scale entry %s (removed during the ablation?); building it again", key[:12])
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DataWarning)  # `prepare` said it about the data, once
                    outcomes, built = run_stages(task_config(self._task_of[key]), self.store, context=QUIET, stages=default_stages()[:3])
                if outcomes[-1].key != key:
                    raise ValueError(f"scale entry {key[:12]} came out as {outcomes[-1].key[:12]} when built again: the data changed during the ablation")
                cached = built["scale"]
            self._read[key] = cached.artifact.arrays
        return self._read[key]


def ensembles(results: list[dict[str, Any]], variants: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy of averaging predicted probabilities: over the seeds of each variant, and over
    the seeds of the top-k variants by validation accuracy (when they share their test split)."""
    by_variant: dict[str, list[dict[str, np.ndarray]]] = {}
    for result in results:
        by_variant.setdefault(result["variant"], []).append(result["arrays"])
    labels = {}
    per_variant = {}
    for name, runs in by_variant.items():
        labels[name] = runs[0]["y_test"]
        probabilities = [arrays["test_probabilities"] for arrays in runs]
        per_variant[name] = {"seeds": len(runs), "test_accuracy": ensemble_accuracy(probabilities, labels[name])}
    ranked = sorted(variants, key=lambda v: v["val_accuracy"]["mean"], reverse=True)[:TOP_K]
    names = [v["name"] for v in ranked]
    top = None
    if all(np.array_equal(labels[n], labels[names[0]]) for n in names):
        probabilities = [arrays["test_probabilities"] for n in names for arrays in by_variant[n]]
        top = {"variants": names, "test_accuracy": ensemble_accuracy(probabilities, labels[names[0]])}
    return {"per_variant": per_variant, "top_k": top}


def baselines(results: list[dict[str, Any]], data: ScaledData, variant_names: list[str]) -> list[dict[str, Any]]:
    """scikit-learn baselines on the cached, scaled data of each named variant (the baseline's and
    the best one's), once per distinct data."""
    done: dict[str, dict[str, Any]] = {}
    for variant in variant_names:
        record = next(r["record"] for r in results if r["variant"] == variant)
        key = _stage_key(record, "scale")
        if key not in done:
            arrays = data(record)
            scores = sklearn_baselines(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"])
            done[key] = {"data_of_variant": variant, "models": scores}
    return list(done.values())


def _summary(records: list[dict[str, Any]], metric: str) -> dict[str, float]:
    bounds = LOSS_RANGE if metric.endswith("loss") else ACCURACY_RANGE
    return asdict(summarize([record["metrics"][metric] for record in records], bounds))


def correct_on_test(results: list[dict[str, Any]]) -> list[np.ndarray]:
    """Per run, which test samples it classified correctly (1.0) or not (0.0), from its test
    probabilities and labels: the per-sample scores the intervals resample."""
    return [(r["arrays"]["test_probabilities"].argmax(axis=1) == r["arrays"]["y_test"]).astype(float) for r in results]


Pair = tuple[dict[str, Any], np.ndarray, np.ndarray]  # a variant's run, its per-sample correctness, the baseline's


def against_baseline(results: list[dict[str, Any]], correct: list[np.ndarray], baseline: str) -> dict[str, list[Pair]]:
    """Per variant other than the baseline, each of its runs with the baseline's run of the same
    seed on the same test samples: (its result, its per-sample correctness, the baseline's)."""
    by_run = {(r["variant"], r["seed"]): (r, vector) for r, vector in zip(results, correct)}
    pairs: dict[str, list[Pair]] = {}
    for (variant, seed), (result, ours) in by_run.items():
        theirs = by_run.get((baseline, seed), (None, None))[1]
        if variant != baseline and theirs is not None and theirs.shape == ours.shape:
            pairs.setdefault(variant, []).append((result, ours, theirs))
    return pairs


def flips(results: list[dict[str, Any]], correct: list[np.ndarray], baseline: str) -> dict[str, dict[str, float]]:
    """Per variant, how many test samples it fixed (the baseline got them wrong, it right) and
    broke (the other way round), mean over the seeds both ran: the churn a net effect hides."""
    return {
        variant: {
            "fixed": float(np.mean([((ours == 1) & (theirs == 0)).sum() for _, ours, theirs in pairs])),
            "broke": float(np.mean([((ours == 0) & (theirs == 1)).sum() for _, ours, theirs in pairs])),
        }
        for variant, pairs in against_baseline(results, correct, baseline).items()
    }


FLIPPED_PER_KIND, FLIPPED_VARIANTS = 4, 8


def draw_flipped(results: list[dict[str, Any]], correct: list[np.ndarray], baseline: str, data: ScaledData, path: Path) -> Path | None:
    """`plots/flipped.png`: for each of the first variants, a few test images it fixed and broke
    against the baseline with the same seed (image data only; None for tables)."""
    from pipeline.ablation import plots

    rows = []
    for variant, pairs in list(against_baseline(results, correct, baseline).items())[:FLIPPED_VARIANTS]:
        result, ours, theirs = pairs[0]
        record = result["record"]
        arrays = data(record)
        images, labels = np.asarray(arrays["x_test"]), np.asarray(arrays["y_test"])
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            return None
        names = record["data"]["class_names"]

        def pick(mask: np.ndarray) -> list[tuple[np.ndarray, str]]:
            chosen = []
            for index in np.flatnonzero(mask)[:FLIPPED_PER_KIND]:
                image = images[index].transpose(1, 2, 0).astype(float)
                image = (image - image.min()) / max(float(np.ptp(image)), 1e-12)  # any scaling back to [0, 1] for display
                chosen.append((image[..., 0] if image.shape[2] == 1 else image, names[int(labels[index])]))
            return chosen

        rows.append({"variant": variant, "fixed": pick((ours == 1) & (theirs == 0)), "broke": pick((ours == 0) & (theirs == 1))})
    if not rows:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    return plots.flipped_samples(rows, path)


def uncertainty(ablation: AblationConfig, shared_samples: bool, test_samples: int, effects: list[Effect]) -> dict[str, Any]:
    """Which sources of variation the intervals cover, and the smallest effect they can detect."""
    sources = ["initialization, batch order and dropout masks (train.seed)"]
    if "split" in ablation.vary:
        sources.append("the train/validation/test split (data.seed)")
    if "augment" in ablation.vary:
        sources.append("the augmentation draws (augment.seed)")
    sources.append("the test samples (" + ("every seed scores the same ones: crossed with the seeds)" if shared_samples else "each seed draws its own)"))
    detectable = [e.detectable for e in effects if not missing(e.detectable)]
    return {
        "sources": sources,
        "fixed": [name for source, name in (("split", "the data split"), ("augment", "the augmentation draws")) if source not in ablation.vary],
        "shared_test_samples": shared_samples,
        "seeds": len(ablation.seeds),
        "test_samples": test_samples,
        "detectable_effect": float(np.median(detectable)) if detectable else math.nan,
    }


COLLAPSE = 0.05  # a seed this far below its variant's median validation accuracy (and beyond the noise) collapsed


def collapsed_seeds(records: list[dict[str, Any]]) -> list[int]:
    """Seeds whose validation accuracy fell far below the variant's median: more than 5 points
    and more than four binomial standard errors of a validation set this size."""
    accuracies = np.array([record["metrics"]["val_accuracy"] for record in records])
    median = float(np.median(accuracies))
    val_samples = sum(records[0]["data"]["class_counts"]["val"])
    threshold = max(COLLAPSE, 4 * math.sqrt(median * (1 - median) / max(1, val_samples)))
    return [record["config"]["train"]["seed"] for record, value in zip(records, accuracies) if median - value > threshold]


def variant_diagnosis(records: list[dict[str, Any]]) -> str:
    """The verdict most of a variant's seeds share, or "unstable" when some seeds collapsed (their
    verdicts would read instability as over- or underfitting)."""
    collapsed = collapsed_seeds(records)
    if collapsed:
        return f"unstable: seed{'s' if len(collapsed) > 1 else ''} {', '.join(map(str, collapsed))} collapsed"
    return Counter(record["diagnosis"]["verdict"] for record in records).most_common(1)[0][0]


def variant_table(
    variants: list[Variant], results: list[dict[str, Any]], correct: list[np.ndarray], shared_samples: bool
) -> list[dict[str, Any]]:
    """Per variant: accuracy (its interval over seeds and test samples) and loss over seeds,
    epochs run, seconds and cache hits per stage."""
    table = []
    for variant in variants:
        records = [r["record"] for r in results if r["variant"] == variant.name]
        scores = [vector for r, vector in zip(results, correct) if r["variant"] == variant.name]
        stages = {}
        runs_stages = [r["stages"] for r in results if r["variant"] == variant.name]
        for stage in runs_stages[0]:
            runs = [next(s for s in stages_of_run if s["name"] == stage["name"]) for stages_of_run in runs_stages]
            stages[stage["name"]] = {
                "seconds": float(np.mean([s["seconds"] for s in runs])),
                "hits": sum(s["cache"] == "hit" for s in runs),
            }
        table.append(
            {
                "name": variant.name,
                "settings": variant.settings,
                "changed": list(variant.changed),
                "seeds": [r["seed"] for r in results if r["variant"] == variant.name],
                "test_accuracy": asdict(summarize_runs(scores, shared_samples, ACCURACY_RANGE)),
                "test_loss": _summary(records, "test_loss"),
                "val_accuracy": _summary(records, "val_accuracy"),
                "epochs_run": float(np.mean([rec["metrics"]["epochs_run"] for rec in records])),
                "train_samples": records[0]["train_samples"],
                "stages": stages,
                "diagnosis": variant_diagnosis(records),
            }
        )
    return table


def _predictions(result: dict[str, Any], split: str) -> tuple[np.ndarray, np.ndarray]:
    """A run's predicted probabilities on `split` (val or test) and the split's labels."""
    return result["arrays"][f"{split}_probabilities"], result["arrays"][f"y_{split}"]


def best_by_validation(scores: dict[str, dict[str, Any]], metric: Metric) -> str:
    """The variant with the best mean validation score: chosen on validation, reported on test."""
    chooser = max if metric.higher_is_better else min
    return chooser(scores, key=lambda name: scores[name]["validation"]["mean"])


def read_in(
    metric: Metric, ablation: AblationConfig, variants: list[Variant], results: list[dict[str, Any]], shared: bool
) -> dict[str, Any]:
    """The ablation read in one metric: each variant's test score (interval over seeds and test
    samples) and validation score, the best variant by validation, and every effect on test,
    Holm-adjusted as one family."""
    parts = [per_sample(metric.name, *_predictions(r, "test")) for r in results]
    validation = [score(metric.name, *_predictions(r, "val")) for r in results]
    scores = {}
    for variant in variants:
        mine = [i for i, r in enumerate(results) if r["variant"] == variant.name]
        scores[variant.name] = {
            "test": asdict(summarize_runs([parts[i] for i in mine], shared, metric.bounds)),
            "validation": asdict(summarize([validation[i] for i in mine], metric.bounds)),
        }
    best = best_by_validation(scores, metric)
    rows = [
        {"variant": r["variant"], "settings": next(v.settings for v in variants if v.name == r["variant"]), "seed": r["seed"],
         "score": float(vector.mean()), "per_sample": {"score": vector}}
        for r, vector in zip(results, parts)
    ]
    baseline = variants[0].name
    gain = variant_effect(rows, best, baseline, "score", shared, metric.span) if best != baseline else None
    effects, interactions, sides, verdict = adjust_together(
        factor_effects(rows, ablation, "score", shared, metric.span),
        interaction_effects(rows, ablation, "score", shared, metric.span),
        side_effects(rows, ablation, "score", shared, metric.span),
        [gain] if gain is not None else [],
    )

    def described(found: list[Effect]) -> list[dict[str, Any]]:
        return [{**asdict(e), "sentence": metric.sentence(e)} for e in found]

    tests = len(effects) + len(interactions) + len(sides) + len(verdict)
    return {
        "metric": metric.name,
        "scores": scores,
        "effects": described(effects),
        "side_effects": described(sides),
        "interactions": described(interactions),
        "verdict": {"best_variant": best, "baseline": baseline, "gain": described(verdict)[0] if verdict else None},
        "multiple_testing": f"Holm over all {tests} effects of this report",
        "uncertainty": uncertainty(ablation, shared, len(parts[0]), effects + interactions + sides),
        "best_variant": best,
    }


def run_ablation(
    base: dict[str, Any],
    overrides: list[str],
    ablation: AblationConfig,
    out_dir: Path,
    cache_dir: Path,
    jobs: int = 1,
    progress: bool = True,
    executor: str = "local",
    ray_address: str | None = None,
    ray_options: dict[str, Any] | None = None,
    fuse: bool = True,
    resume: bool = False,
) -> dict[str, Any]:
    """Run every training of the ablation and write `<out>/summary.json`; return the summary."""
    runs_dir = out_dir.resolve() / "runs"
    variants, tasks = plan_tasks(base, overrides, ablation, cache_dir.resolve(), runs_dir, resume)
    started = time.perf_counter()
    prepared = prepare(tasks, progress, ablation.metric)
    results = execute(tasks, jobs, progress, executor, ray_address, ray_options, fuse, prepared.solo)
    for result in results:
        result["stages"] = ablation_stages(result, prepared)
    data = ScaledData(CacheStore(cache_dir), tasks, results)
    correct = correct_on_test(results)
    shared = "split" not in ablation.vary or task_config(tasks[0]).data.use_official_test
    table = variant_table(variants, results, correct, shared)
    classes = len(results[0]["record"]["data"]["class_names"])
    readings = {name: read_in(metric, ablation, variants, results, shared) for name, metric in METRICS.items() if applicable(name, classes)}
    chosen = readings[ablation.metric]
    summary = {
        "ablation": ablation.model_dump(mode="json"),
        "stages": stage_counts(results),
        "variants": table,
        **chosen,  # metric, scores, effects, side_effects, interactions, verdict, multiple_testing, uncertainty, best_variant
        "by_metric": readings,  # the same in every other metric: `report --metric NAME` shows one
        "flips": flips(results, correct, variants[0].name),
        "baselines": baselines(results, data, [variants[0].name, chosen["best_variant"]]),
        "ensembles": ensembles(results, table),
        "runs": [
            {"variant": r["variant"], "seed": r["seed"], "run_dir": os.path.relpath(r["run_dir"], out_dir)} for r in results
        ],
        "seconds": time.perf_counter() - started,
        "fused": fuse,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    draw_flipped(results, correct, variants[0].name, data, out_dir / "plots" / "flipped.png")
    (out_dir / "summary.json").write_text(json.dumps(json_safe(summary), indent=1, default=str, allow_nan=False))
    return summary
