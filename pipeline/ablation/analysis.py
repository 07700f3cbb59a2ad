"""The statistics of an ablation, from its trainings' results: the variant table, the effects
read in every metric (Holm-adjusted as one family), fixed and broken test samples, per-class
changes, baselines and ensembles. `analyse` returns them as the summary `summary.json` holds;
the report and `pipeline.api.Ablation` only read that.

Runs are compared on the test samples they share, by identity (`pipeline.ablation.pairing`):
each effect and each fixed/broke count records its `pairing`."""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from datasets import DataWarning
from pipeline.ablation.baselines import ablation_baselines
from pipeline.ablation.design import AblationConfig, Variant
from pipeline.ablation.effects import adjust_together, factor_effects, interaction_effects, side_effects, variant_effect
from pipeline.ablation.folds import fold_design, merge_folds
from pipeline.ablation.fusion import read_data
from pipeline.ablation.pairing import Pairer, Pairing, decide, sample_ids
from pipeline.ablation.plan import AblationPlan, Task, TrainingResult
from pipeline.ablation.scores import METRICS, Metric, applicable, per_sample, score
from pipeline.ablation.sequential import Looks
from pipeline.ablation.stats import ACCURACY_RANGE, LOSS_RANGE, Effect, Folds, missing, summarize, summarize_runs
from pipeline.cache import CacheStore
from trainers.baselines import ensemble_accuracy

TOP_K = 3
log = logging.getLogger(__name__)


def stage_counts(results: list[TrainingResult]) -> dict[str, dict[str, int]]:
    """How many entries of each stage this ablation built and how many it found cached."""
    counts: dict[str, Counter] = {}
    for result in results:
        for stage in result.stages:
            counts.setdefault(stage["name"], Counter())["built" if stage["cache"] == "miss" else "hit"] += 1
    return {name: {"built": c["built"], "hit": c["hit"]} for name, c in counts.items()}


def _stage_key(record: dict[str, Any], name: str) -> str:
    return next(stage["key"] for stage in record["stages"] if stage["name"] == name)


class ScaledData:
    """The scaled arrays of the runs' data, each read (and verified) once per ablation for the
    baselines not yet cached and the flipped samples; an entry `cache gc` removed meanwhile is
    built again."""

    def __init__(self, store: CacheStore, tasks: list[Task]) -> None:
        self.store = store
        self._task_of = {task.data["scale"]: task for task in tasks}
        self._read: dict[str, Mapping[str, np.ndarray]] = {}

    def __call__(self, record: dict[str, Any]) -> Mapping[str, np.ndarray]:
        key = _stage_key(record, "scale")
        if key not in self._read:
            cached = self.store.load("scale", key)
            if cached is None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DataWarning)  # `prepare` said it about the data, once
                    cached = read_data(self._task_of[key], self.store)[1]["scale"]
            self._read[key] = cached.artifact.arrays
        return self._read[key]


def _quoted(names: list[str]) -> str:
    """Variant names as a list no comma inside a name can confuse: each in double quotes (JSON's)."""
    return ", ".join(json.dumps(name, ensure_ascii=False) for name in names)


