import json
import logging

import numpy as np
import pytest

from pipeline.cache import META_FILE, Artifact, CacheStore

KEY = "f" * 64


@pytest.fixture
def store(tmp_path):
    return CacheStore(tmp_path)


def saved(store):
    artifact = Artifact({"x": np.arange(12, dtype=np.float32).reshape(3, 4), "y": np.array([0, 1, 1])}, {"n": 3})
    return store.save("scale", KEY, artifact, {"params": {"method": "standard"}})


def test_round_trip_is_memory_mapped_and_identical(store):
    written = saved(store)
    loaded = store.load("scale", KEY)
    assert loaded.sha256 == written.sha256
    assert isinstance(loaded.artifact.arrays["x"], np.memmap)
    np.testing.assert_array_equal(loaded.artifact.arrays["x"], written.artifact.arrays["x"])
    assert loaded.artifact.info == {"n": 3}
    assert loaded.meta["params"] == {"method": "standard"}


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


def test_failed_write_leaves_previous_entry_and_no_temp_folder(store, tmp_path, monkeypatch):
    written = saved(store)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "save", disk_full)
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
