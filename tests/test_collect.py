"""The collect stage inside the pipeline: content-keyed caching, official test splits, subsets, plugins."""

import json
import sys
import textwrap

import numpy as np
import pytest

import datasets.base
from conftest import FAST
from pipeline.cache import CacheStore
from pipeline.config import ConfigError, load_config
from pipeline.runner import StageError, run_pipeline, run_stages
from pipeline.stages import CollectStage, RunContext
from test_sources import mnist_like

QUIET = RunContext(progress=False)


def collect(dirs, *overrides):
    config = load_config(None, [*FAST, *overrides])
    outcomes, results = run_stages(config, CacheStore(dirs["cache_dir"]), context=QUIET)
    return outcomes[0], results


def write_csv(path, n=60, shift=0.0):
    rng = np.random.default_rng(0)
    rows = ["a;b;kind"]
    for i in range(n):
        label = i % 3
        rows.append(f"{rng.normal() + label + shift:.4f};{rng.normal() - label:.4f};k{label}")
    path.write_text("\n".join(rows) + "\n")


def test_editing_the_file_reruns_collect_and_everything_after(dirs, tmp_path):
    path = tmp_path / "table.csv"
    write_csv(path)
    source = [f"data.source=csv:{path}", "data.target=kind"]
    first, _ = collect(dirs, *source)
    again, _ = collect(dirs, *source)
    assert (first.cache, again.cache) == ("miss", "hit")
    write_csv(path, shift=0.5)
    edited, results = collect(dirs, *source)
    assert edited.cache == "miss" and edited.key != first.key
    assert list(results["collect"].artifact.info["provenance"]["files"].values())[0] != ""


def test_tabular_csv_runs_end_to_end_with_an_mlp(dirs, tmp_path):
    path = tmp_path / "table.csv"
    write_csv(path, n=90)
    result = run_pipeline(
        load_config(None, [f"data.source=csv:{path}", "data.target=kind", "train.epochs=5"]), **dirs, progress=False
    )
    record = json.loads((result.run_dir / "run.json").read_text())
    assert record["data"]["kind"] == "tabular" and record["data"]["class_names"] == ["k0", "k1", "k2"]
    assert str(path) in record["data"]["provenance"]["files"]
    assert record["data"]["provenance"]["delimiter"] == ";"
    assert result.metrics["test_accuracy"] > 0.5
    augment = next(s for s in record["stages"] if s["name"] == "augment")
    assert augment["cache"] == "miss"


def test_official_test_split(dirs, tmp_path):
    mnist_like(tmp_path, "train", 60)
    test_x, _ = mnist_like(tmp_path, "t10k", 15, seed=3)
    _, results = collect(dirs, f"data.source=idx:{tmp_path}", "data.use_official_test=true")
    arrays = results["collect"].artifact.arrays
    np.testing.assert_array_equal(arrays["x_test"][:, 0], test_x)
    assert arrays["x_train"].shape[0] + arrays["x_val"].shape[0] == 60


def test_official_test_split_missing(dirs, tmp_path):
    mnist_like(tmp_path, "t10k", 30)
    with pytest.raises(StageError, match=r"stage 'collect' failed: data\.use_official_test is true but idx:.* has no test split"):
        collect(dirs, f"data.source=idx:{tmp_path}", "data.use_official_test=true")


def test_train_fraction_takes_nested_stratified_subsets(dirs):
    _, full = collect(dirs)
    _, half = collect(dirs, "data.train_fraction=0.5")
    _, quarter = collect(dirs, "data.train_fraction=0.25")
    as_rows = lambda results: {row.tobytes() for row in np.asarray(results["collect"].artifact.arrays["x_train"])}
    assert as_rows(quarter) < as_rows(half) < as_rows(full)
    counts = lambda results: np.array(results["collect"].artifact.info["class_counts"]["train"])
    assert np.all(np.abs(counts(half) - counts(full) / 2) <= 1)
    assert counts(half).sum() < counts(full).sum()
    for split in ("val", "test"):
        assert half["collect"].artifact.info["class_counts"][split] == full["collect"].artifact.info["class_counts"][split]