def ensembles(results: list[TrainingResult], variants: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy of averaging predicted probabilities: over the seeds of each variant, and over
    the seeds of the top-k variants by validation accuracy, where the runs averaged scored the
    same test samples (not where each seed drew its own split: its probabilities are of other
    samples). Each ensemble has a `label` to print; `variants` keeps the top-k's names as a list."""
    by_variant: dict[str, list[TrainingResult]] = {}
    for result in results:
        by_variant.setdefault(result.variant, []).append(result)

    def averaged(runs: list[TrainingResult]) -> float | None:
        samples = [sample_ids(run, len(run.predictions["y_test"])) for run in runs]
        if not all(found.same_as(samples[0]) for found in samples[1:]):
            return None
        return ensemble_accuracy([run.predictions["test_probabilities"] for run in runs], runs[0].predictions["y_test"])

    per_variant = {}
    for name, runs in by_variant.items():
        accuracy = averaged(runs)
        per_variant[name] = {
            "seeds": len(runs),
            "test_accuracy": accuracy,
            "label": f"ensemble of {len(runs)} seeds of {_quoted([name])}",
            **({} if accuracy is not None else {"note": "its seeds scored different test samples, or the same in another order (each drew its own split or partition): not averaged"}),
        }
    ranked = sorted(variants, key=lambda v: v["val_accuracy"]["mean"], reverse=True)[:TOP_K]
    names = [v["name"] for v in ranked]
    accuracy = averaged([run for name in names for run in by_variant[name]])
    top = None
    if accuracy is not None:
        top = {"variants": names, "test_accuracy": accuracy, "label": f"ensemble of the top {len(names)} variants by validation: {_quoted(names)}"}
    return {"per_variant": per_variant, "top_k": top}


def _summary(records: list[dict[str, Any]], metric: str) -> dict[str, float]:
    bounds = LOSS_RANGE if metric.endswith("loss") else ACCURACY_RANGE
    return asdict(summarize([record["metrics"][metric] for record in records], bounds))


def correct_on_test(results: list[TrainingResult]) -> list[np.ndarray]:
    """Per run, which test samples it classified correctly (1.0) or not (0.0), from its test
    probabilities and labels: the per-sample scores the intervals resample."""
    return [(r.predictions["test_probabilities"].argmax(axis=1) == r.predictions["y_test"]).astype(float) for r in results]


@dataclass
class Matched:
    """A variant's runs against the baseline's of the same seed, on the test samples both scored
    (`pairing`): per seed, its result, its per-sample correctness and the baseline's on those
    samples, and their positions in its own test arrays."""

    pairing: Pairing
    runs: list[tuple[TrainingResult, np.ndarray, np.ndarray, np.ndarray]]


def against_baseline(results: list[TrainingResult], correct: list[np.ndarray], baseline: str, crossed: bool = True) -> dict[str, Matched]:
    """Per variant other than the baseline, its runs matched with the baseline's run of the same
    seed on the test samples they share, by identity (`crossed`: every seed scores the same test
    samples, see `pairing.decide`); a variant whose test samples pair with the baseline's only
    per seed (different test samples) is left out: no sample is compared."""
    by_run = {(r.variant, r.seed): (r, vector) for r, vector in zip(results, correct)}
    samples = {run: sample_ids(result, len(vector)) for run, (result, vector) in by_run.items()}
    matched: dict[str, Matched] = {}
    for variant in dict.fromkeys(r.variant for r in results if r.variant != baseline):
        seeds = [seed for (name, seed) in by_run if name == variant and (baseline, seed) in by_run]
        if not seeds:
            continue
        pairing, positions = decide({seed: [samples[(variant, seed)], samples[(baseline, seed)]] for seed in seeds}, crossed)
        if positions is None:
            continue
        runs = []
        for seed in seeds:
            (result, ours), (_, theirs) = by_run[(variant, seed)], by_run[(baseline, seed)]
            mine, its = positions[seed]
            runs.append((result, ours[mine], theirs[its], mine))
        matched[variant] = Matched(pairing, runs)
    return matched


def flips(results: list[TrainingResult], correct: list[np.ndarray], baseline: str, crossed: bool = True) -> dict[str, dict[str, Any]]:
    """Per variant, how many test samples it fixed (the baseline got them wrong, it right) and
    broke (the other way round), mean over the seeds both ran, counted on the samples both
    scored, with that `pairing`: the churn a net effect hides."""
    return {
        variant: {
            "fixed": float(np.mean([((ours == 1) & (theirs == 0)).sum() for _, ours, theirs, _ in found.runs])),
            "broke": float(np.mean([((ours == 0) & (theirs == 1)).sum() for _, ours, theirs, _ in found.runs])),
            **found.pairing.fields(),
        }
        for variant, found in against_baseline(results, correct, baseline, crossed).items()
    }


FLIPPED_PER_KIND, FLIPPED_VARIANTS = 4, 8


def flipped_samples(
    results: list[TrainingResult], correct: list[np.ndarray], baseline: str, data: ScaledData, crossed: bool = True
) -> dict[str, np.ndarray]:
    """For each of the first variants, a few test images it fixed and broke against the baseline
    with the same seed (among the samples both scored), scaled back to [0, 1] for display, as the
    arrays of `flipped.npz` (`images` (N, H, W, C), `labels` (class names), `variants`, `kinds`);
    empty for tables."""
    images_out, labels_out, variants_out, kinds_out = [], [], [], []
    for variant, found in list(against_baseline(results, correct, baseline, crossed).items())[:FLIPPED_VARIANTS]:
        result, ours, theirs, positions = found.runs[0]
        # Under k-fold the positions run over the folds' test samples in fold order.
        parts = result.folds or [result]
        size = len(parts[0].predictions["y_test"])
        names = result.record["data"]["class_names"]
        for kind, mask in (("fixed", (ours == 1) & (theirs == 0)), ("broke", (ours == 0) & (theirs == 1))):
            for position in positions[np.flatnonzero(mask)[:FLIPPED_PER_KIND]]:
                part, index = divmod(int(position), size)
                arrays = data(parts[part].record)
                images, labels = np.asarray(arrays["x_test"]), np.asarray(arrays["y_test"])
                if images.ndim != 4 or images.shape[1] not in (1, 3):
                    return {}
                image = images[index].transpose(1, 2, 0).astype(float)
                images_out.append((image - image.min()) / max(float(np.ptp(image)), 1e-12))  # any scaling back to [0, 1]
                labels_out.append(names[int(labels[index])])
                variants_out.append(variant)
                kinds_out.append(kind)
    if not images_out:
        return {}
    return {"images": np.stack(images_out), "labels": np.array(labels_out), "variants": np.array(variants_out), "kinds": np.array(kinds_out)}


def per_class_changes(results: list[TrainingResult], variants: list[Variant]) -> dict[str, dict[str, float]] | None:
    """Per variant, how each class's test accuracy moved against the baseline (mean over the
    seeds both ran): which classes a change helped and which it hurt; None past 20 classes."""
    by_variant: dict[str, dict[int, dict[str, float]]] = {}
    for result in results:
        by_variant.setdefault(result.variant, {})[result.seed] = result.record["metrics"]["per_class_accuracy"]
    baseline = variants[0].name
    classes = list(next(iter(by_variant[baseline].values())))
    if len(classes) > 20:
        return None
    changes = {}
    for variant in variants[1:]:
        seeds = sorted(set(by_variant[variant.name]) & set(by_variant[baseline]))
        changes[variant.name] = {
            c: sum(by_variant[variant.name][s][c] - by_variant[baseline][s][c] for s in seeds) / len(seeds) for c in classes
        }
    return changes


def uncertainty(ablation: AblationConfig, shared_samples: bool | Folds, test_samples: int, effects: list[Effect]) -> dict[str, Any]:
    """Which sources of variation the intervals cover, and the smallest effect they can detect."""
    sources = ["initialization, batch order and dropout masks (train.seed)"]
    if "split" in ablation.vary:
        if isinstance(shared_samples, Folds):
            sources.append("the partition into folds (data.seed)")
        else:
            # With "split" varied, shared test samples mean a test split of its own (a test file, the official one).
            which = "train/validation split (data.seed) of the training samples" if shared_samples else "train/validation/test split (data.seed) of this dataset's samples"
            sources.append(
                f"the {which} (every seed splits the same ones, so the intervals say what other splits of them would give, not what another dataset would)"
            )
    if "augment" in ablation.vary:
        sources.append("the augmentation draws (augment.seed)")
    if isinstance(shared_samples, Folds):
        sources.append(
            f"the test samples and the training data the {shared_samples.k} folds' models share (every sample tested once per seed; "
            f"Nadeau and Bengio's corrected variance, test/train = {shared_samples.test_samples}/{shared_samples.train_samples})"
        )
    else:
        sources.append("the test samples (" + ("every seed scores the same ones: crossed with the seeds)" if shared_samples else "each seed draws its own)"))
    detectable = [e.detectable for e in effects if not missing(e.detectable)]
    return {
        "sources": sources,
        "fixed": [name for source, name in (("split", "the data split"), ("augment", "the augmentation draws")) if source not in ablation.vary],
        "shared_test_samples": shared_samples is True,
        "resampling": ablation.resampling.model_dump(mode="json"),
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


UNSTABLE_ADVICE = "Seeds disagree: compare their learning curves before reading any verdict; a lower learning rate often steadies training."


def diagnosis_detail(records: list[dict[str, Any]], verdict: str) -> dict[str, Any]:
    """A variant's diagnosis in full: how many seeds gave each verdict, and the advice of a seed
    whose verdict is the variant's (the first seed's where none is)."""
    counts = Counter(record["diagnosis"]["verdict"] for record in records).most_common()
    advising = next((record for record in records if record["diagnosis"]["verdict"] == verdict), records[0])
    advice = UNSTABLE_ADVICE if verdict.startswith("unstable") else advising["diagnosis"]["advice"]
    caveats = advising["diagnosis"].get("caveats", [])  # batch norm with small batches (absent from entries trained before)
    return {"counts": dict(counts), "advice": advice, "advice_seed": advising["config"]["train"]["seed"], "caveats": caveats}


def variant_table(
    variants: list[Variant], results: list[TrainingResult], correct: list[np.ndarray], shared_samples: bool | Folds
) -> list[dict[str, Any]]:
    """Per variant: accuracy (its interval over seeds and test samples) and loss over seeds,
    epochs run, seconds and cache hits per stage."""
    table = []
    for variant in variants:
        records = [r.record for r in results if r.variant == variant.name]
        scores = [vector for r, vector in zip(results, correct) if r.variant == variant.name]
        stages = {}
        runs_stages = [r.stages for r in results if r.variant == variant.name]
        for stage in runs_stages[0]:
            runs = [next(s for s in stages_of_run if s["name"] == stage["name"]) for stages_of_run in runs_stages]
            stages[stage["name"]] = {
                "seconds": float(np.mean([s["seconds"] for s in runs])),
                "hits": sum(s["cache"] == "hit" for s in runs),
            }
        verdict = variant_diagnosis(records)
        table.append(
            {
                "name": variant.name,
                "settings": variant.settings,
                "changed": list(variant.changed),
                "seeds": [r.seed for r in results if r.variant == variant.name],
                "test_accuracy": asdict(summarize_runs(scores, shared_samples, ACCURACY_RANGE)),
                "test_loss": _summary(records, "test_loss"),
                "val_accuracy": _summary(records, "val_accuracy"),
                "epochs_run": float(np.mean([rec["metrics"]["epochs_run"] for rec in records])),
                "train_samples": records[0]["train_samples"],
                "stages": stages,
                "diagnosis": verdict,
                "diagnosis_detail": diagnosis_detail(records, verdict),
            }
        )
    return table


def _predictions(result: TrainingResult, split: str) -> tuple[np.ndarray, np.ndarray]:
    """A run's predicted probabilities on `split` (val or test) and the split's labels."""
    return result.predictions[f"{split}_probabilities"], result.predictions[f"y_{split}"]


def best_by_validation(scores: dict[str, dict[str, Any]], metric: Metric) -> str:
    """The variant with the best mean validation score: chosen on validation, reported on test."""
    chooser = max if metric.higher_is_better else min
    return chooser(scores, key=lambda name: scores[name]["validation"]["mean"])


def pairer_for(results: list[TrainingResult], shared: bool | Folds) -> Pairer:
    """What pairs the runs' test samples by identity in every reading of the ablation (k-fold
    runs of one seed test the same samples; across seeds, other partitions, in other orders)."""
    return Pairer({(r.variant, r.seed): sample_ids(r, len(r.predictions["y_test"])) for r in results}, shared is True)


def read_in(
    metric: Metric, ablation: AblationConfig, variants: list[Variant], results: list[TrainingResult], shared: bool | Folds,
    pairer: Pairer | None = None, looks: Looks | None = None,
) -> dict[str, Any]:
    """The ablation read in one metric: each variant's test score (interval over seeds and test
    samples) and validation score, the best variant by validation, and every effect on test
    (each on the test samples its runs share, with its `pairing`), Holm-adjusted as one family
    (with `looks`, over repeated p-values: see `pipeline.ablation.sequential`)."""
    pairer = pairer or pairer_for(results, shared)
    # Under k-fold each fold's model is scored on its own fold, then the folds are put together.
    parts = [np.concatenate([per_sample(metric.name, *_predictions(part, "test")) for part in (r.folds or [r])]) for r in results]
    validation = [float(np.mean([score(metric.name, *_predictions(part, "val")) for part in (r.folds or [r])])) for r in results]
    scores = {}
    for variant in variants:
        mine = [i for i, r in enumerate(results) if r.variant == variant.name]
        scores[variant.name] = {
            "test": asdict(summarize_runs([parts[i] for i in mine], shared, metric.bounds)),
            "validation": asdict(summarize([validation[i] for i in mine], metric.bounds)),
        }
    best = best_by_validation(scores, metric)
    rows = [
        {"variant": r.variant, "settings": next(v.settings for v in variants if v.name == r.variant), "seed": r.seed,
         "score": float(vector.mean()), "per_sample": {"score": vector}}
        for r, vector in zip(results, parts)
    ]
    by_run = {(r.variant, r.seed): (r, vector) for r, vector in zip(results, parts)}

    def rescore(run: tuple[str, int], positions: np.ndarray) -> np.ndarray:
        """A run's per-sample scores on some of its test samples, as if they were all it had."""
        probabilities, labels = _predictions(by_run[run][0], "test")
        try:
            return per_sample(metric.name, probabilities[positions], labels[positions])
        except ValueError:  # ROC-AUC of samples of one class: the whole set's pseudo-values stand in
            return by_run[run][1][positions]

    baseline = variants[0].name

    def gain(rows: list[dict[str, Any]]) -> list[Effect]:
        found = variant_effect(rows, best, baseline, "score", shared, metric.span) if best != baseline else None
        return [found] if found is not None else []

    families = [
        pairer.effects("factors", lambda rows: factor_effects(rows, ablation, "score", shared, metric.span), rows, "score", rescore),
        pairer.effects("interactions", lambda rows: interaction_effects(rows, ablation, "score", shared, metric.span), rows, "score", rescore),
        pairer.effects("sides", lambda rows: side_effects(rows, ablation, "score", shared, metric.span), rows, "score", rescore),
        pairer.effects(f"verdict: {best}", gain, rows, "score", rescore),
    ]
    effects, interactions, sides, verdict = adjust_together(*[[effect for effect, _ in family] for family in families], looks=looks)
    pairings = [[pairing for _, pairing in family] for family in families]

    epochs = epochs_effects(ablation, rows, results, best, baseline)

    def described(found: list[Effect], paired: list[Pairing]) -> list[dict[str, Any]]:
        return [
            {**asdict(e), **pairing.fields(), "epochs": epochs.get(e.name), "sentence": metric.sentence(e) + _saving(e.name, epochs.get(e.name))}
            for e, pairing in zip(found, paired)
        ]

    tests = next((effect.tests for effect in effects + interactions + sides + verdict), 0)  # distinct: a test met twice counts once
    return {
        "metric": metric.name,
        "scores": scores,
        "effects": described(effects, pairings[0]),
        "side_effects": described(sides, pairings[2]),
        "interactions": described(interactions, pairings[1]),
        "verdict": {"best_variant": best, "baseline": baseline, "gain": described(verdict, pairings[3])[0] if verdict else None},
        "multiple_testing": f"Holm over all {tests} distinct tests of this report",
        "uncertainty": uncertainty(ablation, shared, len(parts[0]), effects + interactions + sides),
        "best_variant": best,
    }


def epochs_effects(ablation: AblationConfig, rows: list[dict[str, Any]], results: list[TrainingResult], best: str, baseline: str) -> dict[str, dict[str, float]]:
    """Each effect's change in epochs trained (the same contrasts over one number per run, a
    t-interval over seeds, not adjusted: it describes cost, it decides nothing), by effect name,
    with the baseline variant's mean epochs for scale. Epochs are exact for every member of a
    fused array, where seconds are only its share of the array's time."""
    trained = {(r.variant, r.seed): float(r.record["metrics"]["epochs_run"]) for r in results}
    counted = [{**row, "per_sample": {"epochs": np.array([trained[(row["variant"], row["seed"])]])}} for row in rows]
    span = float(max(r.record["config"]["train"]["epochs"] for r in results))
    found = [
        *factor_effects(counted, ablation, "epochs", False, span), *interaction_effects(counted, ablation, "epochs", False, span),
        *side_effects(counted, ablation, "epochs", False, span),
        *([variant_effect(counted, best, baseline, "epochs", False, span)] if best != baseline else []),
    ]
    reference = float(np.mean([epochs for (variant, _), epochs in trained.items() if variant == baseline]))
    return {
        e.name: {"mean": e.summary.mean, "low": e.summary.low, "high": e.summary.high, "baseline": reference}
        for e in found if e is not None
    }


def _saving(name: str, epochs: dict[str, float] | None) -> str:
    """For an early-stopping effect, what it saved: early stopping is more about cost than score."""
    if epochs is None or "early_stop" not in name or missing(epochs["low"]):
        return ""
    fewer = epochs["mean"] < 0
    share = f" ({abs(epochs['mean']) / epochs['baseline']:.0%} of the baseline's {epochs['baseline']:.1f})" if epochs["baseline"] else ""
    return (
        f", and trained {abs(epochs['mean']):.1f} {'fewer' if fewer else 'more'} epochs per run "
        f"[{-epochs['high'] if fewer else epochs['low']:.1f}, {-epochs['low'] if fewer else epochs['high']:.1f}]{share}"
    )


def analyse(
    plan: AblationPlan, results: list[TrainingResult], store: CacheStore, fused: bool, looks: Looks | None = None
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The ablation's summary (every table and reading of `summary.json`, run folders as the
    results name them) and the flipped test samples' arrays (`flipped.npz`; empty for tables).
    `looks`: a seeds-until-decided ablation's planned looks, of which this is the last taken."""
    ablation, variants = plan.ablation, plan.variants
    data = ScaledData(store, plan.tasks)
    trainings = results
    shared: bool | Folds = "split" not in ablation.vary or plan.tasks[0].config.data.fixed_test
    if ablation.resampling.kind == "kfold":  # each (variant, seed) as one run that tested every sample once
        results = merge_folds(trainings)
        shared = fold_design(trainings, ablation.resampling.folds)
    correct = correct_on_test(results)
    crossed = shared is True
    table = variant_table(variants, results, correct, shared)
    classes = len(results[0].record["data"]["class_names"])
    pairer = pairer_for(results, shared)
    readings = {
        name: read_in(metric, ablation, variants, results, shared, pairer, looks) for name, metric in METRICS.items() if applicable(name, classes)
    }
    chosen = readings[ablation.metric]
    summary = {
        "ablation": ablation.model_dump(mode="json"),
        "stages": stage_counts(trainings),
        "variants": table,
        **chosen,  # metric, scores, effects, side_effects, interactions, verdict, multiple_testing, uncertainty, best_variant
        "by_metric": readings,  # the same in every other metric: `report --metric NAME` shows one
        "flips": flips(results, correct, variants[0].name, crossed),
        "per_class_changes": per_class_changes(results, variants),
        "baselines": ablation_baselines(results, data, [variants[0].name, chosen["best_variant"]], store),
        "ensembles": ensembles(results, table),
        "runs": [{"variant": r.variant, "seed": r.seed, **({} if r.fold is None else {"fold": r.fold}), "run_dir": r.run_dir} for r in trainings],
        "fused": fused,
        "sequential": None if looks is None else looks.describe(),
    }
    return summary, flipped_samples(results, correct, variants[0].name, data, crossed)
