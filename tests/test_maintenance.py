"""cache ls / verify / gc policies and explain's answers."""

import json
import os
import time
from pathlib import Path

import pytest

from conftest import FAST, hold_lock, stop
from pipeline.cache import CacheStore
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.explain import explain
from pipeline.maintenance import collect_garbage, parse_age, parse_size, select_for_gc
from pipeline.runner import run_pipeline


def run(dirs, *overrides):
    return run_pipeline(load_config(None, [*FAST, *overrides]), **dirs, progress=False)


def test_explain_names_what_changed(dirs):
    run(dirs)
    store = CacheStore(dirs["cache_dir"])
    lines = explain(load_config(None, [*FAST, "scale.method=minmax", "model.dropout=0.5"]), store)
    assert [line.split()[:2] for line in lines] == [["collect", "hit"], ["augment", "hit"], ["scale", "miss"], ["train", "miss"]]
    assert 'parameter method: "standard" -> "minmax"' in lines[2]
    assert "parameter model.dropout: 0.0 -> 0.5" in lines[3] and "upstream scale is rebuilt first" in lines[3]
    assert all("code" not in line for line in lines)
    assert explain(load_config(None, FAST), store)[3].split()[1] == "hit"


def test_explain_says_a_stage_after_a_miss_may_still_hit(dirs):
    run(dirs)
    lines = explain(load_config(None, [*FAST, "scale.method=minmax"]), CacheStore(dirs["cache_dir"]))
    assert [line.split()[1] for line in lines] == ["hit", "hit", "miss", "maybe"]
    assert "upstream scale is rebuilt first; a hit if its output comes out byte-identical" in lines[3]


def test_explain_compares_with_entries_of_the_same_source_first(dirs):
    run(dirs, "data.source=sklearn:breast_cancer", "augment.mode=none")
    run(dirs, "data.source=sklearn:wine", "augment.mode=none", "data.seed=1")
    lines = explain(load_config(None, [*FAST, "data.source=sklearn:wine", "augment.mode=none", "data.seed=2"]), CacheStore(dirs["cache_dir"]))
    assert lines[0].split()[1] == "miss" and "parameter seed: 1 -> 2" in lines[0] and "source" not in lines[0]


def test_explain_on_an_empty_cache(dirs):
    lines = explain(load_config(None, FAST), CacheStore(dirs["cache_dir"]))
    assert all(line.endswith("nothing cached for this stage yet") for line in lines)


def test_cache_ls_and_gc_through_the_cli(dirs, capsys):
    run(dirs)
    run(dirs, "model.dropout=0.2")
    cache = str(dirs["cache_dir"])
    assert main(["cache", "--cache-dir", cache, "ls"]) == 0
    listing = capsys.readouterr().out
    assert listing.count("train ") == 2 and "5 entries" in listing
    rows = {line.split()[0] + " " + line.split(None, 6)[6] for line in listing.splitlines()[1:6]}
    assert "collect sklearn:digits" in rows and "scale standard per channel" in rows
    assert any(row.startswith("train ") and "model.dropout=0.2" in row for row in rows)
    assert main(["cache", "ls", "--stage", "train", "--cache-dir", cache]) == 0
    only_train = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in only_train[1:3]] == ["train", "train"] and only_train[3].startswith("2 entries")
    assert main(["cache", "--cache-dir", cache, "gc", "--keep-last", "1"]) == 0
    assert "1 entries and 0 checkpoints removed" in capsys.readouterr().out
    assert len(CacheStore(cache).entries()) == 4
    assert main(["cache", "--cache-dir", cache, "gc"]) == 2
    assert "needs --max-size, --older-than or --keep-last" in capsys.readouterr().err


def test_gc_removes_left_over_checkpoints_and_locks_but_not_what_a_process_holds(dirs, capsys):
    run(dirs)
    store = CacheStore(dirs["cache_dir"])
    left = store.checkpoint_path("train", "a" * 64)
    held = store.checkpoint_path("train", "b" * 64)
    for path in (left, held):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 1000)
    stray = store.lock("scale", "c" * 64)  # a lock file of a key that has no entry: left behind
    stray.acquire()
    stray.release()
    # Left over means written a while ago: a minute back, so no file system's clock running a
    # little ahead of this process's makes them look new to `older_than=0`.
    minute_ago = time.time() - 60
    for path in (left, held, Path(stray.lock_file)):
        os.utime(path, (minute_ago, minute_ago))
    assert main(["cache", "ls", "--cache-dir", str(dirs["cache_dir"])]) == 0
    listing = capsys.readouterr().out
    assert "2 checkpoints" in listing and "left by a training that did not finish" in listing
    # Another process holds one checkpoint's lock, as a training would (a lock held by this
    # process could pass unseen where locks are per process, as POSIX record locks are).
    holder = hold_lock(store.lock("train", "b" * 64).lock_file)
    try:
        report = collect_garbage(store, older_than=0)
    finally:
        stop(holder)
    assert [(item.kind, item.key) for item in report.busy] == [("checkpoint", "b" * 64)]
    assert sorted(item.kind for item in report.removed) == ["checkpoint", "entry", "entry", "entry", "entry"]
    assert not left.exists() and held.exists()
    assert report.locks_removed == 6  # the four removed entries', the removed checkpoint's, the stray one; not the held one
    assert [p.name for p in store.lock_files()] == ["b" * 64 + ".lock"]