def test_too_small_class_names_the_class(dirs, tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, x=np.arange(20.0).reshape(10, 2), y=np.array([0] * 4 + [1] * 4 + [2] * 2))
    with pytest.raises(StageError, match=r"class '2' has 2 sample\(s\); a stratified split .* needs at least 3"):
        collect(dirs, f"data.source=npz:{path}")


@pytest.fixture
def isolated_sources(monkeypatch):
    """Sources a test registers, and the plugin modules it imports, are gone after it."""
    monkeypatch.setattr(datasets.base, "SOURCES", dict(datasets.base.SOURCES))
    yield
    sys.modules.pop("my_sources", None)


def test_plugin_source_registered_with_the_decorator(dirs, tmp_path, monkeypatch, isolated_sources):
    (tmp_path / "my_sources.py").write_text(
        textwrap.dedent(
            """
            import numpy as np
            from datasets import RawData, register_source

            @register_source("blobs")
            def load_blobs(argument, options):
                rng = np.random.default_rng(0)
                n = int(argument or 60)
                y = np.arange(n) % 2
                x = (rng.normal(size=(n, 2)) + 3 * y[:, None]).astype("float32")
                return RawData(x, y, ["left", "right"])
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    first, results = collect(dirs, "data.plugins=[my_sources]", "data.source=blobs:90")
    assert results["collect"].artifact.info["class_names"] == ["left", "right"]
    assert first.cache == "miss"


@pytest.mark.parametrize(
    "override, pattern",
    [
        ("data.source=xls:file.xls", r"'data\.source'.*Unknown data source kind 'xls'"),
        ("data.plugins=[no_such_module]", r"'data\.plugins'.*cannot import plugin module 'no_such_module'"),
        ("data.train_fraction=0", r"'data\.train_fraction'"),
        ("data.folds=1", r"'data\.folds'"),
        ("data.fold=2", r"data\.fold is set but data\.folds is not"),
        ("data={folds: 5, fold: 5}", r"data\.fold must be one of 0\.\.4 for data\.folds=5"),
        ("data={folds: 5, use_official_test: true}", r"data\.folds and data\.use_official_test exclude each other"),
    ],
)
def test_data_config_errors(override, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_config(None, [override])


def test_missing_file_is_named_before_anything_runs(dirs, tmp_path):
    with pytest.raises(ValueError, match=r"Data file .*absent\.csv does not exist"):
        collect(dirs, f"data.source=csv:{tmp_path / 'absent.csv'}", "data.target=y")


def statuses(outcomes):
    return [outcome.cache for outcome in outcomes]


def run_all(dirs, *overrides):
    return run_stages(load_config(None, [*FAST, "train.device=cpu", *overrides]), CacheStore(dirs["cache_dir"]), context=QUIET)[0]


def test_the_same_data_in_another_file_reuses_every_stage_after_collect(dirs, tmp_path):
    rows = [f"{0.1 * i:.1f},{(i * 7) % 5 - 2.0:.1f},k{i % 3}" for i in range(60)]
    comma, semicolon = tmp_path / "comma.csv", tmp_path / "semicolon.csv"
    comma.write_text("a,b,kind\n" + "\n".join(rows) + "\n")
    semicolon.write_text("a;b;kind\n" + "\n".join(row.replace(",", ";") for row in rows) + "\n")
    first = run_all(dirs, f"data.source=csv:{comma}", "data.target=kind")
    second = run_all(dirs, f"data.source=csv:{semicolon}", "data.target=-1")
    assert statuses(first) == ["miss"] * 4
    assert statuses(second) == ["miss", "hit", "hit", "hit"]  # byte-identical arrays: early cutoff
    assert first[0].key != second[0].key and [o.key for o in first[1:]] == [o.key for o in second[1:]]

    images = np.random.default_rng(0).integers(0, 255, size=(60, 6, 6)).astype(np.float32)
    labels = np.arange(60) % 3
    np.savez(tmp_path / "flat.npz", x=images, y=labels)
    np.savez(tmp_path / "channels.npz", x=images[:, None], y=labels)
    assert statuses(run_all(dirs, f"data.source=npz:{tmp_path / 'flat.npz'}")) == ["miss"] * 4
    assert statuses(run_all(dirs, f"data.source=npz:{tmp_path / 'channels.npz'}")) == ["miss", "hit", "hit", "hit"]


def test_settings_a_source_does_not_read_stay_out_of_its_key(dirs, tmp_path):
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).normal(size=(30, 3)), y=np.arange(30) % 2)
    source = f"data.source=npz:{tmp_path / 'd.npz'}"
    first, _ = collect(dirs, source, "augment.mode=none")
    for ignored in ("data.target=label", "data.categorical=error", "data.header=false", "data.image_size=[4,4]"):
        again, _ = collect(dirs, source, "augment.mode=none", ignored)
        assert again.cache == "hit" and again.key == first.key, ignored
    changed, _ = collect(dirs, source, "augment.mode=none", "data.layout=channels_first")
    assert changed.cache == "miss"  # npz reads data.layout


def collected(dirs, *overrides):
    """The collect stage alone: its artifact by stage name, as `collect` gives it."""
    config = load_config(None, [*FAST, *overrides])
    return run_stages(config, CacheStore(dirs["cache_dir"]), context=QUIET, stages=[CollectStage()])[1]


def test_every_split_names_its_samples_by_their_row_in_the_source(dirs):
    from datasets import load_source

    raw = load_source("sklearn:digits")
    results = collected(dirs, "data.train_fraction=0.5", "data.seed=3")
    arrays = results["collect"].artifact.arrays
    for split in ("train", "val", "test"):
        ids = np.asarray(arrays[f"id_{split}"])
        assert ids.dtype == np.int64
        np.testing.assert_array_equal(arrays[f"x_{split}"], raw.x[ids])
        np.testing.assert_array_equal(arrays[f"y_{split}"], raw.y[ids])
    assert len(np.intersect1d(arrays["id_train"], arrays["id_test"])) == len(np.intersect1d(arrays["id_val"], arrays["id_test"])) == 0
    # Another split of the same source: its ids say which test samples the two share.
    other = collected(dirs, "data.seed=7")
    shared = np.intersect1d(arrays["id_test"], other["collect"].artifact.arrays["id_test"])
    assert 0 < len(shared) < len(arrays["id_test"])


def test_the_official_test_split_is_numbered_after_the_sources_own_rows(dirs, tmp_path):
    mnist_like(tmp_path, "train", 60)
    mnist_like(tmp_path, "t10k", 15, seed=3)
    results = collected(dirs, f"data.source=idx:{tmp_path}", "data.use_official_test=true")
    arrays = results["collect"].artifact.arrays
    np.testing.assert_array_equal(arrays["id_test"], 60 + np.arange(15))
    assert sorted(np.concatenate([arrays["id_train"], arrays["id_val"]]).tolist()) == list(range(60))


def test_k_fold_tests_every_sample_but_a_few_once_in_equal_stratified_folds():
    from datasets.splits import kfold_split

    y = np.repeat(np.arange(3), [50, 31, 22])  # 103 samples: 3 left out of 5 folds of 20
    splits = [kfold_split(y, 5, fold, 0.15, seed=4) for fold in range(5)]
    tests = [test for _, _, test in splits]
    assert [len(test) for test in tests] == [20] * 5
    scored = np.concatenate(tests)
    assert len(np.unique(scored)) == 100  # disjoint
    spare = np.setdiff1d(np.arange(103), scored)
    for train, val, test in splits:
        assert len(np.intersect1d(train, test)) == len(np.intersect1d(val, test)) == len(np.intersect1d(train, val)) == 0
        assert len(train) + len(val) + len(test) == 103 and abs(len(val) - 0.15 * 103) <= 1
        assert set(spare) <= set(train) | set(val)  # the left-out samples train in every fold
    assert len({(len(train), len(val)) for train, val, _ in splits}) == 1  # equal shapes: the folds' trainings fuse
    counts = np.array([np.bincount(y[test], minlength=3) for test in tests])
    assert (counts.max(axis=0) - counts.min(axis=0) <= 1).all()  # stratified
    assert not np.array_equal(kfold_split(y, 5, 0, 0.15, seed=5)[2], tests[0])  # another seed, another partition
    with pytest.raises(ValueError, match=r"data\.val_fraction=0\.6 leaves no training samples"):
        kfold_split(y, 2, 0, 0.6, seed=0)


def test_a_fold_is_collected_keyed_on_the_fold_and_not_on_test_fraction(dirs):
    default = CollectStage().settings(load_config(None, []))
    assert "folds" not in default and "fold" not in default  # keys of runs without folds stay as they were
    fold = lambda *more: load_config(None, ["data.folds=5", *more])
    assert CollectStage().params(fold("data.fold=1")) != CollectStage().params(fold("data.fold=2"))
    assert CollectStage().params(fold("data.test_fraction=0.3")) == CollectStage().params(fold())
    arrays = collected(dirs, "data.folds=5", "data.fold=3")["collect"].artifact.arrays
    assert len(arrays["id_test"]) == 1797 // 5
    assert len(np.intersect1d(arrays["id_train"], arrays["id_test"])) == 0


def test_a_test_file_is_the_test_split_labelled_by_class_name_and_keyed_on_its_content(dirs, tmp_path):
    """USPS-style: a training CSV and a test CSV. The test split is the test file's rows, its
    labels mapped by class name (it lacks class k1 and lists k2 first), validation comes from the
    training file, and editing the test file makes collect miss."""
    write_csv(tmp_path / "train.csv", n=60)
    rows = ["a;b;kind", "2.0;-2.0;k2", "0.1;0.2;k0", "2.2;-1.9;k2", "0.0;0.0;k0"]
    (tmp_path / "test.csv").write_text("\n".join(rows) + "\n")
    source = [f"data.source=csv:{tmp_path / 'train.csv'}", "data.target=kind", f"data.test_source=csv:{tmp_path / 'test.csv'}"]
    first, results = collect(dirs, *source)
    artifact = results["collect"].artifact
    np.testing.assert_array_equal(artifact.arrays["x_test"], np.float32([[2.0, -2.0], [0.1, 0.2], [2.2, -1.9], [0.0, 0.0]]))
    assert artifact.info["class_names"] == ["k0", "k1", "k2"]
    np.testing.assert_array_equal(artifact.arrays["y_test"], [2, 0, 2, 0])
    np.testing.assert_array_equal(artifact.arrays["id_test"], 60 + np.arange(4))
    assert len(artifact.arrays["y_train"]) + len(artifact.arrays["y_val"]) == 60
    assert artifact.info["test_source"] == source[2].split("=", 1)[1]
    assert str(tmp_path / "test.csv") in artifact.info["test_provenance"]["files"]
    assert artifact.info["warnings"] == []  # a test file lacking a class is no problem (warnings fail tests)
    (tmp_path / "test.csv").write_text("\n".join(rows[:-1]) + "\n")
    edited, results = collect(dirs, *source)
    assert edited.cache == "miss" and edited.key != first.key and len(results["collect"].artifact.arrays["y_test"]) == 3
    assert collect(dirs, *source, "data.test_fraction=0.3")[0].cache == "hit"  # a test file leaves test_fraction unread


def test_test_samples_that_are_also_training_samples_are_a_warning(dirs, tmp_path):
    x = np.arange(40.0).reshape(20, 2)
    y = np.arange(20) % 2
    np.savez(tmp_path / "train.npz", x=x, y=y)
    np.savez(tmp_path / "test.npz", x=np.vstack([x[:3], [[100.0, 101.0]]]), y=np.array([0, 1, 0, 1]))
    with pytest.warns(datasets.base.DataWarning, match=r"test\.npz: 3 test samples also appear in npz:.*train\.npz; their scores measure memory, not generalisation"):
        collect(dirs, f"data.source=npz:{tmp_path / 'train.npz'}", f"data.test_source=npz:{tmp_path / 'test.npz'}")


def test_a_run_without_a_test_file_keeps_its_collect_key_free_of_the_option():
    from pipeline.stages.collect import CollectStage

    config = load_config(None, [*FAST])
    assert "test_source" not in CollectStage().settings(config)


def test_an_idx_folder_of_training_files_alone_splits_them_and_has_no_official_test(dirs, tmp_path):
    mnist_like(tmp_path, "train", 60)
    results = collected(dirs, f"data.source=idx:{tmp_path}")
    counts = results["collect"].artifact.info["class_counts"]
    assert sum(map(sum, counts.values())) == 60
    with pytest.raises(StageError, match=r"data\.use_official_test is true but idx:.* has no test split of its own"):
        collected(dirs, f"data.source=idx:{tmp_path}", "data.use_official_test=true")
