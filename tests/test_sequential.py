"""Seeds until decided: the repeated p-values and intervals keep their promise over every planned
look, and the ablation adds seeds look by look until its effects are decided or narrow enough."""

import json
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

import pipeline
from pipeline.ablation.design import AblationConfig
from pipeline.ablation.effects import adjust_together
from pipeline.ablation.sequential import Boundary, Looks, _sorted_maxima
from pipeline.ablation.stats import DIFFERENCE_RANGE, Summary, paired_effect
from pipeline.config import ConfigError

SEEDS_ONLY = Summary(3, 0.0, 0.0, 0.0, 0.0, seed_var=1.0)  # se falls as 1/sqrt(seeds): looks equally spaced in information


@pytest.mark.parametrize(("looks", "constant"), [(1, 1.960), (2, 2.178), (3, 2.289), (4, 2.361), (5, 2.413)])
def test_equally_spaced_looks_reproduce_pococks_constants(looks, constant):
    """Jennison and Turnbull (2000), table 2.1: Pocock's C_P(K) for a two-sided 5% test."""
    boundary = Looks(tuple(range(1, looks + 1)), 1, "pocock").boundary(SEEDS_ONLY)
    assert boundary.critical(0.05) == pytest.approx(constant, abs=0.01)
    assert boundary.overall(boundary.critical(0.05)) == pytest.approx(0.05)


@pytest.mark.parametrize(("looks", "constant"), [(2, 1.977), (3, 2.004), (4, 2.024), (5, 2.040)])
def test_obrien_flemings_boundary_falls_with_the_standard_error_to_its_constant(looks, constant):
    """Jennison and Turnbull (2000), table 2.3: C_B(K); the boundary at look k is C_B sqrt(K / k)."""
    for k in range(1, looks + 1):
        boundary = Looks(tuple(range(1, looks + 1)), k, "obrien_fleming").boundary(SEEDS_ONLY)
        assert boundary.critical(0.05) == pytest.approx(constant * math.sqrt(looks / k), abs=0.01 * math.sqrt(looks / k))


def test_looks_that_barely_differ_cost_nothing_and_independent_ones_cost_bonferroni():
    shared = Summary(3, 0.0, 0.0, 0.0, 0.0, seed_var=1e-6, sample_var=1.0, samples=1)  # the test samples' noise dominates
    assert Looks((3, 6, 9), 1, "pocock").boundary(shared).critical(0.05) == pytest.approx(1.96, abs=0.01)
    assert Looks((3, 6, 9), 1, "obrien_fleming").boundary(shared).critical(0.05) == pytest.approx(1.96, abs=0.01)
    independent = Boundary(_sorted_maxima((0.0,), (1.0, 1.0)), 2)  # two independent looks: 1 - (1 - p)^2 = 0.05
    assert independent.critical(0.05) == pytest.approx(scipy_stats.norm.isf((1 - math.sqrt(0.95)) / 2), abs=0.01)


@pytest.mark.parametrize("shape", ["pocock", "obrien_fleming"])
@pytest.mark.parametrize("level", [0.3, 0.05, 0.01, 1e-3, 1e-6, 1e-12])
def test_overall_and_nominal_levels_are_inverses_even_beyond_the_simulated_tail(level, shape):
    looks = Looks((3, 6, 9, 12), 2, shape)
    nominal = looks.nominal(level, SEEDS_ONLY)
    assert nominal < level
    assert looks.overall_p(nominal, SEEDS_ONLY) == pytest.approx(level, rel=1e-6)
    if shape == "pocock":  # one boundary for every look: between one look and Bonferroni over four
        assert level <= looks.overall_p(level, SEEDS_ONLY) <= 4 * level