def test_gc_by_age_removes_the_lock_of_what_it_removed_though_its_own_locking_made_it_new(dirs):
    """gc takes each key's lock before removing what it guards; that creates a missing lock file
    (and filelock 3.x truncates an existing one), so the file is newer than `older_than` by then.
    It guarded only what gc removed, so it goes too; an unrelated new lock file stays."""
    store = CacheStore(dirs["cache_dir"])
    checkpoint = store.checkpoint_path("train", "a" * 64)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.write_bytes(b"x" * 1000)
    hour_ago = time.time() - 3600
    os.utime(checkpoint, (hour_ago, hour_ago))
    fresh = store.lock("train", "f" * 64)  # a process is about to look this key up
    fresh.acquire()
    fresh.release()
    report = collect_garbage(store, older_than=60)
    assert [item.key for item in report.removed] == ["a" * 64] and report.locks_removed == 1
    assert [p.name for p in store.lock_files()] == ["f" * 64 + ".lock"]


def test_gc_by_age_and_size_removes_least_recently_used_first(dirs):
    run(dirs)
    store = CacheStore(dirs["cache_dir"])
    old = next(e for e in store.entries() if e.stage == "collect")
    past = time.time() - 40 * 86400
    meta = json.loads((old.path / "meta.json").read_text())
    (old.path / "meta.json").write_text(json.dumps({**meta, "created": past}))
    (old.path / ".last_used").touch()
    os.utime(old.path / ".last_used", (past, past))
    entries = store.entries()
    assert entries[0].stage == "collect"
    assert [e.stage for e in select_for_gc(entries, None, parse_age("30d"), None, time.time())] == ["collect"]
    total = sum(e.bytes for e in entries)
    by_size = select_for_gc(entries, total - 1, None, None, time.time())
    assert [e.stage for e in by_size] == ["collect"]
    report = collect_garbage(store, max_size=0)
    assert len(report.removed) == 4 and report.busy == [] and store.entries() == []


@pytest.mark.parametrize("text, expected", [("500MB", 500 * 1024**2), ("2GB", 2 * 1024**3), ("1.5G", int(1.5 * 1024**3)), ("1024", 1024)])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text, expected", [("30d", 30 * 86400), ("12h", 43200), ("45m", 2700), ("2w", 1209600)])
def test_parse_age(text, expected):
    assert parse_age(text) == expected


@pytest.mark.parametrize("bad", ["lots", "2XB", "-1GB"])
def test_bad_sizes_are_named(bad):
    with pytest.raises(ValueError, match="--max-size"):
        parse_size(bad)


def test_a_cache_dir_that_is_a_file_is_an_error_not_an_empty_cache(tmp_path, capsys):
    (tmp_path / "not-a-folder").write_text("x")
    for command in (["cache", "ls"], ["cache", "verify"], ["cache", "gc", "--keep-last", "1"], ["run", "train.device=cpu", "--runs-dir", str(tmp_path)]):
        assert main([*command, "--cache-dir", str(tmp_path / "not-a-folder")]) == 2
        assert "is a file, not a folder" in capsys.readouterr().err


@pytest.mark.parametrize(
    "policy, message",
    [({}, r"needs --max-size, --older-than or --keep-last"), ({"keep_last": -1}, r"--keep-last must be >= 0, got -1"), ({"max_size": "2XB"}, r"2XB")],
)
def test_gc_checks_its_policies_itself_before_removing_anything(tmp_path, policy, message):
    store = CacheStore(tmp_path / "c")
    with pytest.raises(ValueError, match=message):
        collect_garbage(store, **policy)
    assert collect_garbage(store, max_size="1GB", older_than="30d").removed == []


def test_gc_keep_last_counts_checkpoints_apart_from_entries(dirs):
    """`--keep-last 0` removed every entry and left every checkpoint; now each kind keeps its own
    N most recent per stage."""
    run(dirs)
    store = CacheStore(dirs["cache_dir"])
    old, new = store.checkpoint_path("train", "a" * 64), store.checkpoint_path("train", "b" * 64)
    for age, path in ((120, old), (60, new)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 1000)
        os.utime(path, (time.time() - age, time.time() - age))
    one = collect_garbage(store, keep_last=1)
    assert [item.key for item in one.removed if item.kind == "checkpoint"] == ["a" * 64] and new.exists()
    assert sorted(item.kind for item in one.removed) == ["checkpoint"]  # one entry per stage: each stays
    none = collect_garbage(store, keep_last=0)
    assert sorted(item.kind for item in none.removed) == ["checkpoint", "entry", "entry", "entry", "entry"] and not new.exists()
