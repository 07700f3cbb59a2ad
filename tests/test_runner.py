import csv
import json
import logging

import numpy as np
import pytest

import pipeline.stages.scale
from conftest import FAST
from pipeline.cache import Artifact, CacheStore
from pipeline.config import load_config
from pipeline.runner import run_pipeline, run_stages
from pipeline.stages import RunContext, default_stages

QUIET = RunContext(progress=False)


def run(dirs, *overrides, force=False):
    return run_pipeline(load_config(None, [*FAST, *overrides]), **dirs, force=force, progress=False)


def statuses(result):
    return {outcome.name: outcome.cache for outcome in result.stages}


def test_first_run_misses_then_everything_hits(dirs):
    first = run(dirs)
    assert statuses(first) == dict.fromkeys(["collect", "augment", "scale", "train"], "miss")
    second = run(dirs)
    assert statuses(second) == dict.fromkeys(["collect", "augment", "scale", "train"], "hit")
    assert [o.output_sha256 for o in second.stages] == [o.output_sha256 for o in first.stages]
    assert second.metrics == first.metrics


def test_model_side_change_reruns_only_train_on_identical_arrays(dirs):
    first = run(dirs)
    second = run(dirs, "model.dropout=0.3")
    assert statuses(second) == {"collect": "hit", "augment": "hit", "scale": "hit", "train": "miss"}
    scale = lambda result: next(o for o in result.stages if o.name == "scale")
    assert scale(second).output_sha256 == scale(first).output_sha256


def test_scaling_change_reruns_scale_and_train(dirs):
    run(dirs)
    result = run(dirs, "scale.method=minmax")
    assert statuses(result) == {"collect": "hit", "augment": "hit", "scale": "miss", "train": "miss"}


def test_force_rebuilds_every_stage(dirs):
    run(dirs)
    assert set(statuses(run(dirs, force=True)).values()) == {"miss"}


def test_code_change_rebuilds_its_stage_and_downstream_only_if_the_output_changed(dirs, monkeypatch):
    run(dirs)
    real_code, real_run = pipeline.stages.scale.ScaleStage.code, pipeline.stages.scale.ScaleStage.run
    monkeypatch.setattr(pipeline.stages.scale.ScaleStage, "code", lambda self, config: (*real_code(self, config), json))
    # The same bytes out of changed code: training is keyed on them, so it hits (early cutoff).
    assert statuses(run(dirs)) == {"collect": "hit", "augment": "hit", "scale": "miss", "train": "hit"}

    def shifted(self, inputs, config, context):
        artifact = real_run(self, inputs, config, context)
        return Artifact({**artifact.arrays, "x_train": artifact.arrays["x_train"] + 1.0}, artifact.info)

    monkeypatch.setattr(pipeline.stages.scale.ScaleStage, "code", lambda self, config: (*real_code(self, config), json, csv))
    monkeypatch.setattr(pipeline.stages.scale.ScaleStage, "run", shifted)
    assert statuses(run(dirs)) == {"collect": "hit", "augment": "hit", "scale": "miss", "train": "miss"}


def test_version_bump_rebuilds_its_stage(dirs, monkeypatch):
    run(dirs)
    monkeypatch.setattr(pipeline.stages.scale.ScaleStage, "version", "2")
    assert statuses(run(dirs)) == {"collect": "hit", "augment": "hit", "scale": "miss", "train": "hit"}


def test_corrupt_entry_is_rebuilt_and_earlier_stages_reused(dirs, caplog):
    first = run(dirs)
    scale_key = next(o.key for o in first.stages if o.name == "scale")
    damaged = CacheStore(dirs["cache_dir"]).entry_dir("scale", scale_key) / "x_train.codes.npy"
    damaged.write_bytes(damaged.read_bytes()[:-8])
    with caplog.at_level(logging.WARNING):
        second = run(dirs)
    assert "scale" in caplog.text and scale_key[:12] in caplog.text
    # The rebuilt arrays are the same bytes, so training's key is unchanged and it hits.
    assert statuses(second) == {"collect": "hit", "augment": "hit", "scale": "miss", "train": "hit"}


