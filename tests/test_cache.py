import hashlib
import json
import logging

import numpy as np
import pytest

import pipeline.cache
from pipeline.cache import IN_MEMORY_BYTES, META_FILE, Artifact, CacheStore
from pipeline.lookup import LookupCoded, shape_of

KEY = "f" * 64


@pytest.fixture
def store(tmp_path):
    return CacheStore(tmp_path)


def saved(store):
    artifact = Artifact({"x": np.arange(12, dtype=np.float32).reshape(3, 4), "y": np.array([0, 1, 1])}, {"n": 3})
    return store.save("scale", KEY, artifact, {"params": {"method": "standard"}})


def test_round_trip_is_identical_and_read_only(store):
    written = saved(store)
    loaded = store.load("scale", KEY)
    assert loaded.sha256 == written.sha256
    assert not isinstance(loaded.artifact.arrays["x"], np.memmap)  # small: read into memory once
    assert not loaded.artifact.arrays["x"].flags.writeable
    np.testing.assert_array_equal(loaded.artifact.arrays["x"], written.artifact.arrays["x"])
    assert loaded.artifact.info == {"n": 3}
    assert loaded.meta["params"] == {"method": "standard"}


def test_a_large_array_is_memory_mapped_and_a_small_one_read_into_memory(store):
    large = np.arange(IN_MEMORY_BYTES // 8 + 1, dtype=np.float64)  # one element over the limit, with its header
    small = np.arange(IN_MEMORY_BYTES // 8 - 100, dtype=np.float64)  # within it, header included
    store.save("scale", KEY, Artifact({"large": large, "small": small}), {})
    arrays = store.load("scale", KEY).artifact.arrays
    assert isinstance(arrays["large"], np.memmap) and not isinstance(arrays["small"], np.memmap)
    for name, expected in (("large", large), ("small", small)):
        assert not arrays[name].flags.writeable
        np.testing.assert_array_equal(arrays[name], expected)


def test_missing_entry_is_a_miss(store):
    assert store.load("scale", KEY) is None


def test_half_written_temp_folder_is_never_read(store, tmp_path):
    # A writer killed before its rename leaves only a temp folder beside the target.
    temp = tmp_path / "scale" / f".tmp-{KEY}-dead"
    temp.mkdir(parents=True)
    np.save(temp / "x.npy", np.zeros(3))
    assert store.load("scale", KEY) is None


def _flip_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path):
    path.write_bytes(path.read_bytes()[:-5])


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda entry: _flip_byte(entry / "x.npy"), "checksum"),
        (lambda entry: _truncate(entry / "x.npy"), "bytes"),
        (lambda entry: (entry / "y.npy").unlink(), "y.npy is missing"),
        (lambda entry: (entry / META_FILE).write_text("{not json"), "unreadable"),
        (lambda entry: (entry / META_FILE).unlink(), "missing"),
    ],
)
def test_damaged_entry_is_a_logged_miss_and_can_be_rebuilt(store, caplog, damage, reason):
    written = saved(store)
    damage(store.entry_dir("scale", KEY))
    with caplog.at_level(logging.WARNING, logger="pipeline.cache"):
        assert store.load("scale", KEY) is None
    assert reason in caplog.text and KEY[:12] in caplog.text
    rebuilt = saved(store)
    assert store.load("scale", KEY).sha256 == rebuilt.sha256 == written.sha256


@pytest.mark.parametrize("elements", [4, IN_MEMORY_BYTES // 8 + 1], ids=["read into memory", "memory-mapped"])
def test_a_damaged_or_malformed_file_of_either_size_is_a_corrupt_entry(store, caplog, elements):
    store.save("scale", KEY, Artifact({"x": np.zeros(elements)}), {})
    entry = store.entry_dir("scale", KEY)
    _flip_byte(entry / "x.npy")
    with caplog.at_level(logging.WARNING, logger="pipeline.cache"):
        assert store.load("scale", KEY) is None
    assert "x.npy does not match its SHA-256 checksum" in caplog.text
    # Bytes that match a manifest rewritten for them, but are no .npy file: a header numpy refuses.
    garbage = b"not an array" * (elements * 8 // 12 + 1)  # as large as the array was
    (entry / "x.npy").write_bytes(garbage)
    meta = json.loads((entry / META_FILE).read_text())
    meta["files"]["x.npy"] = {"bytes": len(garbage), "sha256": hashlib.sha256(garbage).hexdigest()}
    meta[pipeline.cache.MANIFEST_DIGEST] = pipeline.cache.manifest_digest(meta)
    (entry / META_FILE).write_text(json.dumps(meta))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pipeline.cache"):
        assert store.load("scale", KEY) is None
    assert "x.npy is not a valid .npy file" in caplog.text


def test_failed_write_leaves_previous_entry_and_no_temp_folder(store, tmp_path, monkeypatch):
    written = saved(store)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pipeline.cache, "write_array", disk_full)
    with pytest.raises(OSError):
        saved(store)
    assert [p.name for p in (tmp_path / "scale").iterdir() if p.name.startswith(".tmp-")] == []
    assert store.load("scale", KEY).sha256 == written.sha256


def test_manifest_records_checksums_and_sizes(store):
    saved(store)
    meta = json.loads((store.entry_dir("scale", KEY) / META_FILE).read_text())
    assert set(meta["files"]) == {"x.npy", "y.npy"}
    for entry in meta["files"].values():
        assert len(entry["sha256"]) == 64 and entry["bytes"] > 0


@pytest.mark.parametrize(
    "array",
    [np.arange(12, dtype=np.float32).reshape(3, 4), np.asfortranarray(np.arange(6.0).reshape(2, 3)), np.array(7, dtype=np.int64), np.zeros((0, 5), np.uint8), np.array(["a", "bc"])],
)
def test_an_array_is_written_as_numpy_saves_it_and_hashed_as_the_file_reads(tmp_path, array):
    from datasets.base import file_sha256

    line = pipeline.cache.write_array(tmp_path / "a.npy", array)
    np.save(tmp_path / "b.npy", np.asarray(array, order="C"))
    assert (tmp_path / "a.npy").read_bytes() == (tmp_path / "b.npy").read_bytes()
    assert line == {"sha256": file_sha256(tmp_path / "a.npy"), "bytes": (tmp_path / "a.npy").stat().st_size}
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), array)


