"""Which change bought the gain: per-factor effects, the data-side and model-side effects, and
their interaction, each as a paired difference over seeds.

`span` is the width of the metric's range (1 for accuracy-like scores, infinite for log loss):
a difference lies within +-span, an interaction of four cells within +-2 span."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections import defaultdict
from dataclasses import replace
from typing import Any, Iterable

import numpy as np

from pipeline.ablation.design import AblationConfig, two_factor_aliases
from pipeline.ablation.sequential import Looks
from pipeline.ablation.stats import Effect, Folds, holm, paired_effect

Row = dict[str, Any]  # one training: "variant", "settings", "seed" and the metric


def _cell(settings: dict[str, Any]) -> str:
    return json.dumps(settings, sort_keys=True)


Contrast = dict[str, float]  # cell -> weight: which cells an effect compares, and how


def _contrast(*terms: tuple[float, Iterable[Row]]) -> Contrast:
    """The linear contrast over cells that `sum(weight * mean over the term's cells)` computes."""
    weights: dict[str, float] = defaultdict(float)
    for weight, rows in terms:
        cells = {_cell(row["settings"]) for row in rows}
        for cell in cells:
            weights[cell] += weight / len(cells)
    return {cell: round(weight, 9) for cell, weight in weights.items() if abs(weight) > 1e-12}


def _identified(effect: Effect | None, contrast: Contrast) -> Effect | None:
    """The effect with the identity of its test: the contrast it computes, whatever its name or
    the order its terms were summed in (two effects with one contrast are one test)."""
    if effect is None:
        return None
    return replace(effect, test_id=hashlib.sha256(json.dumps(sorted(contrast.items())).encode()).hexdigest()[:16])


def _per_seed(rows: Iterable[Row], metric: str) -> dict[int, np.ndarray]:
    """Per seed, the metric per test sample where the rows carry it (`per_sample`, e.g. test
    correctness), else the metric itself; averaged over the given rows (one cell, or several)."""
    grouped: dict[int, list[np.ndarray]] = defaultdict(list)
    for row in rows:
        per_sample = row.get("per_sample", {}).get(metric)
        grouped[row["seed"]].append(np.asarray(per_sample if per_sample is not None else [row[metric]], dtype=float))
    return {seed: np.mean(vectors, axis=0) for seed, vectors in grouped.items()}


def _signed_sum(*parts: tuple[float, np.ndarray]) -> np.ndarray:
    """`sum(sign * scores)` sample by sample; of the means where a data factor gave the parts
    different test samples."""
    if len({scores.shape for _, scores in parts}) > 1:
        return np.array([sum(sign * scores.mean() for sign, scores in parts)])
    return sum(sign * scores for sign, scores in parts)


def _describe(key: str, before: Any, after: Any) -> str:
    return f"setting {key} from {json.dumps(before)} to {json.dumps(after)}"


def _cells(rows: list[Row], settings: dict[str, Any]) -> list[Row]:
    """The rows of the cell `settings` names. Rows of one variant share their settings object, so
    each distinct object is encoded once, not every row's (docs/performance.md)."""
    wanted = _cell(settings)
    matches: dict[int, bool] = {}  # by id: the rows hold every object alive while this runs
    for row in rows:
        if id(row["settings"]) not in matches:
            matches[id(row["settings"])] = _cell(row["settings"]) == wanted
    return [row for row in rows if matches[id(row["settings"])]]


