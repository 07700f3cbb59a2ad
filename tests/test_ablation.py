"""Ablation designs, effect arithmetic on records with known answers, and a tiny ablation end to end."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats

from pipeline.ablation.design import AblationConfig, expand
from pipeline.ablation.effects import adjust_together, factor_effects, interaction_effects, side_effects
from pipeline.ablation.analysis import best_by_validation, collapsed_seeds, variant_diagnosis
from pipeline.ablation.scores import METRICS
from pipeline.ablation.stats import ACCURACY_RANGE, holm, json_safe, paired_p_value, summarize
from trainers.diagnosis import diagnose

ROOT = Path(__file__).resolve().parents[1]

TWO_BY_TWO = {
    "seeds": [0, 1, 2],
    "factors": {
        "scale.method": {"side": "data", "values": ["none", "standard"]},
        "model.batch_norm": {"side": "model", "values": [False, True]},
    },
}


def test_full_design_crosses_every_factor():
    variants = expand(AblationConfig(design="full", **TWO_BY_TWO))
    assert [v.name for v in variants] == [
        "baseline",
        "model.batch_norm=true",
        "scale.method=standard",
        "scale.method=standard, model.batch_norm=true",
    ]
    assert variants[1].overrides() == ["scale.method=none", "model.batch_norm=true"]


def test_one_at_a_time_adds_the_side_corners():
    factors = {
        "augment.mode": {"side": "data", "values": ["none", "offline"]},
        "scale.method": {"side": "data", "values": ["none", "standard"]},
        "model.dropout": {"side": "model", "values": [0.0, 0.3]},
    }
    names = [v.name for v in expand(AblationConfig(design="one_at_a_time", factors=factors))]
    assert names == [
        "baseline",
        "augment.mode=offline",
        "scale.method=standard",
        "model.dropout=0.3",
        "augment.mode=offline, scale.method=standard",
        "augment.mode=offline, scale.method=standard, model.dropout=0.3",
        # Each change removed from the all-on configuration (without dropout: the data corner, above).
        "scale.method=standard, model.dropout=0.3",
        "augment.mode=offline, model.dropout=0.3",
    ]


@pytest.mark.parametrize("count", [4, 5, 6, 7, 8])
def test_a_fractional_design_is_a_balanced_fraction_holding_the_baseline(count):
    keys = ["augment.mode", "scale.method", "model.batch_norm", "model.dropout", "early_stop.enabled", "schedule.type", "optim.name", "train.label_smoothing"]
    values = [["none", "offline"], ["none", "standard"], [False, True], [0.0, 0.3], [False, True], ["none", "cosine"], ["sgd", "adam"], [0.0, 0.1]]
    factors = {key: {"side": "data" if key.split(".")[0] in ("augment", "scale") else "model", "values": v} for key, v in zip(keys[:count], values)}
    variants = expand(AblationConfig(design="fractional", factors=factors))
    assert len(variants) == (8 if count == 4 else 16) and variants[0].name == "baseline"
    signs = np.array([[1 if v.settings[key] == factors[key]["values"][1] else -1 for key in factors] for v in variants])
    assert (signs.sum(axis=0) == 0).all()  # every value of every factor in half the runs
    assert (signs.T @ signs == len(variants) * np.eye(count)).all()  # main effects orthogonal
    # Resolution IV or better: no main effect aliased with a two-factor interaction.
    products = [signs[:, i] * signs[:, j] for i in range(count) for j in range(i + 1, count)]
    assert all(abs(signs[:, k] @ product) == 0 for k in range(count) for product in products)


def test_fractional_needs_two_values_and_four_to_eight_factors():
    three = {f"model.{key}": {"side": "model", "values": [0, 1]} for key in ("dropout", "dropout_input", "batch_norm")}
    with pytest.raises(ValueError, match="4 to 8 factors"):
        AblationConfig(design="fractional", factors=three)
    four = {**three, "optim.lr": {"side": "model", "values": [0.1, 0.2, 0.3]}}
    with pytest.raises(ValueError, match="exactly two values"):
        AblationConfig(design="fractional", factors=four)


@pytest.mark.parametrize(
    "spec, pattern",
    [
        ({"design": "list"}, "needs 'variants'"),
        ({"design": "full"}, "needs 'factors'"),
        ({"factors": {"model.dropout": {"side": "model", "values": [0.1]}}}, "at least 2"),
        ({"factors": {"model.dropout": {"side": "both", "values": [0.1, 0.2]}}}, "'data' or 'model'"),
    ],
)
def test_bad_ablation_specs(spec, pattern):
    with pytest.raises(ValueError, match=pattern):
        AblationConfig(**spec)


def rows_for(accuracy):
    """Records of a 2x2 full design where `accuracy(data_on, model_on, seed)` is known."""
    rows = []
    for data_on in (False, True):
        for model_on in (False, True):
            for seed in (0, 1, 2):
                settings = {"scale.method": "standard" if data_on else "none", "model.batch_norm": model_on}
                rows.append({"variant": str(settings), "settings": settings, "seed": seed, "test_accuracy": accuracy(data_on, model_on, seed)})
    return rows


def test_effects_on_records_with_known_answers():
    # data +0.02, model +0.05, interaction +0.01, and seed noise that pairing removes exactly.
    noise = {0: 0.0, 1: 0.01, 2: -0.01}
    rows = rows_for(lambda d, m, s: 0.8 + 0.02 * d + 0.05 * m + 0.01 * (d and m) + noise[s])
    ablation = AblationConfig(design="full", **TWO_BY_TWO)
    sides = {e.name: e for e in side_effects(rows, ablation)}
    assert sides["the data-side changes"].summary.mean == pytest.approx(0.02)
    assert sides["the model-side changes"].summary.mean == pytest.approx(0.05)
    assert sides["both sides together"].summary.mean == pytest.approx(0.08)
    assert sides["the data-by-model interaction"].summary.mean == pytest.approx(0.01)
    assert sides["the data-side changes"].summary.std == pytest.approx(0.0, abs=1e-12)
    main = {e.name: e for e in factor_effects(rows, ablation)}
    # Main effects average over the other factor: data 0.02 + 0.01/2, model 0.05 + 0.01/2.
    assert main['setting scale.method from "none" to "standard" (averaged over the other factors)'].summary.mean == pytest.approx(0.025)
    batch_norm = main["setting model.batch_norm from false to true (averaged over the other factors)"]
    assert batch_norm.summary.mean == pytest.approx(0.055)
    # Every seed moved by exactly 5.5 points: no t-interval exists, and with three seeds the exact
    # sign-flip test cannot reject any value (p = 2/8), so the interval is the whole range and six
    # seeds would decide it.
    assert batch_norm.sentence() == (
        "setting model.batch_norm from false to true (averaged over the other factors) moved test accuracy by +5.5 points "
        "[-100.0, 100.0]: indistinguishable from noise; about 6 seeds would decide an effect of this size"
    )
    (interaction,) = interaction_effects(rows, ablation)
    assert interaction.name == "the interaction of scale.method and model.batch_norm"
    assert interaction.summary.mean == pytest.approx(0.01)


def one_at_a_time_rows(accuracy):
    """Records of every one-at-a-time variant of three factors (two data, one model), scored by `accuracy(settings)`."""
    factors = {
        "augment.mode": {"side": "data", "values": ["none", "offline"]},
        "scale.method": {"side": "data", "values": ["none", "standard"]},
        "model.dropout": {"side": "model", "values": [0.0, 0.3]},
    }
    ablation = AblationConfig(design="one_at_a_time", seeds=[0, 1, 2], factors=factors)
    noise = {0: 0.0, 1: 0.01, 2: -0.01}
    rows = [
        {"variant": v.name, "settings": v.settings, "seed": seed, "test_accuracy": accuracy(v.settings) + noise[seed]}
        for v in expand(ablation)
        for seed in ablation.seeds
    ]
    return rows, ablation


def test_one_at_a_time_effects_in_both_directions_and_within_a_side():
    # Augmentation +0.7 and scaling -0.9 alone, but +1.1 more when both are on (the digits case).
    def accuracy(settings):
        augment, scale = settings["augment.mode"] == "offline", settings["scale.method"] == "standard"
        return 0.9 + 0.007 * augment - 0.009 * scale + 0.011 * (augment and scale) + 0.004 * (settings["model.dropout"] > 0)

    rows, ablation = one_at_a_time_rows(accuracy)
    effects = {e.name: e.summary.mean for e in factor_effects(rows, ablation)}
    assert effects['setting scale.method from "none" to "standard" (all else at baseline)'] == pytest.approx(-0.009)
    assert effects['setting scale.method from "none" to "standard" (all else changed)'] == pytest.approx(0.002)
    assert effects["setting model.dropout from 0.0 to 0.3 (all else changed)"] == pytest.approx(0.004)
    sides = {e.name: e.summary.mean for e in side_effects(rows, ablation)}
    assert sides["the interaction within the data side"] == pytest.approx(0.011)
    assert "the interaction within the model side" not in sides  # one model factor: nothing to interact


def test_interval_and_p_value_match_scipy():
    values = [0.012, 0.018, 0.009, 0.021]
    summary = summarize(values)
    low, high = scipy_stats.t.interval(0.95, 3, loc=np.mean(values), scale=scipy_stats.sem(values))
    assert (summary.low, summary.high) == pytest.approx((low, high))
    assert summary.std == pytest.approx(np.std(values, ddof=1))
    assert math.isnan(summarize([0.5]).low)


def test_paired_effect_p_value_is_a_paired_t_test():
    treated = {0: 0.91, 1: 0.93, 2: 0.90, 3: 0.95}
    reference = {0: 0.90, 1: 0.90, 2: 0.89, 3: 0.91}
    rows = [{"variant": "a", "settings": {"model.dropout": 0.3}, "seed": s, "test_accuracy": v} for s, v in treated.items()]
    rows += [{"variant": "b", "settings": {"model.dropout": 0.0}, "seed": s, "test_accuracy": v} for s, v in reference.items()]
    ablation = AblationConfig(design="one_at_a_time", seeds=[0, 1, 2, 3], factors={"model.dropout": {"side": "model", "values": [0.0, 0.3]}})
    (effect,) = factor_effects(rows, ablation)
    expected = scipy_stats.ttest_rel(list(treated.values()), list(reference.values())).pvalue
    assert effect.p_value == pytest.approx(expected)


def test_intervals_stay_inside_the_range_of_the_metric():
    near_the_top = [1.0, 1.0, 0.98]
    unbounded = summarize(near_the_top)
    assert unbounded.high > 1.0  # the t-interval alone leaves the range
    bounded = summarize(near_the_top, ACCURACY_RANGE)
    assert bounded.high == 1.0 and bounded.low == pytest.approx(unbounded.low)
    # Differences of accuracies stay in [-1, 1] by default.
    rows = [{"variant": "a", "settings": {"model.dropout": 0.0}, "seed": s, "test_accuracy": v} for s, v in enumerate([0.0, 0.0, 0.4])]
    rows += [{"variant": "b", "settings": {"model.dropout": 0.3}, "seed": s, "test_accuracy": v} for s, v in enumerate([1.0, 1.0, 0.5])]
    ablation = AblationConfig(design="one_at_a_time", seeds=[0, 1, 2], factors={"model.dropout": {"side": "model", "values": [0.0, 0.3]}})
    (effect,) = factor_effects(rows, ablation)
    assert effect.summary.high == 1.0 and effect.summary.mean == pytest.approx(0.7)


@pytest.mark.parametrize(("differences", "expected"), [([0.01] * 3, 0.25), ([-0.02] * 5, 2 / 32), ([0.0] * 3, 1.0)])
def test_equal_differences_never_give_p_zero(differences, expected):
    # The t statistic is undefined; the exact sign-flip test gives 2 / 2^n (n equal non-zero differences).
    assert paired_p_value(np.array(differences)) == pytest.approx(expected)


def test_every_effect_of_the_report_is_adjusted_as_one_family():
    noise = {0: 0.0, 1: 0.01, 2: -0.01}
    rows = rows_for(lambda d, m, s: 0.8 + 0.02 * d + 0.05 * m + 0.01 * (d and m) + noise[s])
    ablation = AblationConfig(design="full", **TWO_BY_TWO)
    factors, sides = factor_effects(rows, ablation), side_effects(rows, ablation)
    adjusted_factors, adjusted_sides = adjust_together(factors, sides)
    everything = factors + sides
    expected = holm([e.p_value for e in everything])
    assert [e.p_holm for e in adjusted_factors + adjusted_sides] == pytest.approx(expected, nan_ok=True)
    assert len(everything) == 6 and not any(math.isnan(e.p_holm) for e in adjusted_sides)


def test_the_best_variant_is_chosen_on_validation_not_test_in_the_ablations_metric():
    scores = {"a": {"validation": {"mean": 0.95}, "test": {"mean": 0.99}}, "b": {"validation": {"mean": 0.97}, "test": {"mean": 0.96}}}
    assert best_by_validation(scores, METRICS["accuracy"]) == "b"
    assert best_by_validation(scores, METRICS["log_loss"]) == "a"  # a loss: lower is better


def test_summaries_are_valid_json():
    summary = {"mean": 0.5, "low": math.nan, "values": [1.0, math.inf, {"p": math.nan}], "name": "x"}
    text = json.dumps(json_safe(summary), allow_nan=False)
    assert json.loads(text) == {"mean": 0.5, "low": None, "values": [1.0, None, {"p": None}], "name": "x"}


def test_holm_adjustment():
    assert holm([0.01, 0.04, 0.03, math.nan]) == pytest.approx([0.03, 0.06, 0.06, math.nan], nan_ok=True)


def history(train, val, val_loss):
    return [
        {"epoch": i + 1, "train_accuracy": t, "val_accuracy": v, "val_loss": l, "train_loss": 0.0, "lr": 0.1}
        for i, (t, v, l) in enumerate(zip(train, val, val_loss))
    ]


@pytest.mark.parametrize(
    "curves, verdict, turn",
    [
        (history([0.9, 0.99, 1.0], [0.88, 0.9, 0.9], [0.5, 0.4, 0.45]), "overfitting", 2),
        (history([0.5, 0.6, 0.65], [0.5, 0.6, 0.64], [1.5, 1.2, 1.1]), "underfitting", None),
        (history([0.9, 0.97, 0.98], [0.9, 0.96, 0.97], [0.4, 0.2, 0.15]), "good fit", None),
    ],
)
def test_diagnosis(curves, verdict, turn):
    result = diagnose(curves)
    assert (result.verdict, result.val_loss_turned_up_at) == (verdict, turn)


@pytest.mark.parametrize(("val_samples", "verdict"), [(100, "good fit"), (10_000, "overfitting")])
def test_a_gap_counts_only_beyond_the_validation_sets_noise(val_samples, verdict):
    # 3.5 points: inside two binomial standard errors of 96.5% on 100 samples (3.7), far outside on 10,000.
    curves = history([0.99, 1.0], [0.96, 0.965], [0.2, 0.15])
    assert diagnose(curves, val_samples=val_samples).verdict == verdict


@pytest.mark.parametrize(("standard_error", "turn"), [(0.01, None), (0.001, 2)])
def test_a_val_loss_rise_counts_only_beyond_its_standard_error(standard_error, turn):
    curves = history([0.9, 0.95, 0.96], [0.9, 0.95, 0.95], [0.05, 0.03, 0.04])  # up by a third, 0.01 in all
    for row in curves:
        row["val_loss_se"] = standard_error
    assert diagnose(curves).val_loss_turned_up_at == turn


def test_the_verdict_reads_the_kept_epoch_and_eval_mode_train_accuracy():
    # The last epoch looks overfit (running train accuracy 1.0 against 0.9), the kept epoch 2 does not.
    curves = history([0.9, 0.95, 1.0], [0.9, 0.95, 0.9], [0.3, 0.2, 0.2])
    assert diagnose(curves).verdict == "overfitting"
    kept = diagnose(curves, kept_epoch=2, train_accuracy=0.955)
    assert (kept.verdict, kept.val_accuracy, kept.train_accuracy) == ("good fit", 0.95, 0.955)


def test_advice_never_recommends_what_the_run_already_uses():
    curves = history([0.9, 0.99, 1.0], [0.88, 0.9, 0.9], [0.5, 0.4, 0.45])
    some = diagnose(curves, uses=["dropout", "early stopping"]).advice
    assert "Regularize: batch normalization, augmentation." in some and "dropout," not in some
    every = diagnose(curves, uses=["dropout", "batch normalization", "augmentation", "early stopping"]).advice
    assert "already uses dropout, batch normalization, augmentation and early stopping: regularize more strongly" in every


def test_seeds_that_collapse_make_a_variant_unstable():
    def record(seed, val_accuracy):
        return {
            "metrics": {"val_accuracy": val_accuracy},
            "config": {"train": {"seed": seed}},
            "data": {"class_counts": {"val": [27] * 10}},
            "diagnosis": {"verdict": "overfitting"},
        }

    steady = [record(seed, value) for seed, value in enumerate([0.98, 0.97, 0.985, 0.975, 0.98])]
    assert variant_diagnosis(steady) == "overfitting"
    shaky = steady[:3] + [record(3, 0.61), record(4, 0.70)]
    assert collapsed_seeds(shaky) == [3, 4]
    assert variant_diagnosis(shaky) == "unstable: seeds 3, 4 collapsed"


def test_learning_curves_overlay_each_factors_variants_over_every_seed():
    from pipeline.ablation.report import _curve_groups

    summary = {
        "ablation": {"design": "one_at_a_time", "factors": {"model.dropout": {}, "schedule.type": {}}},
        "variants": [
            {"name": "baseline", "changed": []},
            {"name": "model.dropout=0.3", "changed": ["model.dropout"]},
            {"name": "schedule.type=cosine", "changed": ["schedule.type"]},
            {"name": "model.dropout=0.3, schedule.type=cosine", "changed": ["model.dropout", "schedule.type"]},
        ],
    }
    runs = [{"variant": v["name"], "seed": seed, "history": [{"seed": seed}]} for v in summary["variants"] for seed in (0, 1)]
    groups = _curve_groups(summary, runs)
    assert list(groups) == ["model.dropout", "schedule.type"]
    assert list(groups["schedule.type"]) == ["baseline", "schedule.type=cosine"]
    assert groups["schedule.type"]["baseline"] == [[{"seed": 0}], [{"seed": 1}]]


@pytest.mark.slow
def test_tiny_ablation_end_to_end(tmp_path):
    (tmp_path / "tiny.yaml").write_text(
        "train: {epochs: 3}\nmodel: {channels: [8], hidden: [16]}\n"
        "ablation:\n  design: full\n  seeds: [0, 1]\n  factors:\n"
        "    data.train_fraction: {side: data, values: [0.5, 1.0]}\n"
        "    model.batch_norm: {side: model, values: [false, true]}\n"
    )
    command = [sys.executable, "-m", "pipeline", "ablate", "--config", "tiny.yaml", "--out", "out", "--cache-dir", "c"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text(), parse_constant=lambda name: pytest.fail(f"summary.json holds {name}"))
    best = max(summary["variants"], key=lambda v: v["val_accuracy"]["mean"])
    assert summary["verdict"]["best_variant"] == summary["best_variant"] == best["name"]
    # 2 main effects, 1 two-factor interaction, 4 side effects and the verdict's net gain: 6 distinct
    # tests, for in a 2x2 design the data-by-model interaction is the factor interaction, and
    # every variant but the baseline is a corner whose net gain is one of the side effects.
    assert summary["multiple_testing"] == "Holm over all 6 distinct tests of this report"
    assert {effect["tests"] for effect in summary["effects"] + summary["side_effects"] + summary["interactions"]} == {6}
    # Two data preparations (two training fractions) are built once each and shared by both models.
    assert summary["stages"]["collect"] == {"built": 2, "hit": 6}
    assert summary["stages"]["scale"] == {"built": 2, "hit": 6}
    assert summary["stages"]["train"] == {"built": 8, "hit": 0}
    report = (out / "report.md").read_text()
    assert report.startswith(f"# Ablation report\n\n## Verdict\n\n**Best configuration** (highest mean validation accuracy): {best['name']}")
    assert "the test samples (every seed scores the same ones: crossed with the seeds)" in report
    assert "fixed for every seed, so not covered: the data split and the augmentation draws" in report
    for variant in summary["variants"]:
        assert f"| {variant['name']} | {variant['test_accuracy']['mean'] * 100:.2f} |" in report
    for effect in summary["effects"] + summary["side_effects"] + summary["interactions"]:
        assert effect["sentence"][1:] in report
    assert "What more data buys" in report
    for name in ("learning_curves", "effects", "stage_times", "more_data", "flipped"):
        png = (out / "plots" / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 5000
    assert (out / "report.html").read_text().count("data:image/png;base64,") == 5  # flipped.png too
    assert 'header.addEventListener("click"' in (out / "report.html").read_text()  # sortable tables
    assert "## Which classes each change moved" in report and "| variant | 0 | 1 | 2 |" in report
    assert "## Test samples each change fixed and broke" in report
    assert set(summary["flips"]) == {v["name"] for v in summary["variants"][1:]}
    assert "The baseline: data.train_fraction=0.5, model.batch_norm=false." in report
    assert len((out / "runs.csv").read_text().splitlines()) == 9

    again = subprocess.run([*command, "--json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    repeated = json.loads((out / "summary.json").read_text())
    assert repeated["stages"]["train"] == {"built": 0, "hit": 8}
    # The scikit-learn baselines fitted once per data: read from the cache the second time, the same scores in the same order.
    assert [b["cache"] for b in summary["baselines"]] == ["miss"] * len(summary["baselines"])
    assert [b["cache"] for b in repeated["baselines"]] == ["hit"] * len(summary["baselines"])
    assert [list(b["models"].items()) for b in repeated["baselines"]] == [list(b["models"].items()) for b in summary["baselines"]]
    printed = json.loads(again.stdout)  # --json: one object, nothing else on stdout
    assert printed["stages"]["train"] == {"built": 0, "hit": 8} and printed["report"].endswith("report.md")
    assert printed["effects"] == [e["sentence"] for e in summary["side_effects"] + summary["effects"] + summary["interactions"]]

    before = (out / "report.md").read_text()
    (out / "report.md").unlink()
    rerendered = subprocess.run([sys.executable, "-m", "pipeline", "report", "out"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert rerendered.returncode == 0, rerendered.stderr
    assert (out / "report.md").read_text() == before


def test_flips_count_the_samples_a_change_fixed_and_broke():
    from pipeline.ablation.analysis import flips
    from pipeline.ablation.plan import TrainingResult

    results = [TrainingResult(v, s, "", {}, {}) for v in ("baseline", "x") for s in (0, 1)]
    correct = [np.array(c, dtype=float) for c in ([1, 0, 0, 1], [1, 1, 0, 0], [0, 1, 1, 1], [1, 1, 1, 0])]
    # Seed 0: x fixed samples 1 and 2, broke 0; seed 1: fixed 2, broke none.
    assert flips(results, correct, "baseline") == {"x": {"fixed": 1.5, "broke": 0.5, "pairing": "per sample", "paired_samples": 4}}


def test_ablation_overrides_on_the_command_line_shape_the_design_not_each_training(tmp_path, monkeypatch):
    from pipeline.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "small.yaml").write_text(
        "data: {source: 'sklearn:wine'}\naugment: {mode: none}\nmodel: {hidden: [8]}\ntrain: {epochs: 2, device: cpu}\n"
        "ablation:\n  seeds: [0, 1, 2]\n  factors:\n    model.dropout: {side: model, values: [0.0, 0.2]}\n"
    )
    # As the README's `ablate ablation.remove_one=true` does: an ablation.* override beside a training one.
    args = ["ablate", "--config", "small.yaml", "ablation.seeds=[0, 1]", "ablation.remove_one=true", "train.epochs=1", "--out", "out", "--quiet"]
    assert main(args) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["ablation"]["seeds"] == [0, 1] and summary["ablation"]["remove_one"] is True
    run = json.loads((tmp_path / "out" / summary["runs"][0]["run_dir"] / "run.json").read_text())
    assert run["config"]["train"]["epochs"] == 1 and run["config"].get("ablation") is None


# Seeds, alike variants and sides: refused before anything is built.

DIGITS_FAST = {"train": {"epochs": 1, "device": "cpu"}, "model": {"channels": [8], "hidden": [16]}, "augment": {"mode": "none"}}


def cache_entries(cache):
    return [path for path in cache.rglob("*") if path.is_file()] if cache.exists() else []


@pytest.mark.parametrize(
    ("section", "pattern"),
    [
        ({"design": "list", "variants": {"a": {}, "b": {"train.seed": 3}}}, r"variant 'b' sets train\.seed, but the seed list sets it in every run"),
        (
            {"design": "list", "vary": ["train", "split"], "variants": {"a": {}, "b": {"data.seed": 7}}},
            r"variant 'b' sets data\.seed, but the seed list sets it in every run, as ablation\.vary lists 'split'; .*remove 'split' from ablation\.vary",
        ),
        (
            {"vary": ["train", "augment"], "factors": {"augment.seed": {"side": "data", "values": [0, 1]}}},
            r"factor augment\.seed cannot vary: the seed list sets it in every run, as ablation\.vary lists 'augment'",
        ),
    ],
)
def test_a_seed_the_seed_list_sets_is_refused_naming_the_variant_and_key(tmp_path, section, pattern):
    from pipeline.ablation.design import parse_ablation
    from pipeline.ablation.plan import plan_ablation
    from pipeline.config import ConfigError

    with pytest.raises(ConfigError, match=pattern):
        plan_ablation(DIGITS_FAST, [], parse_ablation(section), tmp_path / "c", tmp_path / "r")


def test_a_seed_the_configuration_sets_is_refused_unless_it_is_the_default(tmp_path):
    from pipeline.ablation.design import parse_ablation
    from pipeline.ablation.plan import plan_ablation
    from pipeline.config import ConfigError

    design = parse_ablation({"seeds": [0, 1], "factors": {"model.dropout": {"side": "model", "values": [0.0, 0.2]}}})
    with pytest.raises(ConfigError, match=r"the configuration sets train\.seed=5, but the seed list sets it in every run"):
        plan_ablation(DIGITS_FAST, ["train.seed=5"], design, tmp_path / "c", tmp_path / "r")
    # A whole Config written out holds every seed at its default: nothing is lost.
    plan = plan_ablation({**DIGITS_FAST, "data": {"seed": 0}}, ["train.seed=0"], design, tmp_path / "c", tmp_path / "r")
    assert [task.config.train.seed for task in plan.tasks] == [0, 1, 0, 1]


def test_a_seed_the_seed_list_does_not_set_is_the_variants_own(tmp_path):
    from pipeline.ablation.design import parse_ablation
    from pipeline.ablation.plan import plan_ablation

    design = parse_ablation({"seeds": [0, 1], "factors": {"data.seed": {"side": "data", "values": [0, 7]}}})  # vary: [train]
    tasks = plan_ablation(DIGITS_FAST, [], design, tmp_path / "c", tmp_path / "r").tasks
    assert [(t.variant, t.seed, t.config.data.seed, t.config.train.seed) for t in tasks] == [
        ("baseline", 0, 0, 0), ("baseline", 1, 0, 1), ("data.seed=7", 0, 7, 0), ("data.seed=7", 1, 7, 1),
    ]


@pytest.mark.parametrize(
    ("section", "pattern"),
    [
        # 0.002 is optim.lr's default: b is a.
        ({"design": "list", "variants": {"a": {}, "b": {"optim.lr": 0.002}}}, r"variants 'a' \(sets nothing\) and 'b' \(sets optim\.lr=0\.002\) resolve to the same configuration"),
        # Without early stopping, restore_best unset means false.
        (
            {"design": "list", "variants": {"a": {"early_stop.enabled": False}, "b": {"early_stop.enabled": False, "early_stop.restore_best": False}}},
            r"variants 'a' \(sets early_stop\.enabled=false\) and 'b' .* resolve to the same configuration",
        ),
        ({"seeds": [0, 0], "factors": {"model.dropout": {"side": "model", "values": [0.0, 0.2]}}}, r"ablation\.seeds': seed 0 is listed twice"),
        (
            {"factors": {"scale.method": {"side": "model", "values": ["none", "standard"]}}},
            r"factor scale\.method is read by the scale stage \(a data stage\) but is declared side: model; declare side: data",
        ),
        ({"factors": {"optim.lr": {"side": "data", "values": [0.001, 0.002]}}}, r"factor optim\.lr is read by the train stage \(the model side\) but is declared side: data"),
    ],
)
def test_alike_variants_repeated_seeds_and_wrong_sides_are_refused_before_anything_is_cached(tmp_path, section, pattern):
    import pipeline
    from pipeline.config import ConfigError

    with pytest.raises(ConfigError, match=pattern):
        pipeline.ablate({**DIGITS_FAST, "ablation": section}, out=tmp_path / "out", cache_dir=tmp_path / "cache", report=False)
    assert cache_entries(tmp_path / "cache") == []


def test_variants_that_come_out_alike_once_their_data_is_built_are_refused_before_training(tmp_path):
    from pipeline.ablation.design import parse_ablation
    from pipeline.ablation.execute import run_ablation
    from pipeline.config import ConfigError

    # On images, augment.mode auto is offline: the two variants train the same thing.
    design = parse_ablation({"design": "list", "seeds": [0], "variants": {"auto": {"augment.mode": "auto"}, "offline": {"augment.mode": "offline"}}})
    with pytest.raises(ConfigError, match=r"variants 'auto' and 'offline' train the same thing once their data is built"):
        run_ablation(DIGITS_FAST, [], design, tmp_path / "out", tmp_path / "cache", progress=False)
    assert not (tmp_path / "cache" / "train").exists() or not any((tmp_path / "cache" / "train").iterdir())


def test_a_variant_on_its_own_split_is_paired_on_the_test_samples_it_shares(tmp_path):
    from datasets import load_source
    from pipeline.ablation.design import parse_ablation
    from pipeline.ablation.execute import run_ablation
    from pipeline.config import load_config
    from pipeline.stages.collect import split_indices

    design = parse_ablation({"design": "list", "seeds": [0, 1], "variants": {"split 0": {}, "split 7": {"data.seed": 7}, "dropout": {"model.dropout": 0.3}}})
    summary = run_ablation(DIGITS_FAST, [], design, tmp_path / "out", tmp_path / "cache", progress=False)
    raw = load_source("sklearn:digits")
    test = {seed: split_indices(raw, load_config(None, [f"data.seed={seed}"]))["test"] for seed in (0, 7)}
    shared = len(np.intersect1d(test[0], test[7]))
    assert 30 <= shared < len(test[0])
    effects = {e["name"]: e for e in summary["effects"]}
    assert effects["split 7 (vs split 0)"]["pairing"] == f"per sample, on the {shared} shared test samples"
    assert effects["split 7 (vs split 0)"]["paired_samples"] == shared
    assert (effects["dropout (vs split 0)"]["pairing"], effects["dropout (vs split 0)"]["paired_samples"]) == ("per sample", len(test[0]))
    assert summary["flips"]["split 7"]["pairing"] == f"per sample, on the {shared} shared test samples"
    assert summary["flips"]["split 7"]["fixed"] + summary["flips"]["split 7"]["broke"] <= shared
    assert summary["flips"]["dropout"]["pairing"] == "per sample"
    # The variant trained on its own split (not the seed list's), and its runs were no cache hits of the baseline's.
    runs = {(r["variant"], r["seed"]): json.loads((tmp_path / "out" / r["run_dir"] / "run.json").read_text()) for r in summary["runs"]}
    assert {runs[("split 7", seed)]["config"]["data"]["seed"] for seed in (0, 1)} == {7}
    assert summary["stages"]["collect"] == {"built": 2, "hit": 4}


def test_the_stage_time_chart_shows_cache_hits_beside_a_long_training():
    from pipeline.ablation.plots import stage_times_figure

    def stages(hits, train_hits):
        return {name: {"seconds": 0.0 if hits else 0.01, "hits": hits} for name in ("collect", "augment", "scale")} | {
            "train": {"seconds": 120.0, "hits": train_hits}
        }

    variants = [{"name": "baseline", "seeds": [0, 1, 2], "stages": stages(0, 0)}, {"name": "a, b", "seeds": [0, 1, 2], "stages": stages(3, 1)}]
    figure = stage_times_figure(variants)
    try:
        bars, hits = figure.axes
        cells = {text.get_gid(): text.get_text() for text in hits.texts}
        assert cells["hits:a, b:collect"] == "3/3" and cells["hits:a, b:train"] == "1/3" and cells["hits:baseline:scale"] == "0/3"
        assert hits.get_title() == "cache hits / runs"
        hatched = [patch for patch in bars.patches if patch.get_hatch()]
        assert len(hatched) == 3  # a, b's data stages: every run a hit
    finally:
        import matplotlib.pyplot as plt

        plt.close(figure)


def test_an_early_stopping_effect_says_how_many_epochs_it_saved():
    """Epochs per run are contrasted like the scores (a t-interval over seeds, not adjusted), and
    an early-stopping effect's sentence says what it saved: cost, as the chapter says."""
    from pipeline.ablation.analysis import _saving, epochs_effects
    from pipeline.ablation.plan import TrainingResult

    ablation = AblationConfig(design="full", seeds=[0, 1, 2], factors={"early_stop.enabled": {"side": "model", "values": [False, True]}})
    trained = {("baseline", 0): 30, ("baseline", 1): 30, ("baseline", 2): 30,
               ("early_stop.enabled=true", 0): 20, ("early_stop.enabled=true", 1): 22, ("early_stop.enabled=true", 2): 24}
    results = [TrainingResult(variant, seed, "", {"metrics": {"epochs_run": epochs}, "config": {"train": {"epochs": 30}}}, {})
               for (variant, seed), epochs in trained.items()]
    rows = [{"variant": variant, "seed": seed, "settings": {"early_stop.enabled": variant.endswith("true")}, "score": 0.9}
            for variant, seed in trained]
    epochs = epochs_effects(ablation, rows, results, "early_stop.enabled=true", "baseline")
    factor = epochs["setting early_stop.enabled from false to true (averaged over the other factors)"]
    half = scipy_stats.t.ppf(0.975, 2) * 2 / math.sqrt(3)  # differences -10, -8, -6
    assert (factor["mean"], factor["low"], factor["high"], factor["baseline"]) == pytest.approx((-8, -8 - half, -8 + half, 30))
    assert epochs["switching from baseline to early_stop.enabled=true"] == factor
    assert _saving("setting early_stop.enabled from false to true", factor) == f", and trained 8.0 fewer epochs per run [{8 - half:.1f}, {8 + half:.1f}] (27% of the baseline's 30.0)"
    assert _saving("setting model.dropout from 0.0 to 0.3", factor) == ""