def coded_artifact():
    codes = np.array([[[0, 255], [7, 7]], [[1, 2], [3, 4]], [[9, 9], [0, 0]]], dtype=np.uint8)
    table = (np.arange(256, dtype=np.float32)[:, None] * np.array([1, -1, 0.5, 2], dtype=np.float32)).reshape(256, 2, 2)  # one column per feature
    return Artifact({"x_train": LookupCoded(codes, table), "y_train": np.array([0, 1, 1])}, {"n": 3}), codes, table


def test_a_lookup_coded_array_is_stored_as_codes_and_table_and_read_decoded(store):
    artifact, codes, table = coded_artifact()
    written = store.save("scale", KEY, artifact, {})
    folder = store.entry_dir("scale", KEY)
    assert {p.name for p in folder.glob("*.npy")} == {"x_train.codes.npy", "x_train.table.npy", "y_train.npy"}
    assert json.loads((folder / META_FILE).read_text())["lookup"] == ["x_train"]
    expected = table.reshape(256, 4)[codes.reshape(3, -1), np.arange(4)].reshape(codes.shape)
    for cached in (written, store.load("scale", KEY)):
        arrays = cached.artifact.arrays
        assert shape_of(arrays, "x_train") == (3, 2, 2) and "x_train" not in arrays._decoded  # the shape, without decoding
        assert arrays["x_train"].dtype == np.float32
        np.testing.assert_array_equal(arrays["x_train"], expected)
        assert set(arrays) == {"x_train", "y_train"}
    assert store.load("scale", KEY).sha256 == written.sha256


def _rewrite_manifest(folder, change):
    meta = json.loads((folder / META_FILE).read_text())
    change(meta)
    meta[pipeline.cache.MANIFEST_DIGEST] = pipeline.cache.manifest_digest(meta)
    (folder / META_FILE).write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda meta: meta.update(lookup=["x_val"]), "lacks its x_val.codes.npy"),
        (lambda meta: meta.update(lookup="x_train"), "not a list of array names"),
    ],
)
def test_a_manifest_whose_lookup_list_does_not_fit_its_files_is_a_corrupt_entry(store, caplog, change, reason):
    artifact, _, _ = coded_artifact()
    store.save("scale", KEY, artifact, {})
    _rewrite_manifest(store.entry_dir("scale", KEY), change)
    with caplog.at_level(logging.WARNING):
        assert store.load("scale", KEY) is None
    assert reason in caplog.text


def test_a_table_of_the_wrong_shape_is_a_corrupt_entry(store, caplog):
    artifact, codes, table = coded_artifact()
    store.save("scale", KEY, artifact, {})
    folder = store.entry_dir("scale", KEY)
    _rewrite_manifest(folder, lambda meta: meta["files"].update({"x_train.table.npy": pipeline.cache.write_array(folder / "x_train.table.npy", table[:, :, :1].repeat(3, axis=2))}))
    with caplog.at_level(logging.WARNING):
        assert store.load("scale", KEY) is None
    assert "lookup-coded array 'x_train' is malformed" in caplog.text


def test_a_forked_child_writes_entries_after_its_parent_has(tmp_path):
    import multiprocessing

    pipeline.cache.write_array(tmp_path / "parent.npy", np.arange(5))  # the parent's hashing thread now exists
    child = multiprocessing.get_context("fork").Process(target=pipeline.cache.write_array, args=(tmp_path / "child.npy", np.arange(7)))
    child.start()
    child.join(timeout=60)
    hung = child.is_alive()
    child.kill()
    assert not hung and child.exitcode == 0
    np.testing.assert_array_equal(np.load(tmp_path / "child.npy"), np.arange(7))