def factor_effects(rows: list[Row], ablation: AblationConfig, metric: str = "test_accuracy", shared_samples: bool | Folds = False, span: float = 1.0) -> list[Effect]:
    """Each factor's effect for each non-baseline value (`shared_samples`: every seed scored the
    same test samples, so they are a crossed source of variation); each name says what the
    effect is conditional on.

    Full and fractional designs: the main effect, averaging over the other factors' values.
    One at a time: the change added to the baseline (all else at baseline) and, for the last
    value, removed from the configuration with every change made (all else changed); the two
    differ by the factor's interactions with the others. List: each variant against the first.
    """
    effects: list[Effect | None] = []
    if ablation.design == "list":
        names = list(ablation.variants)
        first = [r for r in rows if r["variant"] == names[0]]
        for name in names[1:]:
            mine = [r for r in rows if r["variant"] == name]
            effect = paired_effect(name, "variant", _per_seed(mine, metric), _per_seed(first, metric), shared_samples, (-span, span), f"vs {names[0]}")
            effects.append(_identified(effect, _contrast((1, mine), (-1, first))))
        return [effect for effect in effects if effect is not None]
    factors = ablation.factors
    baseline = {key: factor.values[0] for key, factor in factors.items()}
    everything = {key: factor.values[-1] for key, factor in factors.items()}
    for key, factor in factors.items():
        for value in factor.values[1:]:
            name = _describe(key, baseline[key], value)
            if ablation.design in ("full", "fractional"):
                treated = [r for r in rows if r["settings"][key] == value]
                reference = [r for r in rows if r["settings"][key] == baseline[key]]
                condition = "averaged over the other factors"
            else:
                treated, reference, condition = _cells(rows, {**baseline, key: value}), _cells(rows, baseline), "all else at baseline"
            effect = paired_effect(name, factor.side, _per_seed(treated, metric), _per_seed(reference, metric), shared_samples, (-span, span), condition)
            effects.append(_identified(effect, _contrast((1, treated), (-1, reference))))
        if ablation.design == "one_at_a_time" and ablation.remove_one and len(factors) > 2:
            without, full = _cells(rows, {**everything, key: baseline[key]}), _cells(rows, everything)
            name = _describe(key, baseline[key], everything[key])
            effect = paired_effect(name, factor.side, _per_seed(full, metric), _per_seed(without, metric), shared_samples, (-span, span), "all else changed")
            effects.append(_identified(effect, _contrast((1, full), (-1, without))))
    return [effect for effect in effects if effect is not None]


def interaction_effects(rows: list[Row], ablation: AblationConfig, metric: str = "test_accuracy", shared_samples: bool | Folds = False, span: float = 1.0) -> list[Effect]:
    """Two-factor interactions of full and fractional designs (two-valued factors): how much the
    second factor's effect changes when the first is switched, averaged over the others. In a
    fraction, each is read together with its aliases, which the name lists."""
    if ablation.design not in ("full", "fractional"):
        return []
    factors = [(key, f) for key, f in ablation.factors.items() if len(f.values) == 2]
    effects = []
    for (i, (a, fa)), (j, (b, fb)) in itertools.combinations(enumerate(factors), 2):

        def cell(va: Any, vb: Any) -> list[Row]:
            return [r for r in rows if r["settings"][a] == va and r["settings"][b] == vb]

        low_a, high_a, low_b, high_b = fa.values[0], fa.values[1], fb.values[0], fb.values[1]
        arms = [(1, cell(high_a, high_b)), (-1, cell(high_a, low_b)), (-1, cell(low_a, high_b)), (1, cell(low_a, low_b))]
        both, first, second, neither = (_per_seed(arm, metric) for _, arm in arms)
        seeds = sorted(set(both) & set(first) & set(second) & set(neither))
        contrast = {s: _signed_sum((1, both[s]), (-1, first[s]), (-1, second[s]), (1, neither[s])) for s in seeds}
        name = f"the interaction of {a} and {b}"
        if ablation.design == "fractional":
            keys = [key for key, _ in factors]
            aliases = [f"{keys[x]} x {keys[y]}" for x, y in two_factor_aliases(len(keys), (i, j))]
            if aliases:
                name += f" (aliased with {', '.join(aliases)})"
        zero = {s: np.zeros_like(contrast[s]) for s in seeds}
        effect = paired_effect(name, "interaction", contrast, zero, shared_samples, bounds=(-2 * span, 2 * span))
        effects.append(_identified(effect, _contrast(*arms)))
    return [effect for effect in effects if effect is not None]


def variant_effect(rows: list[Row], treated: str, reference: str, metric: str = "test_accuracy", shared_samples: bool | Folds = False, span: float = 1.0) -> Effect | None:
    """One variant against another, paired by seed (and test sample): the verdict's net gain."""
    mine, theirs = [r for r in rows if r["variant"] == treated], [r for r in rows if r["variant"] == reference]
    effect = paired_effect(f"switching from {reference} to {treated}", "verdict", _per_seed(mine, metric), _per_seed(theirs, metric), shared_samples, (-span, span))
    return _identified(effect, _contrast((1, mine), (-1, theirs)))


def _same_test(effect: Effect) -> str:
    """What tells one test from another: the contrast it computes (an effect made without one is
    a test of its own)."""
    return effect.test_id or f"unidentified-{id(effect)}"