@pytest.mark.parametrize(("batch_norm", "batch_size", "samples", "world_size", "expected"), [
    (True, 8, 1000, 1, ["8 samples per device"]),
    (True, 32, 1000, 4, ["8 samples per device"]),  # each rank normalizes its own share
    (True, 16, 1000, 1, []),
    (True, 19, 115, 1, ["a last batch of 1"]),
    (True, 64, 130, 2, ["a last batch of 2"]),  # two ranks: one sample each
    (True, 8, 8, 1, []),  # the whole training set is one batch
    (False, 2, 115, 1, []),
])
def test_batch_norm_caveats_name_small_batches_and_a_last_batch_it_cannot_train_on(batch_norm, batch_size, samples, world_size, expected):
    from trainers.diagnosis import batch_norm_caveats

    caveats = batch_norm_caveats(batch_norm, batch_size, samples, world_size)
    assert len(caveats) == len(expected) and all(part in caveat for part, caveat in zip(expected, caveats))


def test_a_run_with_batch_norm_on_small_batches_says_so(tmp_path, capsys):
    import pipeline
    from pipeline.cli import main

    result = pipeline.run(None, ["data.source=sklearn:wine", "model.type=mlp", "train.epochs=1", "train.device=cpu", "train.batch_size=19"],
                          cache_dir=tmp_path / "cache", runs_dir=tmp_path / "runs")
    caveats = result.record["diagnosis"]["caveats"]
    assert [caveat.split(" ")[:4] for caveat in caveats] == [["115", "training", "samples", "in"]]
    assert main(["run", "data.source=sklearn:wine", "model.type=mlp", "train.epochs=1", "train.device=cpu", "train.batch_size=8",
                 "--cache-dir", str(tmp_path / "cache"), "--runs-dir", str(tmp_path / "runs")]) == 0
    assert "note: Batch norm normalizes each batch by its own mean and variance, here from 8 samples per device" in capsys.readouterr().out