def test_run_record_and_history(dirs):
    result = run(dirs)
    record = json.loads((result.run_dir / "run.json").read_text())
    assert record["config"]["train"]["epochs"] == 3
    assert [s["name"] for s in record["stages"]] == ["collect", "augment", "scale", "train"]
    for stage in record["stages"]:
        assert set(stage) == {"name", "key", "cache", "seconds", "output_sha256"}
    assert {"test_accuracy", "test_loss", "best_epoch", "epochs_run"} <= set(record["metrics"])
    assert {"python", "torch", "device"} <= set(record["environment"])
    assert record["scaling"]["scaler"]["class"] == "StandardScaler"
    with open(result.run_dir / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == record["metrics"]["epochs_run"]
    assert list(rows[0]) == ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds", "val_loss_se"]


def test_scaler_is_fitted_on_the_training_split_only(dirs):
    _, results = run_stages(load_config(None, FAST), CacheStore(dirs["cache_dir"]), context=QUIET)
    scaled = results["scale"].artifact.arrays
    assert abs(float(np.mean(scaled["x_train"]))) < 1e-5
    assert abs(float(np.std(scaled["x_train"])) - 1) < 1e-4
    assert abs(float(np.mean(scaled["x_test"]))) > 1e-4  # test statistics were not used


def test_offline_augmentation_grows_only_the_training_split(dirs):
    _, results = run_stages(load_config(None, [*FAST, "augment.copies=2"]), CacheStore(dirs["cache_dir"]), context=QUIET)
    collected, augmented = results["collect"].artifact.arrays, results["augment"].artifact.arrays
    n = collected["x_train"].shape[0]
    assert augmented["x_train"].shape[0] == 3 * n
    np.testing.assert_array_equal(augmented["x_train"][:n], collected["x_train"])
    assert not np.array_equal(augmented["x_train"][n : 2 * n], collected["x_train"])
    assert results["scale"].artifact.arrays["x_val"].shape[0] == collected["x_val"].shape[0]


@pytest.mark.parametrize("mode", ["none", "online"])
def test_other_augmentation_modes_keep_the_collected_training_split(dirs, mode):
    result = run(dirs, f"augment.mode={mode}")
    assert 0.0 <= result.metrics["test_accuracy"] <= 1.0
    _, results = run_stages(load_config(None, [*FAST, f"augment.mode={mode}"]), CacheStore(dirs["cache_dir"]), context=QUIET)
    assert results["scale"].artifact.arrays["x_train"].shape == results["collect"].artifact.arrays["x_train"].shape


def test_adapter_recipe_runs_offline_and_its_library_version_is_in_the_key(dirs):
    recipe = "augment.recipe=[{name: Albumentations, transform: HorizontalFlip, args: {p: 1.0}}]"
    config = load_config(None, [*FAST, recipe])
    outcomes, results = run_stages(config, CacheStore(dirs["cache_dir"]), context=QUIET)
    meta = results["augment"].meta
    assert set(meta["params"]["libraries"]) == {"albumentations"}
    collected, augmented = results["collect"].artifact.arrays, results["augment"].artifact.arrays
    n = collected["x_train"].shape[0]
    np.testing.assert_array_equal(augmented["x_train"][n:], collected["x_train"][..., ::-1])


def test_augmentation_change_reuses_collect_from_the_cache(dirs):
    run(dirs)
    result = run(dirs, "augment.copies=2")
    assert statuses(result) == {"collect": "hit", "augment": "miss", "scale": "miss", "train": "miss"}


def test_binary_tabular_task_reports_a_two_by_two_confusion_matrix(dirs):
    result = run(dirs, "data.source=sklearn:breast_cancer", "train.epochs=15")
    matrix = result.metrics["confusion_matrix"]
    assert len(matrix) == 2 and all(len(row) == 2 for row in matrix)
    assert sum(map(sum, matrix)) == sum(result.record["data"]["class_counts"]["test"])
    assert set(result.metrics["per_class_accuracy"]) == {"malignant", "benign"}
    assert result.metrics["test_accuracy"] > 0.8


def test_mixed_precision_falls_back_to_fp32_on_the_cpu(dirs, caplog):
    with caplog.at_level(logging.WARNING):
        result = run(dirs, "train.precision=bf16", "train.device=cpu")
    assert result.record["precision"] == "fp32"
    assert "train.precision=bf16 needs CUDA" in caplog.text


def test_deterministic_flag_turns_on_deterministic_algorithms():
    import torch

    from pipeline.stages.train import seed_everything

    seed_everything(0, deterministic=True)  # conftest puts the flags back afterwards
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark


@pytest.mark.parametrize(
    ("overrides", "restores"),
    [
        (["early_stop.enabled=false"], False),  # the textbook's "no early stopping": the last epoch's weights
        (["early_stop.enabled=true", "early_stop.patience=50"], True),
        (["early_stop.enabled=false", "early_stop.restore_best=true"], True),  # asked for explicitly
    ],
)
def test_without_early_stopping_a_run_keeps_its_last_weights(dirs, overrides, restores):
    # A learning rate high enough that validation loss is lowest at epoch 5 of 8.
    config = load_config(None, [*FAST, "train.epochs=8", "optim.lr=0.05", "train.device=cpu", *overrides])
    assert config.early_stop.restores_best is restores
    result = run_pipeline(config, **dirs, progress=False)
    metrics, history = result.metrics, result.history
    assert metrics["best_epoch"] < metrics["epochs_run"] == 8
    kept = metrics["best_epoch"] if restores else metrics["epochs_run"]
    assert metrics["kept_epoch"] == kept
    assert metrics["val_accuracy"] == history["val_accuracy"][kept - 1]
    assert metrics["val_loss"] == history["val_loss"][kept - 1]


def test_the_record_names_the_network_built_and_its_parameter_count(dirs):
    from trainers.models import build_model

    record = run(dirs, "train.device=cpu").record
    spec = load_config(None, FAST).model.model_dump(exclude={"sync_batch_norm"})
    built = build_model(spec, (1, 8, 8), 10)
    assert record["model"]["type"] == "cnn" and record["model"]["channels"] == [8] and record["model"]["hidden"] == [16]
    assert record["model"]["parameters"] == sum(p.numel() for p in built.parameters()) == 8 * 9 + 16 + 128 * 16 + 32 + 16 * 10 + 10
    mlp = run(dirs, "train.device=cpu", "model.type=mlp", "model.hidden=[32,16]").record["model"]
    assert mlp["type"] == "mlp" and "channels" not in mlp and mlp["hidden"] == [32, 16]


def test_scaled_data_that_is_not_finite_is_refused_naming_where():
    from pipeline.stages.scale import finite

    with pytest.raises(ValueError, match=r"the scaled train split holds inf at sample 1, feature 0"):
        finite(np.array([[1.0, 2.0], [np.inf, 3.0]], dtype=np.float32), "scaled train split")
    assert finite(np.ones((2, 2), dtype=np.float32), "scaled val split").shape == (2, 2)


@pytest.mark.parametrize("mode", ["offline", "none"])
def test_sample_ids_pass_through_augment_and_scale_unchanged(dirs, mode):
    config = load_config(None, [*FAST, f"augment.mode={mode}", "augment.copies=2"])
    _, results = run_stages(config, CacheStore(dirs["cache_dir"]), context=QUIET, stages=default_stages()[:3])
    collected, augmented, scaled = (results[name].artifact.arrays for name in ("collect", "augment", "scale"))
    for split in ("val", "test"):  # never augmented
        np.testing.assert_array_equal(scaled[f"id_{split}"], collected[f"id_{split}"])
    # Each augmented copy keeps the identity of the sample it was made from.
    expected = np.tile(collected["id_train"], 3) if mode == "offline" else collected["id_train"]
    np.testing.assert_array_equal(scaled["id_train"], expected)
    assert scaled["id_train"].shape[0] == scaled["x_train"].shape[0]
    if mode == "offline":
        np.testing.assert_array_equal(augmented["id_train"], expected)


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ([], lambda x, info: ((x - np.array(info["mean_"])[:, None, None]) / np.array(info["scale_"])[:, None, None])),
        (["scale.method=minmax", "scale.axis=feature", "scale.feature_range=[-1,1]"], lambda x, info: x * np.array(info["scale_"]) + np.array(info["min_"])),
        (["scale.method=none", "data.train_fraction=0.5"], lambda x, info: x),
    ],
)
def test_8_bit_images_are_cached_as_their_bytes_and_a_table_and_read_as_the_scaled_floats(dirs, overrides, expected):
    config = load_config(None, [*FAST, *overrides])
    _, results = run_stages(config, CacheStore(dirs["cache_dir"]), context=QUIET, stages=default_stages()[:3])
    scaled, collected, augmented = results["scale"], results["collect"].artifact.arrays, results["augment"].artifact.arrays
    names = ["x_test", "x_train", "x_val", *(["x_unlabelled"] if "x_unlabelled" in collected else [])]
    per_feature = "scale.axis=feature" in overrides  # a table column per pixel: coded only where the codes and table are smaller than float32
    coded = [name for name in names if not per_feature or (augmented if name == "x_train" else collected)[name].shape[0] * 64 * 3 > 256 * 64 * 4]
    assert scaled.meta["lookup"] == sorted(coded) and (not per_feature or len(coded) < len(names))
    info = scaled.artifact.info.get("scaler", {})
    for name in names:
        raw = np.asarray((augmented if name == "x_train" else collected)[name])
        assert raw.dtype == np.uint8
        computed = expected(raw.astype(np.float64), info).astype(np.float32)  # float64 arithmetic on every value, then float32
        for cached in (scaled, CacheStore(dirs["cache_dir"]).load("scale", scaled.meta["key"])):
            np.testing.assert_array_equal(cached.artifact.arrays[name], computed)
    folder = CacheStore(dirs["cache_dir"]).entry_dir("scale", scaled.meta["key"])
    stored = sum(p.stat().st_size for p in folder.glob("x_*.npy"))
    assert stored < sum(4 * scaled.artifact.arrays[name].size for name in names) * (0.85 if per_feature else 0.3)
