"""Cross-validated ablations: the k trainings of one (variant, seed), each tested on one fold,
read as one run that tested every sample once (`ablation.resampling: {kind: kfold}`).

A merged run's test predictions are its folds' in fold order, so its per-sample scores split
back into the folds (`stats.Folds`) for Nadeau and Bengio's corrected variance; its metrics are
the folds' means (the folds are equal in size, so the test accuracy is also the pooled one), its
stage seconds the folds' sums."""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.ablation.plan import TrainingResult
from pipeline.ablation.stats import Folds

# Predictions that are per sample, kept in fold order; the rest of a fold's predictions are its own.
PER_SAMPLE = ("test_probabilities", "y_test", "id_test", "val_probabilities", "y_val", "id_val")


def _mean_metrics(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The folds' metrics averaged: numbers and per-class mappings; anything else the first fold's."""
    merged: dict[str, Any] = {}
    for name, value in records[0]["metrics"].items():
        values = [record["metrics"][name] for record in records]
        if isinstance(value, dict):
            merged[name] = {key: float(np.mean([v[key] for v in values])) for key in value}
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            merged[name] = float(np.mean(values))
        else:
            merged[name] = value
    return merged


def _summed_stages(folds: list[TrainingResult]) -> list[dict[str, Any]]:
    """Each stage once, as the K trainings met it together: their seconds added, a hit where every fold hit."""
    merged = []
    for stage in folds[0].stages:
        alike = [next(s for s in fold.stages if s["name"] == stage["name"]) for fold in folds]
        cache = "hit" if all(s["cache"] == "hit" for s in alike) else "miss"
        merged.append({**stage, "seconds": float(sum(s["seconds"] for s in alike)), "cache": cache})
    return merged


def merge_folds(results: list[TrainingResult]) -> list[TrainingResult]:
    """Each (variant, seed)'s fold trainings as one result, in the order their first folds came."""
    grouped: dict[tuple[str, int], list[TrainingResult]] = {}
    for result in results:
        grouped.setdefault((result.variant, result.seed), []).append(result)
    merged = []
    for (variant, seed), folds in grouped.items():
        folds = sorted(folds, key=lambda result: result.fold)
        predictions = {name: np.concatenate([fold.predictions[name] for fold in folds]) for name in PER_SAMPLE if name in folds[0].predictions}
        record = {**folds[0].record, "metrics": _mean_metrics([fold.record for fold in folds]), "folds": len(folds)}
        merged.append(TrainingResult(variant, seed, folds[0].run_dir, record, predictions, _summed_stages(folds), folds=folds))
    return merged


def fold_design(results: list[TrainingResult], k: int) -> Folds:
    """The folds' sizes, for the corrected variance: test samples per fold and distinct training
    samples per model (before augmentation; the fewest, where a variant trains on less)."""
    tests = {len(result.predictions["y_test"]) for result in results}
    if len(tests) != 1:
        raise ValueError(f"k-fold runs tested on folds of different sizes {sorted(tests)}: the folds must be equal")
    return Folds(k, tests.pop(), min(sum(result.record["data"]["class_counts"]["train"]) for result in results))
