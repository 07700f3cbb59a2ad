"""The Python API as a notebook uses it: `run`, `ablate` and `load_ablation` return objects with
DataFrames, and an ablation run from the command line reads back as the same tables."""

import math

import pandas as pd
import pytest
import yaml

import pipeline
from pipeline.cli import main
from pipeline.config import ConfigError

WINE = {
    "data": {"source": "sklearn:wine"},
    "augment": {"mode": "none"},
    "model": {"hidden": [8]},
    "train": {"epochs": 3, "device": "cpu"},
    "ablation": {
        "design": "full",
        "seeds": [0, 1],
        "factors": {
            "scale.method": {"side": "data", "values": ["standard", "none"]},
            "model.dropout": {"side": "model", "values": [0.0, 0.2]},
        },
    },
}


def test_run_returns_metrics_stages_and_the_history_as_a_dataframe(tmp_path):
    result = pipeline.run(WINE, ["train.epochs=4"], cache_dir=tmp_path / "c", runs_dir=tmp_path / "runs")
    assert [stage.name for stage in result.stages] == ["collect", "augment", "scale", "train"]
    assert isinstance(result.history, pd.DataFrame) and list(result.history["epoch"]) == [1, 2, 3, 4]
    assert result.record_path.exists() and result.record_path.parent.parent == tmp_path / "runs"
    assert result.metrics["val_accuracy"] == result.history["val_accuracy"][result.metrics["kept_epoch"] - 1]
    assert list(result.stage_table["cache"]) == ["miss"] * 4
    again = pipeline.run(WINE, ["train.epochs=4"], cache_dir=tmp_path / "c", runs_dir=tmp_path / "runs")
    assert list(again.stage_table["cache"]) == ["hit"] * 4 and again.metrics == result.metrics


def test_a_config_is_a_dict_a_file_or_overrides_alike(tmp_path):
    (tmp_path / "wine.yaml").write_text(yaml.safe_dump(WINE, sort_keys=False))
    from pipeline.api import resolve_config

    from_file = resolve_config(tmp_path / "wine.yaml", ["optim.lr=0.01"])
    assert from_file == resolve_config(WINE, ["optim.lr=0.01"]) == resolve_config(resolve_config(WINE), ["optim.lr=0.01"])
    with pytest.raises(ConfigError, match="optim.lr"):
        resolve_config(WINE, ["optim.lrr=0.01"])


def test_ablate_returns_effects_variants_and_runs_as_dataframes_and_the_cli_folder_reads_the_same(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ablation = pipeline.ablate(WINE, out="api", cache_dir="c")

    effects = ablation.effects
    assert list(effects.columns) == [
        "effect", "kind", "side", "condition", "mean", "low", "high", "adjusted_low", "adjusted_high", "simultaneous_low",
        "simultaneous_high", "p", "p_holm", "decided", "detectable", "seeds_to_decide", "epochs", "epochs_low", "epochs_high", "sentence",
    ]
    assert set(effects["kind"]) >= {"side", "factor", "interaction"}
    factor = effects[effects["kind"] == "factor"]
    assert set(factor["condition"]) == {"averaged over the other factors"}
    assert all(name.endswith("(averaged over the other factors)") for name in factor["effect"])
    assert (effects["decided"] == (effects["p_holm"] < 0.05)).all()
    excludes_zero = (effects["adjusted_low"] > 0) | (effects["adjusted_high"] < 0)
    assert (effects["decided"] == excludes_zero).all()
    assert ((effects["simultaneous_low"] <= effects["adjusted_low"]) & (effects["adjusted_low"] <= effects["low"])).all()
    assert ((effects["low"] <= effects["mean"]) & (effects["mean"] <= effects["high"])).all()
    summary = ablation.summary
    assert list(effects["sentence"][: len(summary["side_effects"])]) == [e["sentence"] for e in summary["side_effects"]]

    variants = ablation.variants
    assert list(variants["variant"]) == [v["name"] for v in summary["variants"]] and variants["variant"][0] == "baseline"
    assert sorted(variants["scale.method"]) == ["none", "none", "standard", "standard"] and variants["scale.method"][0] == "standard"
    assert (variants["seeds"] == 2).all() and variants["test_mean"].between(0, 1).all()
    runs = ablation.runs
    assert len(runs) == 8 and set(runs["seed"]) == {0, 1} and set(runs["train_cache"]) == {"miss"}
    assert ablation.verdict in {e["sentence"] for e in summary["side_effects"] + summary["effects"]} | {
        summary["verdict"]["gain"]["sentence"] if summary["verdict"]["gain"] else f"best variant on validation: the baseline 'baseline'"
    }
    assert (tmp_path / "api" / "report.md").exists()
    html = ablation._repr_html_()
    assert html.startswith("<p><b>Ablation</b>") and "<table" in html and "p (Holm)" in html

    (tmp_path / "wine.yaml").write_text(yaml.safe_dump(WINE, sort_keys=False))
    assert main(["ablate", "--config", "wine.yaml", "--cache-dir", "c", "--out", "cli", "--quiet"]) == 0
    from_cli = pipeline.load_ablation(tmp_path / "cli")
    pd.testing.assert_frame_equal(from_cli.effects, effects)
    pd.testing.assert_frame_equal(from_cli.variants, variants)
    assert list(from_cli.runs["train_cache"]) == ["hit"] * 8  # every training found in the cache the API filled
    same = ["variant", "seed", "test_accuracy", "test_loss", "val_accuracy", "best_epoch", "epochs_run", "diagnosis"]
    pd.testing.assert_frame_equal(from_cli.runs[same], runs[same])


def test_an_ablation_reads_in_another_metric_and_renders_elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    design = {**WINE, "ablation": {"seeds": [0, 1], "factors": {"model.dropout": {"side": "model", "values": [0.0, 0.2]}}}}
    ablation = pipeline.ablate(design, ["train.epochs=2"], out="out", cache_dir="c", report=False)
    assert not (tmp_path / "out" / "report.md").exists()
    loss = ablation.in_metric("log_loss")
    assert loss.metric == "log_loss" and loss.effects.attrs["metric"] == "log_loss"
    assert not math.isclose(loss.effects["mean"][0], ablation.effects["mean"][0])
    report = ablation.report(tmp_path / "elsewhere")
    assert report == tmp_path / "elsewhere" / "report.md" and (tmp_path / "elsewhere" / "plots" / "effects.png").exists()
    assert not (tmp_path / "out" / "report.md").exists()


def test_load_ablation_names_a_folder_that_is_not_an_ablation(tmp_path):
    with pytest.raises(ValueError, match="holds no summary.json"):
        pipeline.load_ablation(tmp_path)


def test_ablate_refuses_a_config_without_an_ablation_section_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="no 'ablation:' section"):
        pipeline.ablate({"train": {"epochs": 1}}, out=tmp_path / "out", cache_dir=tmp_path / "c")
    assert not (tmp_path / "out").exists() and not (tmp_path / "c").exists()