@pytest.mark.parametrize("counts", [(3, 1000), (3, 30, 300), (3, 6, 9, 12)])
@pytest.mark.parametrize("shape", ["pocock", "obrien_fleming"])
def test_repeated_p_values_rise_with_the_nominal_ones_and_invert_exactly_at_every_look(counts, shape):
    """Monotone and exact both ways, where the simulation's tail meets the one-look tail too (a
    noisy tail once made a larger z's p-value larger, and a decision disagree with its interval)."""
    nominal = np.logspace(-14, 0, 300)[:-1]
    for taken in range(1, len(counts) + 1):
        looks = Looks(counts, taken, shape)
        overall = np.array([looks.overall_p(p, SEEDS_ONLY) for p in nominal])
        assert np.all(np.diff(overall) > 0) and np.all(overall >= nominal * (1 - 1e-12))  # never below one look read alone
        inside = overall < 1
        assert [looks.nominal(level, SEEDS_ONLY) for level in overall[inside]] == pytest.approx(nominal[inside], rel=1e-9)


def test_repeated_intervals_are_wider_and_still_agree_with_the_decision():
    rng = np.random.default_rng(0)
    effects = [
        paired_effect(f"e{i}", "model", {s: rng.normal(shift, 0.01, 1) for s in range(6)}, {s: np.zeros(1) for s in range(6)})
        for i, shift in enumerate([0.0, 0.006, 0.008, 0.01, 0.012, 0.014, 0.02, 0.03])
    ]
    (alone,) = adjust_together(effects)
    (repeated,) = adjust_together(effects, looks=Looks((3, 6, 9), 2))
    for once, looked in zip(alone, repeated):
        assert looked.nominal_p == once.p_value and looked.p_value > once.p_value
        assert looked.summary.low < once.summary.low and looked.summary.high > once.summary.high
        assert looked.decided == (looked.p_holm < 0.05) == (looked.adjusted_low > 0 or looked.adjusted_high < 0)
    assert sum(e.decided for e in repeated) < sum(e.decided for e in alone)  # some decisions needed the looks' price


def false_decisions(boundary: str | None, simulations: int = 300) -> float:
    """A null effect read at 3, 5, ... 13 seeds, stopping as soon as it is decided."""
    rng = np.random.default_rng(1)
    counts = (3, 5, 7, 9, 11, 13)
    false = 0
    for _ in range(simulations):
        treated = {s: rng.normal(0, 1, 1) for s in range(counts[-1])}
        reference = {s: rng.normal(0, 1, 1) for s in range(counts[-1])}
        for taken, count in enumerate(counts, 1):
            first = [{s: arm[s] for s in range(count)} for arm in (treated, reference)]
            effect = paired_effect("null", "model", *first, shared_samples=False, bounds=(-math.inf, math.inf))
            [[effect]] = adjust_together([effect], looks=Looks(counts, taken, boundary) if boundary else None)
            if effect.decided:
                false += 1
                break
    return false / simulations


def test_stopping_when_decided_keeps_the_false_positive_rate_only_with_repeated_p_values():
    """Six looks read alone decide a null effect about 17% of the time; the repeated p-values keep it
    at 5% (300 simulations: a standard error of 1.3 points; 5.3% over 3000 with either boundary)."""
    assert false_decisions(None) > 0.08
    assert false_decisions("pocock") <= 0.075 and false_decisions("obrien_fleming") <= 0.075  # 5% plus two standard errors