def adjust_together(*families: list[Effect], looks: Looks | None = None) -> list[list[Effect]]:
    """Holm-adjust every test of the report as one family (factor effects, side effects, their
    interaction and the verdict's net gain alike), so no p-value is read without the others it
    was tested beside. A test that appears twice (the net gain of the 'both sides' variant is the
    both-sides effect; a two-factor design's data-by-model interaction is its factor
    interaction) counts once. Each effect is then decided by its Holm p-value (`Effect.adjusted`).
    With `looks` (seeds until decided) the p-values Holm adjusts are the repeated ones."""
    if looks is not None:
        families = tuple([effect.sequential(looks) for effect in family] for family in families)
    everything = [effect for family in families for effect in family]
    distinct = {_same_test(effect): effect.p_value for effect in reversed(everything)}
    keys = list(distinct)
    p_holm = dict(zip(keys, holm([distinct[key] for key in keys])))
    tests = sum(not math.isnan(p) for p in distinct.values())
    return [[effect.adjusted(p_holm[_same_test(effect)], max(1, tests)) for effect in family] for family in families]


def side_effects(rows: list[Row], ablation: AblationConfig, metric: str = "test_accuracy", shared_samples: bool | Folds = False, span: float = 1.0) -> list[Effect]:
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

    def corner(*changed: str) -> list[Row]:
        return _cells(rows, {key: (f.values[-1] if f.side in changed else f.values[0]) for key, f in factors.items()})

    cells = {"baseline": corner(), "data": corner("data"), "model": corner("model"), "both": corner("data", "model")}
    baseline, data, model, both = (_per_seed(cells[name], metric) for name in ("baseline", "data", "model", "both"))
    seeds = sorted(set(baseline) & set(data) & set(model) & set(both))
    if not seeds:
        return []
    interaction = {s: _signed_sum((1, both[s]), (-1, data[s]), (-1, model[s]), (1, baseline[s])) for s in seeds}
    zero = {s: np.zeros_like(interaction[s]) for s in seeds}
    reference = (-1, cells["baseline"])
    effects = [
        _identified(paired_effect("the data-side changes", "data", data, baseline, shared_samples, (-span, span)), _contrast((1, cells["data"]), reference)),
        _identified(paired_effect("the model-side changes", "model", model, baseline, shared_samples, (-span, span)), _contrast((1, cells["model"]), reference)),
        _identified(paired_effect("both sides together", "both", both, baseline, shared_samples, (-span, span)), _contrast((1, cells["both"]), reference)),
        _identified(
            paired_effect("the data-by-model interaction", "interaction", interaction, zero, shared_samples, bounds=(-2 * span, 2 * span)),
            _contrast((1, cells["both"]), (-1, cells["data"]), (-1, cells["model"]), (1, cells["baseline"])),
        ),
    ]
    if ablation.design == "one_at_a_time":
        effects += [_within_side(rows, ablation, side, cells[side], cells["baseline"], metric, shared_samples, span) for side in ("data", "model")]
    return [effect for effect in effects if effect is not None]


def _within_side(
    rows: list[Row], ablation: AblationConfig, side: str, corner_rows: list[Row], baseline_rows: list[Row],
    metric: str, shared_samples: bool | Folds, span: float = 1.0,
) -> Effect | None:
    """How far a side's changes made together differ from the sum of each made alone: the
    interaction within the side that one-at-a-time effects cannot show (None with one factor)."""
    keys = [key for key, factor in ablation.factors.items() if factor.side == side]
    if len(keys) < 2:
        return None
    start = {key: factor.values[0] for key, factor in ablation.factors.items()}
    singles = [_cells(rows, {**start, key: ablation.factors[key].values[-1]}) for key in keys]
    corner, baseline = _per_seed(corner_rows, metric), _per_seed(baseline_rows, metric)
    alone = [_per_seed(single, metric) for single in singles]
    seeds = sorted(set(corner) & set(baseline).intersection(*alone))
    if not seeds:
        return None
    gap = {s: _signed_sum((1, corner[s]), (len(alone) - 1, baseline[s]), *[(-1, single[s]) for single in alone]) for s in seeds}
    zero = {s: np.zeros_like(gap[s]) for s in seeds}
    bound = (len(keys) + 1) * span
    effect = paired_effect(f"the interaction within the {side} side", "interaction", gap, zero, shared_samples, bounds=(-bound, bound))
    return _identified(effect, _contrast((1, corner_rows), (len(alone) - 1, baseline_rows), *[(-1, single) for single in singles]))