def test_a_summary_from_before_decisions_is_named_not_a_traceback(tmp_path):
    import json

    (tmp_path / "summary.json").write_text(json.dumps({key: [] for key in ("ablation", "stages", "variants", "side_effects", "verdict", "best_variant", "baselines", "ensembles", "runs", "per_class_changes")}
                                                      | {"effects": [{"name": "x", "p_holm": 0.5}]}))
    with pytest.raises(ValueError, match="older gainsplit.*run the ablation again"):
        pipeline.load_ablation(tmp_path)


def test_plan_trains_nothing_and_counts_the_tests_the_ablation_will_adjust_over(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    plan = pipeline.api.plan(WINE, ["ablation.resolution=50"], cache_dir="c")
    assert (plan.trainings, plan.variants, plan.seeds, plan.cached) == (8, 4, 2, 0) and sum(plan.units) == 8
    assert not list((tmp_path / "c").glob("train/*/meta.json"))  # the probe is discarded
    assert plan.estimated_seconds > 0 and plan.seconds_per_member_epoch > 0
    # Two seeds: one degree of freedom, and an adjusted t that no effect within the range passes.
    assert plan.detectable == 1.0 and plan.resolution == 0.5 and not plan.resolves and plan.seeds_to_resolve > 2
    four = pipeline.api.plan(WINE, ["ablation.seeds=[0, 1, 2, 3]"], cache_dir="c")
    assert four.trainings == 16 and four.resolution is None and four.resolves is None
    ablation = pipeline.ablate(WINE, out="out", cache_dir="c", report=False)
    assert {effect["tests"] for effect in ablation.summary["effects"]} == {plan.tests}
    again = pipeline.api.plan(WINE, cache_dir="c", like="out")
    assert again.cached == 8 and again.estimated_seconds == 0 and "variances of the ablation in out" in again.variance_source

    (tmp_path / "wine.yaml").write_text(yaml.safe_dump(WINE, sort_keys=False))
    assert main(["ablate", "--plan", "--config", "wine.yaml", "--cache-dir", "c", "ablation.resolution=0.1"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("trainings   8 (4 variants x 2 seeds), 8 already cached") and "resolution  0.1 points" in printed
    assert main(["ablate", "--like", "out", "--config", "wine.yaml"]) == 2


def test_a_k_fold_plan_counts_the_folds_and_a_holdout_plan_says_what_k_fold_would_detect(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    kfold = {**WINE, "ablation": {**WINE["ablation"], "vary": ["train", "split"], "resampling": {"kind": "kfold", "folds": 3}}}
    plan = pipeline.api.plan(kfold, cache_dir="c")
    assert (plan.trainings, plan.folds, plan.kfold_detectable) == (24, 3, None)
    with pytest.raises(ValueError, match=r"--like plans from a held-out ablation's variances"):
        pipeline.api.plan(kfold, cache_dir="c", like=tmp_path)
    shared = pipeline.api.plan(WINE, ["ablation.seeds=[0, 1, 2]"], cache_dir="c")  # one test split of 36 samples for every seed
    assert shared.folds is None and shared.kfold_detectable < shared.detectable
    (tmp_path / "wine.yaml").write_text(yaml.safe_dump(kfold, sort_keys=False))
    assert main(["ablate", "--plan", "--config", "wine.yaml", "--cache-dir", "c"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("trainings   24 (4 variants x 2 seeds x 3 folds)") and "every sample tested once per seed (3 folds of 59)" in printed


@pytest.mark.parametrize(
    "detectable, seeds_to_resolve, expected",
    [(0.004, 5, "resolution  0.5 points: this design resolves it"), (0.02, 12, "resolution  0.5 points: not with 5 seeds; about 12 seeds would"),
     (1.0, None, "resolution  0.5 points: no number of seeds would on 360 test samples; a larger test split would")],
)
def test_the_plan_says_whether_the_design_resolves_what_the_user_asks(detectable, seeds_to_resolve, expected):
    from pipeline.ablation.planning import DesignPlan
    from pipeline.cli import format_plan

    plan = DesignPlan(10, 5, 50, 0, [25, 25], 20, 0.05, 50.0, 12, 360, False, "a guess", detectable, 0.005, seeds_to_resolve)
    lines = format_plan(plan).splitlines()
    assert lines[-1] == expected and lines[2].startswith("time        about 50 s on this device at most")
    assert ("this design decides no effect" in lines[3]) == (detectable >= 1)