def test_until_decided_looks_are_planned_and_seeds_are_the_next_unused():
    design = AblationConfig(design="list", seeds=[0, 5, 2], variants={"a": {}}, until_decided={"max_seeds": 10})
    assert design.looks() == (3, 6, 9, 10) and design.all_seeds() == [0, 5, 2, 1, 3, 4, 6, 7, 8, 9]
    stepped = AblationConfig(design="list", seeds=[0, 1, 2], variants={"a": {}}, until_decided={"max_seeds": 8, "step": 2})
    assert stepped.looks() == (3, 5, 7, 8)
    assert AblationConfig(design="list", seeds=[0], variants={"a": {}}).looks() == (1,)
    with pytest.raises(ValueError, match="max_seeds=3 leaves no seed to add to the 3"):
        AblationConfig(design="list", seeds=[0, 1, 2], variants={"a": {}}, until_decided={"max_seeds": 3})
    with pytest.raises(ValueError, match="at least 3 seeds listed for its first look"):
        AblationConfig(design="list", seeds=[0, 1], variants={"a": {}}, until_decided={"max_seeds": 6})
    # Under k-fold each seed gives its folds' estimates: two seeds of five folds are ten.
    AblationConfig(design="list", seeds=[0, 1], variants={"a": {}}, vary=["train", "split"], resampling={"kind": "kfold"}, until_decided={"max_seeds": 6})
    with pytest.raises(ValueError, match="plans 48 looks, at most 20: raise until_decided.step"):
        AblationConfig(design="list", seeds=[0, 1, 2], variants={"a": {}}, until_decided={"max_seeds": 50, "step": 1})


WINE = {
    "data": {"source": "sklearn:wine"}, "augment": {"mode": "none"}, "model": {"hidden": [8]}, "train": {"epochs": 2, "device": "cpu"},
}


@pytest.mark.parametrize(("resolution", "looks", "reason"), [
    (200.0, 1, "every effect was decided or narrower than 200"),
    (0.01, 2, "max_seeds (4) reached with 1 of 1 effects open"),
])
def test_an_ablation_adds_seeds_until_decided_or_out_of_seeds(tmp_path, resolution, looks, reason):
    section = {"design": "list", "seeds": [0, 1, 2], "variants": {"base": {}, "dropout": {"model.dropout": 0.5}},
               "until_decided": {"max_seeds": 4, "resolution": resolution}}
    ablation = pipeline.ablate({**WINE, "ablation": section}, out=tmp_path / "out", cache_dir=tmp_path / "cache", progress=False)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    seeds = [3, 4][looks - 1]
    assert summary["sequential"] == {
        "planned": [3, 4], "taken": looks, "seeds": seeds, "boundary": "obrien_fleming", "stopped": reason,
        "until_decided": {"max_seeds": 4, "resolution": resolution, "step": None, "boundary": "obrien_fleming"},
    }
    assert summary["ablation"]["until_decided"] is None  # a fixed design of the seeds trained: the looks are under `sequential`
    assert sorted((run["variant"], run["seed"]) for run in summary["runs"]) == sorted((v, s) for v in ("base", "dropout") for s in range(seeds))
    assert summary["ablation"]["seeds"] == list(range(seeds))
    [effect] = summary["effects"] or [summary["verdict"]["gain"]]
    assert effect["looks"] == {"counts": [3, 4], "taken": looks, "shape": "obrien_fleming"} and effect["p_value"] >= effect["nominal_p"]
    assert f"stopped at {seeds} seeds: {reason}" in (tmp_path / "out" / "report.md").read_text()
    assert len(ablation.runs) == 2 * seeds


def test_until_decided_is_refused_before_training_when_it_has_no_seed_to_add(tmp_path):
    section = {"design": "list", "seeds": [0, 1, 2], "variants": {"base": {}, "dropout": {"model.dropout": 0.5}}, "until_decided": {"max_seeds": 3}}
    with pytest.raises(ConfigError, match="max_seeds=3 leaves no seed to add"):
        pipeline.ablate({**WINE, "ablation": section}, out=tmp_path / "out", cache_dir=tmp_path / "cache", progress=False)
    assert not (tmp_path / "cache").exists()


def test_the_plan_says_how_far_the_looks_may_go():
    from pipeline.ablation.planning import DesignPlan
    from pipeline.cli import format_plan

    plan = DesignPlan(4, 3, 12, 0, [12], 20, 0.05, 60.0, 6, 36, True, "a guess", 0.1, None, None, looks=(3, 6, 9))
    printed = format_plan(plan)
    assert "looks       at 3, 6, 9 seeds until every effect is decided: the trainings and time above are the first look's" in printed
    assert printed.endswith("at most 36 trainings, about 180 s")
