"""Which change bought the gain: per-factor effects, the data-side and model-side effects, and
their interaction, each as a paired difference over seeds."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import replace
from typing import Any, Iterable

import numpy as np

from pipeline.ablation.design import AblationConfig
from pipeline.ablation.stats import Effect, holm, paired_effect

Row = dict[str, Any]  # one training: "variant", "settings", "seed" and the metric


def _cell(settings: dict[str, Any]) -> str:
    return json.dumps(settings, sort_keys=True)


def _per_seed(rows: Iterable[Row], metric: str) -> dict[int, np.ndarray]:
    """Per seed, the metric per test sample where the rows carry it (`per_sample`, e.g. test
    correctness), else the metric itself; averaged over the given rows (one cell, or several)."""
    grouped: dict[int, list[np.ndarray]] = defaultdict(list)
    for row in rows:
        per_sample = row.get("per_sample", {}).get(metric)
        grouped[row["seed"]].append(np.asarray(per_sample if per_sample is not None else [row[metric]], dtype=float))
    return {seed: np.mean(vectors, axis=0) for seed, vectors in grouped.items()}


def _describe(key: str, before: Any, after: Any) -> str:
    return f"setting {key} from {json.dumps(before)} to {json.dumps(after)}"


def factor_effects(rows: list[Row], ablation: AblationConfig, metric: str = "test_accuracy", shared_samples: bool = False) -> list[Effect]:
    """Each factor's effect for each non-baseline value (`shared_samples`: every seed scored the
    same test samples, so they are a crossed source of variation).

    Full design: the main effect, averaging every other factor's levels. One at a time: the
    change against the baseline with everything else at baseline. List: each variant
    against the first one listed.
    """
    effects: list[Effect | None] = []
    if ablation.design == "list":
        names = list(ablation.variants)
        reference = _per_seed((r for r in rows if r["variant"] == names[0]), metric)
        for name in names[1:]:
            treated = _per_seed((r for r in rows if r["variant"] == name), metric)
            effects.append(paired_effect(f"{name} (vs {names[0]})", "variant", treated, reference, shared_samples))
    else:
        baseline = {key: factor.values[0] for key, factor in ablation.factors.items()}
        for key, factor in ablation.factors.items():
            for value in factor.values[1:]:
                if ablation.design == "full":
                    treated = _per_seed((r for r in rows if r["settings"][key] == value), metric)
                    reference = _per_seed((r for r in rows if r["settings"][key] == baseline[key]), metric)
                else:
                    treated = _per_seed((r for r in rows if _cell(r["settings"]) == _cell({**baseline, key: value})), metric)
                    reference = _per_seed((r for r in rows if _cell(r["settings"]) == _cell(baseline)), metric)
                effects.append(paired_effect(_describe(key, baseline[key], value), factor.side, treated, reference, shared_samples))
    return [effect for effect in effects if effect is not None]


def variant_effect(rows: list[Row], treated: str, reference: str, metric: str = "test_accuracy", shared_samples: bool = False) -> Effect | None:
    """One variant against another, paired by seed (and test sample): the verdict's net gain."""
    return paired_effect(
        f"switching from {reference} to {treated}",
        "verdict",
        _per_seed((r for r in rows if r["variant"] == treated), metric),
        _per_seed((r for r in rows if r["variant"] == reference), metric),
        shared_samples,
    )


def adjust_together(*families: list[Effect]) -> list[list[Effect]]:
    """Holm-adjust every test of the report as one family (factor effects, side effects and
    their interaction alike), so no p-value is read without the others it was tested beside."""
    everything = [effect for family in families for effect in family]
    adjusted = iter(holm([effect.p_value for effect in everything]))
    return [[replace(effect, p_holm=next(adjusted)) for effect in family] for family in families]


def side_effects(rows: list[Row], ablation: AblationConfig, metric: str = "test_accuracy", shared_samples: bool = False) -> list[Effect]:
    """The data-side effect (every data factor changed), the model-side effect (every model
    factor changed), both together, and the interaction (both - data - model + baseline).

    Empty when the design lacks these corners (a list design, or only one side has factors).
    """
    if ablation.design == "list":
        return []
    factors = ablation.factors
    sides = {factor.side for factor in factors.values()}
    if sides != {"data", "model"}:
        return []

    def corner(*changed: str) -> dict[int, np.ndarray]:
        settings = {key: (f.values[-1] if f.side in changed else f.values[0]) for key, f in factors.items()}
        return _per_seed((r for r in rows if _cell(r["settings"]) == _cell(settings)), metric)

    baseline, data, model, both = corner(), corner("data"), corner("model"), corner("data", "model")
    seeds = sorted(set(baseline) & set(data) & set(model) & set(both))
    if not seeds:
        return []
    interaction = {s: both[s] - data[s] - model[s] + baseline[s] for s in seeds}
    zero = {s: np.zeros_like(interaction[s]) for s in seeds}
    effects = [
        paired_effect("the data-side changes", "data", data, baseline, shared_samples),
        paired_effect("the model-side changes", "model", model, baseline, shared_samples),
        paired_effect("both sides together", "both", both, baseline, shared_samples),
        paired_effect("the data-by-model interaction", "interaction", interaction, zero, shared_samples, bounds=(-2.0, 2.0)),
    ]
    return [effect for effect in effects if effect is not None]
