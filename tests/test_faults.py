"""Faults injected on purpose, and bad input tried on purpose: nothing cached is lost, nothing
half-written is read, and every bad input is a clear message with exit status 2."""

import errno
import json
import os
import re
import signal
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from filelock import Timeout

import datasets.base
from datasets import DataWarning
import pipeline.cache
import pipeline.stages.train
from conftest import FAST, cli, hold_lock, stop
from pipeline.cache import CacheStore
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.maintenance import collect_garbage, verify
from pipeline.runner import StageError, plan_stages, run_pipeline

KEY = re.compile(r"^[0-9a-f]{64}$")


def entries(cache_dir, stage):
    folder = Path(cache_dir) / stage
    return sorted(p.name for p in folder.iterdir() if KEY.match(p.name)) if folder.exists() else []


def statuses(result):
    return {outcome.name: outcome.cache for outcome in result.stages}


def run(dirs, *overrides):
    return run_pipeline(load_config(None, [*FAST, *overrides]), **dirs, progress=False)


@pytest.mark.slow
def test_sigkill_while_writing_an_entry_leaves_no_entry_and_the_next_run_rebuilds(tmp_path):
    args = ["run", *FAST, "--quiet", "--cache-dir", "c"]
    killed = cli(*args, cwd=tmp_path, fault="kill-during-write=scale")
    assert killed.returncode == -signal.SIGKILL
    assert entries(tmp_path / "c", "augment") and not entries(tmp_path / "c", "scale")
    (orphan,) = (tmp_path / "c" / "scale").glob(".tmp-*")
    assert (orphan / "x_train.codes.npy").exists() and not (orphan / "meta.json").exists()

    again = cli(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert len(entries(tmp_path / "c", "scale")) == 1
    report = verify(CacheStore(tmp_path / "c"))
    assert report.corrupt == [] and report.temp_removed == [f"scale/{orphan.name}"]


@pytest.mark.slow
def test_a_lock_left_by_a_killed_process_does_not_block(dirs):
    collect_key = plan_stages(load_config(None, FAST))[0].keyed({}).key
    store = CacheStore(dirs["cache_dir"])
    holder = hold_lock(store.lock("collect", collect_key).lock_file)
    try:
        with pytest.raises(Timeout):  # the lock is real while its holder lives
            store.lock("collect", collect_key).acquire(timeout=0)
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    finally:
        stop(holder)
    started = time.perf_counter()
    result = run(dirs)
    assert statuses(result)["collect"] == "miss" and time.perf_counter() - started < 60


@pytest.mark.slow
def test_gc_and_verify_skip_an_entry_another_process_holds(dirs):
    result = run(dirs)
    store = CacheStore(dirs["cache_dir"])
    train_key = next(o.key for o in result.stages if o.name == "train")
    holder = hold_lock(store.lock("train", train_key).lock_file)
    try:
        report = collect_garbage(store, keep_last=0)
        removed, busy = report.removed, report.busy
        assert [e.stage for e in busy] == ["train"]
        assert sorted(e.stage for e in removed) == ["augment", "collect", "scale"]
        assert entries(dirs["cache_dir"], "train") == [train_key]
        assert verify(store).skipped_busy == [f"train/{train_key[:12]}"]
    finally:
        stop(holder)


def test_disk_full_is_a_clear_error_and_earlier_entries_stay(dirs, monkeypatch, capsys):
    real_write = pipeline.cache.write_array

    def full_disk(path, array):
        if f"{os.sep}scale{os.sep}" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device")  # as a failed write says it: no file named
        return real_write(path, array)

    monkeypatch.setattr(pipeline.cache, "write_array", full_disk)
    status = main(["run", *FAST, "--quiet", "--cache-dir", str(dirs["cache_dir"]), "--runs-dir", str(dirs["runs_dir"])])
    assert status == 1
    assert re.search(r"No space left on device \(.*scale[/\\]\.tmp-[0-9a-f]{64}-[0-9a-f]{32}[/\\]x_train\.codes\.npy\)", capsys.readouterr().err)
    assert entries(dirs["cache_dir"], "collect") and entries(dirs["cache_dir"], "augment")
    assert not entries(dirs["cache_dir"], "scale")
    assert not list((dirs["cache_dir"] / "scale").glob(".tmp-*"))
    assert not dirs["runs_dir"].exists()
    monkeypatch.undo()
    assert statuses(run(dirs)) == {"collect": "hit", "augment": "hit", "scale": "miss", "train": "miss"}


def full_disk_for(monkeypatch, names):
    """Make writing a text file whose temporary name starts with one of `names` fail as on a full disk."""
    real_write = Path.write_text

    def write_text(self, *args, **kwargs):
        if self.name.startswith(tuple(f".{name}." for name in names)):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)


def test_a_full_disk_while_the_run_record_is_written_names_it_and_leaves_no_half_run(dirs, monkeypatch, capsys):
    full_disk_for(monkeypatch, ["run.json"])
    status = main(["run", *FAST, "--quiet", "--cache-dir", str(dirs["cache_dir"]), "--runs-dir", str(dirs["runs_dir"])])
    assert status == 1
    assert re.search(r"No space left on device \(.*[/\\]run\.json\)", capsys.readouterr().err)
    assert not list(dirs["runs_dir"].iterdir())
    monkeypatch.undo()
    assert set(statuses(run(dirs)).values()) == {"hit"}


def test_a_full_disk_while_a_report_is_rendered_names_the_file_and_keeps_the_last_report(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "small.yaml").write_text(WINE_ABLATION)
    assert main(["ablate", "--config", "small.yaml", "--cache-dir", "c", "--out", "out", "--quiet"]) == 0
    before = {name: (tmp_path / "out" / name).read_text() for name in ("report.md", "summary.json", "runs.csv")}
    full_disk_for(monkeypatch, ["report.md"])
    assert main(["report", "out"]) == 1
    assert re.search(r"No space left on device \(.*out[/\\]report\.md\)", capsys.readouterr().err)
    assert {name: (tmp_path / "out" / name).read_text() for name in before} == before
    assert not list((tmp_path / "out").glob(".*.tmp"))


@pytest.fixture
def read_only_mount(monkeypatch):
    """Make writes under a folder fail as on a read-only mount (EROFS), which a chmod cannot do
    for root: opening for writing, creating, renaming, removing, stamping a time."""
    roots = []

    def under(path):
        path = os.path.abspath(os.fsdecode(path))
        return any(path == root or path.startswith(root + os.sep) for root in roots)

    def refusing(function, writes=lambda *args, **kwargs: True):
        def guarded(path, *args, **kwargs):
            if under(path) and writes(*args, **kwargs):
                if function is os.mkdir and os.path.exists(path):
                    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fsdecode(path))  # as the kernel answers
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))
            return function(path, *args, **kwargs)
        return guarded

    import builtins

    monkeypatch.setattr(os, "open", refusing(os.open, lambda flags, *a, **k: flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)))
    monkeypatch.setattr(builtins, "open", refusing(builtins.open, lambda mode="r", *a, **k: any(c in mode for c in "wax+")))
    for name in ("mkdir", "utime", "replace", "rename", "remove", "unlink", "rmdir"):
        monkeypatch.setattr(os, name, refusing(getattr(os, name)))
    return lambda folder: roots.append(os.path.abspath(folder))


def test_a_fully_cached_run_works_from_a_read_only_cache_and_says_it_kept_no_stamps(dirs, read_only_mount, capsys, caplog):
    args = ["run", *FAST, "--quiet", "--cache-dir", str(dirs["cache_dir"]), "--runs-dir", str(dirs["runs_dir"])]
    assert main(args) == 0
    first = capsys.readouterr().out
    before = sorted((p, p.stat().st_mtime_ns) for p in dirs["cache_dir"].rglob("*"))
    read_only_mount(dirs["cache_dir"])
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.split("record")[0] == first.split("record")[0]  # the same accuracy and loss, read from the cache
    assert caplog.text.count("cannot be written") == 1 and "without updating their last-used stamps" in caplog.text
    assert sorted((p, p.stat().st_mtime_ns) for p in dirs["cache_dir"].rglob("*")) == before
    assert main([*args, "train.epochs=1"]) == 1  # a miss cannot be built there
    err = capsys.readouterr().err
    assert "the cache cannot be written (Read-only file system) and holds no train entry" in err and str(dirs["cache_dir"]) in err


WINE_ABLATION = (
    "data: {source: 'sklearn:wine'}\naugment: {mode: none}\nmodel: {hidden: [8]}\ntrain: {epochs: 2, device: cpu}\n"
    "ablation:\n  seeds: [0, 1]\n  factors:\n    model.dropout: {side: model, values: [0.0, 0.2]}\n"
)


def test_a_fully_cached_ablation_works_from_a_read_only_cache(tmp_path, read_only_mount, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "small.yaml").write_text(WINE_ABLATION)
    args = ["ablate", "--config", "small.yaml", "--cache-dir", "c", "--quiet"]
    assert main([*args, "--out", "first"]) == 0
    read_only_mount(tmp_path / "c")
    assert main([*args, "--out", "again"]) == 0
    first, again = (json.loads((tmp_path / out / "summary.json").read_text()) for out in ("first", "again"))
    assert again["effects"] == first["effects"]
    assert again["stages"]["train"] == {"hit": 4, "built": 0}
    assert caplog.text.count("cannot be written") == 1


def test_cache_gc_keep_last_0_before_and_after_an_ablations_trainings_loses_nothing(tmp_path, monkeypatch, caplog):
    import pipeline.ablation.execute as execute

    monkeypatch.chdir(tmp_path)
    (tmp_path / "small.yaml").write_text(WINE_ABLATION)
    store = CacheStore(tmp_path / "c")
    real_execute = execute.execute

    def execute_between_gcs(*args, **kwargs):
        assert collect_garbage(store, keep_last=0).removed  # the data stages `prepare` built
        results = real_execute(*args, **kwargs)
        assert collect_garbage(store, keep_last=0).removed  # every entry, trainings included
        return results

    monkeypatch.setattr(execute, "execute", execute_between_gcs)
    assert main(["ablate", "--config", "small.yaml", "--cache-dir", "c", "--out", "out", "--quiet"]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (tmp_path / "out" / "report.md").exists() and len(summary["runs"]) == 4
    assert "no longer holds" in caplog.text and "building it again" in caplog.text
    monkeypatch.setattr(execute, "execute", real_execute)
    assert main(["ablate", "--config", "small.yaml", "--cache-dir", "fresh", "--out", "fresh-out", "--quiet"]) == 0
    fresh = json.loads((tmp_path / "fresh-out" / "summary.json").read_text())
    accuracies = lambda found: [{name: m["test_accuracy"] for name, m in b["models"].items()} for b in found["baselines"]]  # noqa: E731
    assert fresh["effects"] == summary["effects"] and accuracies(fresh) == accuracies(summary)


class _RunsCode:
    """A pickle payload: unpickling it would create the file named `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_checkpoint_carrying_a_pickle_payload_is_refused_and_nothing_runs(dirs, tmp_path, capsys):
    import torch

    train_key = run(dirs).record["stages"][-1]["key"]
    store = CacheStore(dirs["cache_dir"])
    store.remove("train", train_key)
    marker = tmp_path / "payload-ran"
    checkpoint = store.checkpoint_path("train", train_key)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": 2, "module": _RunsCode(marker)}, checkpoint)
    status = main(["run", *FAST, "--resume", "--quiet", "--cache-dir", str(dirs["cache_dir"]), "--runs-dir", str(dirs["runs_dir"])])
    assert status == 2
    error = capsys.readouterr().err
    assert f"Checkpoint {checkpoint} is unusable (refused: not a plain checkpoint of tensors and numbers (Unsupported global" in error
    assert "nothing in it was run" in error and "weights_only" not in error  # never torch's advice to unpickle
    assert not marker.exists()
    assert not checkpoint.exists() and len(list(checkpoint.parent.glob(f"{train_key}.unusable-*.pt"))) == 1  # kept aside for a look


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"garbage, not a checkpoint", "refused: not a plain checkpoint of tensors and numbers (Unsupported operand"),
        (b"root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1\n", "cannot be read as a checkpoint (IndexError"),  # a text file (a symlink to /etc/passwd)
        ([1, 2, 3], "format 'list', expected 2"),
        ({"format": 2, "module": {"no.such.layer": 1}}, "it does not fit this training"),
    ],
)
def test_an_unusable_checkpoint_is_set_aside_and_the_next_run_starts_over(dirs, capsys, content, reason):
    import torch

    train_key = run(dirs).record["stages"][-1]["key"]
    store = CacheStore(dirs["cache_dir"])
    store.remove("train", train_key)
    checkpoint = store.checkpoint_path("train", train_key)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        checkpoint.write_bytes(content)
    else:
        torch.save(content, checkpoint)
    args = ["run", *FAST, "--resume", "--quiet", "--cache-dir", str(dirs["cache_dir"]), "--runs-dir", str(dirs["runs_dir"])]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert f"Checkpoint {checkpoint} is unusable ({reason}" in error and "nothing was trained" in error
    assert not checkpoint.exists() and list(checkpoint.parent.glob(f"{train_key}.unusable-*.pt"))
    assert main(args) == 0  # asked again: it starts over


def test_a_full_disk_while_writing_a_checkpoint_names_the_file_and_exits_1(dirs, monkeypatch, capsys):
    import torch

    def full(state, path, *args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:626] . PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(torch, "save", full)
    status = main(["run", *FAST, "train.checkpoint_every=0", "--quiet", "--cache-dir", str(dirs["cache_dir"]), "--runs-dir", str(dirs["runs_dir"])])
    assert status == 1
    error = capsys.readouterr().err
    assert "cannot write the checkpoint" in error and ".checkpoints" in error and "entries cached before the failure are intact" in error
    assert entries(dirs["cache_dir"], "scale") and not entries(dirs["cache_dir"], "train")


def test_a_failing_stage_keeps_everything_before_it(dirs, monkeypatch):
    def broken(self, inputs, config, context):
        raise ValueError("simulated failure")

    monkeypatch.setattr(pipeline.stages.train.TrainStage, "run", broken)
    with pytest.raises(StageError, match="stage 'train' failed: simulated failure"):
        run(dirs)
    monkeypatch.undo()
    assert statuses(run(dirs)) == {"collect": "hit", "augment": "hit", "scale": "hit", "train": "miss"}


@pytest.mark.parametrize(
    "damage",
    ["flip", "truncate", "missing", "garbage meta"],
)
def test_each_damaged_entry_is_rebuilt_and_earlier_stages_reused(dirs, caplog, damage):
    first = run(dirs)
    key = next(o.key for o in first.stages if o.name == "augment")
    folder = CacheStore(dirs["cache_dir"]).entry_dir("augment", key)
    target = folder / "x_train.npy"
    if damage == "flip":
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0x01
        target.write_bytes(bytes(data))
    elif damage == "truncate":
        target.write_bytes(target.read_bytes()[:100])
    elif damage == "missing":
        target.unlink()
    else:
        (folder / "meta.json").write_text("{{{")
    second = run(dirs)
    assert f"augment/{key[:12]}" in caplog.text
    assert statuses(second) == {"collect": "hit", "augment": "miss", "scale": "hit", "train": "hit"}


# --- bad input: a clear message, exit status 2, nothing cached and no run record ------------------


def write_npz(path, x, y):
    np.savez(path, x=x, y=y)
    return f"data.source=npz:{path}"


def write_csv(path, text):
    path.write_text(text)
    return [f"data.source=csv:{path}", "data.target=label"]


def write_images(root):
    from PIL import Image

    for label, size in (("a", (4, 4)), ("b", (5, 5))):
        (root / label).mkdir(parents=True)
        Image.fromarray(np.zeros(size[::-1], dtype=np.uint8)).save(root / label / "0.png")
    return f"data.source=folder:{root}"


def write_tiffs(root, values):
    """Two class folders of one 32-bit TIFF each, holding `values`."""
    from PIL import Image

    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        Image.fromarray(values).save(root / label / "0.tif")
    return f"data.source=folder:{root}"


LAUGHS = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefg", "bcdefgh"))


TABLE = "a,b,label\n" + "".join(f"{i},{i % 3},{'xy'[i % 2]}\n" for i in range(12))

BAD_INPUT = [
    ("unknown key", lambda d: ["trian.epochs=5"], r"Unknown config key 'trian\.epochs'\. Did you mean 'train\.epochs'\?"),
    ("wrong type", lambda d: ["train.epochs=many"], r"'train\.epochs'.*valid integer"),
    ("out of range", lambda d: ["model.dropout=1.5"], r"'model\.dropout'.*less than 1"),
    ("unknown transform", lambda d: ["augment.recipe=[{name: Twirl}]"], r"Unknown transform 'Twirl'"),
    ("unknown dataset", lambda d: ["data.source=sklearn:mnist"], r"Unknown scikit-learn dataset 'mnist'"),
    ("unknown source kind", lambda d: ["data.source=hdf5:x.h5"], r"Unknown data source kind 'hdf5'"),
    ("unreadable yaml", lambda d: ["--config", str(_write(d / "bad.yaml", "train: [1, 2"))], r"bad\.yaml is not valid YAML"),
    ("NaN", lambda d: [write_npz(d / "a.npz", np.array([[1.0, np.nan]] * 6), np.arange(6) % 2)], r"nan at sample 0, feature 1"),
    ("inf", lambda d: [write_npz(d / "a.npz", np.array([[1.0, np.inf]] * 6), np.arange(6) % 2)], r"inf at sample 0, feature 1"),
    ("empty", lambda d: write_csv(d / "e.csv", "a,label\n"), r"has no rows"),
    ("single class", lambda d: [write_npz(d / "a.npz", np.arange(12.0).reshape(6, 2), np.zeros(6))], r"fewer than two classes"),
    ("single sample", lambda d: [write_npz(d / "a.npz", np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([0, 1]))], r"class '0' has 1 sample"),
    ("labels of the wrong length", lambda d: [write_npz(d / "a.npz", np.ones((6, 2)), np.arange(5) % 2)], r"6 samples but labels of shape \(5,\)"),
    ("non-numeric CSV column", lambda d: write_csv(d / "n.csv", "a,label\n1,x\n2,y\n3x,x\n4,y\n"), r"column 'a' is numeric except at row 2"),
    ("inconsistent image shapes", lambda d: [write_images(d / "imgs")], r"Image .* is 5x5 but .* is 4x4"),
    ("continuous target", lambda d: write_csv(d / "r.csv", "a,label\n" + "".join(f"{i},{i * 0.37 - 2.36:.3f}\n" for i in range(30))),
     r"target 'label' has 30 distinct values among 30 rows .* looks continuous.*this pipeline classifies.*pd\.qcut"),
    ("target position out of range", lambda d: [write_csv(d / "p.csv", "a,label\n1,x\n")[0], "data.target=5"],
     r"data\.target=5 is out of range for 2 columns"),
    ("complex features", lambda d: [write_npz(d / "c.npz", np.ones((6, 2)) * 1j, np.arange(6) % 2)], r"array 'x' holds complex numbers"),
    ("a CSV named .npz", lambda d: ["data.source=npz:" + str(_write(d / "t.npz", "a,label\n1,x\n"))], r"is not a NumPy archive .*csv:"),
    ("object arrays in an npz", lambda d: [write_npz(d / "o.npz", np.array([[1, "a"]] * 6, dtype=object), np.arange(6) % 2)],
     r"array 'x' holds Python objects.*never unpickles"),
    ("a boolean as a number", lambda d: ["train.epochs=true"], r"'train\.epochs': True is a boolean, not a number"),
    ("an infinite learning rate", lambda d: ["optim.lr=inf"], r"'optim\.lr': inf is not a finite number"),
    ("NaN in a range", lambda d: ["scale.feature_range=[nan, 1]"], r"'scale\.feature_range': nan is not a finite number"),
    ("a section twice in YAML", lambda d: ["--config", str(_write(d / "twice.yaml", "train: {epochs: 2}\nmodel: {}\ntrain: {epochs: 3}\n"))],
     r"twice\.yaml is not valid YAML.*duplicate key 'train'"),
    ("a key twice in JSON", lambda d: ["--config", str(_write(d / "twice.json", '{"train": {"epochs": 2, "epochs": 3}}'))],
     r"twice\.json is not valid JSON: duplicate key 'epochs'"),
    ("a test file with other columns", lambda d: [*write_csv(d / "tr.csv", TABLE), "data.test_source=csv:" + str(_write(d / "te.csv", TABLE.replace("a,b,", "a,c,")))],
     r"te\.csv: feature 1 is 'c' where csv:.*tr\.csv has 'b'; the test file needs the training file's columns in their order"),
    ("a test file with a category training never has", lambda d: [*write_csv(d / "tr.csv", TABLE), "data.test_source=csv:" + str(_write(d / "te.csv", TABLE.replace(",x\n", ",z\n", 1)))],
     r"te\.csv: classes 'z' are not among csv:.*tr\.csv's classes"),
    ("a test file of fractions for integer samples", lambda d: [write_npz(d / "tr.npz", np.arange(12).reshape(6, 2), np.arange(6) % 2), "data.test_source=" + write_npz(d / "te.npz", np.full((4, 2), 0.5), np.arange(4) % 2).split("=", 1)[1]],
     r"te\.npz: samples of dtype float64 do not fit npz:.*tr\.npz's int64 without changing their values"),
    ("a test file of another shape", lambda d: [write_npz(d / "tr.npz", np.ones((6, 2)), np.arange(6) % 2), "data.test_source=" + write_npz(d / "te.npz", np.ones((4, 3)), np.arange(4) % 2).split("=", 1)[1]],
     r"te\.npz: test samples have shape \(3,\), npz:.*tr\.npz's training samples \(2,\)"),
    ("a test file with NaN", lambda d: [write_npz(d / "tr.npz", np.ones((6, 2)), np.arange(6) % 2), "data.test_source=" + write_npz(d / "te.npz", np.array([[1.0, np.nan]] * 4), np.arange(4) % 2).split("=", 1)[1]],
     r"npz:.*te\.npz has nan at sample 0, feature 1"),
    ("a missing test file", lambda d: ["data.test_source=csv:" + str(d / "absent.csv")], r"absent\.csv"),
    ("a test file and the official test split", lambda d: ["data.test_source=csv:t.csv", "data.use_official_test=true"],
     r"data\.test_source and data\.use_official_test exclude each other"),
    ("a test file and folds", lambda d: ["data.test_source=csv:t.csv", "data.folds=5"], r"data\.folds and data\.test_source exclude each other"),
    ("a test file of an unknown kind", lambda d: ["data.test_source=hdf5:t.h5"], r"'data\.test_source'.*Unknown data source kind 'hdf5'"),
    ("a transform named by a list", lambda d: ["augment.recipe=[{name: [RandomCrop]}]"], r"A transform's 'name' is a string, such as 'RandomCrop'\. Got \['RandomCrop'\]"),
    ("fractions that leave a class too few samples", lambda d: ["data.source=sklearn:wine", "data.val_fraction=0.5", "data.test_fraction=0.49"], r"data\.val_fraction cannot take a stratified share of \d+ samples in 3 classes"),
    ("more folds than samples allow", lambda d: ["data.source=sklearn:wine", "data.folds=1000"], r"data\.folds=1000 splits 178 samples into folds of 0; each test fold needs at least 2, so use at most 89 folds"),
    ("a negative seed", lambda d: ["train.seed=-1"], r"'train\.seed': Input should be greater than or equal to 0"),
    ("a seed beyond 32 bits", lambda d: ["data.seed=4294967296"], r"'data\.seed': Input should be less than or equal to 4294967295"),
    ("batch norm on batches of one", lambda d: ["train.batch_size=1"], r"train\.batch_size=1 with model\.batch_norm=true: batch norm cannot train on one sample per batch"),
    ("a number beyond float32 in a CSV", lambda d: write_csv(d / "f.csv", "a,label\n1e39,x\n2,y\n3,x\n4,y\n"), r"column 'a' holds a number beyond float32's range \(about 3\.4e38\) at row 0 \(value 1e\+39\)"),
    ("a folder named as a CSV", lambda d: [f"data.source=csv:{_folder(d / 'tables', 'x.txt', '')}"], r"Data file .*tables is a folder; name a file in it"),
    ("list values in a Parquet column", lambda d: [*_parquet_with_lists(d / "l.parquet"), "data.target=label"], r"column 'a' holds ndarrays \(e\.g\. array\(\[0, 1\]\)\), not numbers or categories"),
    ("class folders named alike in two Unicode forms", lambda d: [f"data.source=folder:{_unicode_twins(d / 'imgs')}"], r"class folders 'caf.{1,2}' and 'caf.{1,2}' are one name written in two Unicode forms"),
    ("a UTF-16 CSV without a byte-order mark", lambda d: [f"data.source=csv:{_write_bytes(d / 'u.csv', ('a,label' + chr(10) + '1,x' + chr(10) + '2,y' + chr(10)).encode('utf-16-le'))}", "data.target=label"],
     r"u\.csv looks like UTF-16 or UTF-32 text \(it is full of zero bytes\); save it as UTF-8"),
    ("a config file that is not text", lambda d: ["--config", str(_write_bytes(d / "c.yaml", bytes(range(128, 256))))], r"Config file .*c\.yaml is not UTF-8 text \(byte 0 is 0x80\)"),
    ("a boolean seed", lambda d: ["ablation={factors: {model.dropout: {side: model, values: [0.0, 0.1]}}, seeds: [0, true]}"], r"seeds are integers, not booleans"),
    ("a factor value twice", lambda d: ["ablation={factors: {model.dropout: {side: model, values: [none, none]}}}"], r"'none' is listed twice"),
    ("a column named twice", lambda d: write_csv(d / "dup.csv", "a,label,label\n1,x,x\n2,y,y\n"), r"column 'label' appears 2 times in the header"),
    ("infinite labels", lambda d: [write_npz(d / "inf.npz", np.ones((6, 2)), np.array([0.0, 1.0, np.inf, 0.0, 1.0, 0.0]))], r"target 'y' is infinite at sample 2"),
    ("NaN labels", lambda d: [write_npz(d / "nan.npz", np.ones((6, 2)), np.array([0.0, 1.0, np.nan, 0.0, 1.0, 0.0]))], r"target 'y' is missing \(NaN\) at sample 2"),
    ("a value that overflows once scaled", lambda d: [write_npz(d / "big.npz", np.column_stack([np.arange(12.0), [1e300] + [1.0] * 11]), np.arange(12) % 2)],
     r"has 1e\+300 at sample 0, feature 1, beyond float32's range"),
    ("images that read both ways", lambda d: [write_npz(d / "i.npz", np.ones((6, 3, 4, 4)), np.arange(6) % 2)], r"data\.layout=channels_first"),
    # Round three (issue 28)
    ("an unhashable YAML key", lambda d: ["--config", str(_write(d / "key.yaml", "? [a, b]\n: 1\n"))], r"key\.yaml is not valid YAML: a key that is a list names no setting"),
    ("YAML nested 20,000 deep", lambda d: ["--config", str(_write(d / "deep.yaml", "train: " + "[" * 20000 + "]" * 20000))], r"deep\.yaml nests lists or mappings deeper than Python can read"),
    ("JSON nested 100,000 deep", lambda d: ["--config", str(_write(d / "deep.json", '{"train": ' + "[" * 100000 + "]" * 100000 + "}"))], r"deep\.json nests lists or mappings deeper"),
    ("an override nested 5,000 deep", lambda d: ["train.epochs=" + "[" * 5000 + "]" * 5000], r"Override 'train\.epochs=\[\[.*deeper than Python can read"),
    ("a billion laughs in a file", lambda d: ["--config", str(_write(d / "laughs.yaml", "model:\n  options:\n" + "".join("    " + line + "\n" for line in LAUGHS.splitlines())))],
     r"laughs\.yaml expands to more than 1,000,000 values"),
    ("a billion laughs in an override", lambda d: ["model.options={" + LAUGHS.replace("\n", ", ").rstrip(", ") + "}"], r"Override 'model\.options=.*expands to more than 1,000,000 values"),
    ("an infinite noise level", lambda d: ["augment.recipe=[{name: GaussianNoise, std: .inf}]"], r"recipe\[0\] \(GaussianNoise\): std=inf is not a finite number"),
    ("durations as features", lambda d: [write_npz(d / "td.npz", np.arange(12).astype("timedelta64[s]").reshape(6, 2), np.arange(6) % 2)],
     r"array 'x' holds durations \(timedelta64\[s\]\), not numbers"),
    ("thousands separators in a comma file", lambda d: write_csv(d / "k.csv", "a,label\n" + "".join(f'"{i},{100 + i}",{"xy"[i % 2]}\n' for i in range(1, 9))),
     r"column 'a' holds numbers written with digit groups \(e\.g\. '1,101'\).*data\.decimal=','"),
    ("digit groups split by spaces", lambda d: write_csv(d / "s.csv", "a;label\n" + "".join(f"{i} {100 + i};{'xy'[i % 2]}\n" for i in range(1, 9))),
     r"column 'a' holds numbers written with digit groups \(e\.g\. '1 101'\)"),
    ("a named pipe called x.png in a class folder", lambda d: [_with_fifo(write_images(d / "imgs"), d / "imgs" / "a" / "x.png")],
     r"x\.png is not a regular file \(a named pipe\); an image folder holds image files"),
    ("a 32-bit float TIFF beyond [0, 255]", lambda d: [write_tiffs(d / "f", np.array([[-0.5, 0.0], [300.0, 1.0]], dtype=np.float32))],
     r"a[/\\]0\.tif is a 32-bit float image with values in \[-0\.5, 300\]; float images are read as \[0, 1\] or \[0, 255\]"),
    ("an int32 TIFF with negative pixels", lambda d: [write_tiffs(d / "i", np.array([[-3, 0], [7, 9]], dtype=np.int32))],
     r"a[/\\]0\.tif is a 32-bit integer image with negative pixels \(down to -3\)"),
    ("an npy header declaring a terabyte", lambda d: [_huge_npz(d / "huge.npz")], r"array 'x' declares shape \(1000000000000,\) of float64 \(8,000,000,000,000 bytes\) but holds 64 bytes"),
]


BAD_SOURCES = """
import numpy as np
from datasets import RawData, register_source

@register_source("raises")
def load_raises(argument, options):
    raise KeyError("column_x")

@register_source("dict")
def load_dict(argument, options):
    return {"x": np.ones((10, 2)), "y": np.arange(10) % 2}

@register_source("exits")
def load_exits(argument, options):
    import sys

    sys.exit(0)


@register_source("twice")
def load_twice(argument, options):
    y = np.arange(30) % 3
    return RawData(np.ones((30, 2), dtype="float32") * y[:, None], y, class_names=["a", "a", "b"])

@register_source("beyond")
def load_beyond(argument, options):
    y = np.arange(40) % 3
    return RawData(np.random.default_rng(0).normal(size=(40, 2)).astype("float32") + y[:, None], y, class_names=["a", "b"])
"""


def _parquet_with_lists(path):
    import pandas as pd

    pd.DataFrame({"a": [[i % 4, 1] for i in range(12)], "label": ["x", "y"] * 6}).to_parquet(path)
    return [f"data.source=parquet:{path}"]


def _unicode_twins(root):
    import unicodedata

    from PIL import Image

    for form in ("NFC", "NFD"):
        (root / unicodedata.normalize(form, "café")).mkdir(parents=True)
        Image.new("L", (4, 4)).save(root / unicodedata.normalize(form, "café") / "1.png")
    return root


def _write_bytes(path, data):
    path.write_bytes(data)
    return path


def _with_fifo(source, path):
    """`source` with a named pipe at `path`, which a reader would wait on forever."""
    os.mkfifo(path)
    return source


def _huge_npz(path):
    """An npz whose x.npy header declares 10**12 float64 values over 64 bytes of data."""
    import io

    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000,), }"
    header += " " * (118 - len(header)) + "\n"
    labels = io.BytesIO()
    np.save(labels, np.arange(6) % 2)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + bytes(64))
        archive.writestr("y.npy", labels.getvalue())
    return f"data.source=npz:{path}"


def _write(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize("name, make_args, pattern", BAD_INPUT, ids=[case[0] for case in BAD_INPUT])
def test_bad_input_is_a_clear_error_with_status_2_and_nothing_written(tmp_path, capsys, name, make_args, pattern):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    args = make_args(data_dir)
    status = main(["run", *FAST, *args, "--quiet", "--cache-dir", str(tmp_path / "cache"), "--runs-dir", str(tmp_path / "runs")])
    assert status == 2
    assert re.search(pattern, capsys.readouterr().err)
    cache = tmp_path / "cache"
    assert not [p for p in cache.glob("*/*") if KEY.match(p.name)] if cache.exists() else True
    assert not (tmp_path / "runs").exists()


def _iris_data(rng):
    return "".join(f"{a:.3f},{b:.3f},{label}\n" for (a, b), label in zip(rng.normal(5, 1, (150, 2)), ["Iris-setosa", "Iris-versicolor", "Iris-virginica"] * 50))


@pytest.mark.parametrize(("name", "make"), [
    ("a byte-order mark before a header-less CSV", lambda d, rng: [f"data.source=csv:{_write(d / 'bom.csv', chr(0xFEFF) + ''.join(f'{a:.2f},{b:.2f},{i % 2}' + chr(10) for i, (a, b) in enumerate(rng.normal(size=(150, 2)))))}", "data.target=-1"]),
    ("a header-less CSV with text labels (UCI iris.data)", lambda d, rng: [f"data.source=csv:{_write(d / 'iris.data', _iris_data(rng))}", "data.target=-1"]),
])
def test_header_less_files_keep_every_row(dirs, tmp_path, name, make):
    result = run(dirs, *make(tmp_path, np.random.default_rng(0)), "train.epochs=1")
    counts = result.record["data"]["class_counts"]
    assert sum(sum(split) for split in counts.values()) == 150 and result.record["data"]["feature_names"] == ["0", "1"]


def test_npz_labels_are_stripped_like_a_tables(dirs, tmp_path):

    source = write_npz(tmp_path / "labels.npz", np.random.default_rng(0).normal(size=(40, 2)), np.array(["c0", "c0 ", "c1", " c1"] * 10))
    with pytest.warns(DataWarning, match="stripped spaces around 20 labels"):
        result = run(dirs, source, "train.epochs=1")
    assert result.record["data"]["class_names"] == ["c0", "c1"]
    assert result.record["warnings"] == [f"{tmp_path / 'labels.npz'}: stripped spaces around 20 labels of 'y'"]


SHIFTED_SOURCES = """
import numpy as np
from datasets import RawData, register_source

@register_source("unseen")
def load_unseen(argument, options):
    rng = np.random.default_rng(0)
    y = np.arange(60) % 2
    test_y = np.arange(30) % 3  # class 'c' only in the source's own test split
    return RawData(rng.normal(size=(60, 2)) + y[:, None], y, ["a", "b", "c"], test=(rng.normal(size=(30, 2)), test_y))

@register_source("far")
def load_far(argument, options):
    rng = np.random.default_rng(0)
    y = np.arange(60) % 2
    x = np.column_stack([rng.normal(size=60) + y, np.ones(60)])  # feature 1 constant in training...
    test = np.column_stack([rng.normal(size=20), np.ones(20)])
    test[7, 1] = 3e38  # ...and at float32's limit in one test sample
    return RawData(x, y, ["a", "b"], test=(test, np.arange(20) % 2))
"""


@pytest.fixture
def shifted_sources(tmp_path, monkeypatch):
    """`data.plugins=[shifted_sources]`: sources whose own test split differs from their training data."""
    (tmp_path / "shifted_sources.py").write_text(SHIFTED_SOURCES)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(datasets.base, "SOURCES", dict(datasets.base.SOURCES))
    yield "data.plugins=[shifted_sources]"
    sys.modules.pop("shifted_sources", None)


def test_test_classes_never_seen_in_training_are_warned_about(dirs, shifted_sources):

    with pytest.warns(DataWarning, match=r"the test split holds 10 samples of classes the training split lacks \('c'\); the network never learns them"):
        result = run(dirs, shifted_sources, "data.source=unseen:1", "data.use_official_test=true", "train.epochs=1")
    assert result.record["data"]["class_counts"]["test"] == [10, 10, 10] and result.metrics["test_accuracy"] <= 2 / 3


def test_a_test_value_far_outside_the_training_spread_is_warned_about(dirs, shifted_sources):

    with pytest.warns(DataWarning, match=r"the scaled test split holds 3e\+38 at sample 7, feature 1, more than 10,000 times the training split's spread"):
        result = run(dirs, shifted_sources, "data.source=far:1", "data.use_official_test=true", "train.epochs=1")
    assert any("more than 10,000 times" in message for message in result.record["warnings"])


def test_a_column_of_numbers_beyond_int64_reads_as_numbers(dirs, tmp_path):
    """A CSV column mixing 99999999999999999999999 and small integers parses in full (pandas keeps it
    as objects): it is a numeric column, not a traceback looking for the value that did not parse."""
    rows = "".join(f"{99999999999999999999999 if i == 0 else i},{i % 3},{'xy'[i % 2]}\n" for i in range(30))
    source = write_csv(tmp_path / "big.csv", "a,b,label\n" + rows)
    with pytest.warns(DataWarning, match=r"holds 1\.21e\+22 .* more than 10,000 times the training split's spread"):
        result = run(dirs, *source, "train.epochs=1")
    assert result.record["data"]["feature_names"] == ["a", "b"] and result.record["data"]["sample_shape"] == [2]


def test_augmented_copies_beyond_the_machines_memory_are_refused_before_allocating(dirs, capsys):
    status = main(["run", *FAST, "augment.mode=offline", "augment.copies=1000000000", "--quiet", "--cache-dir", str(dirs["cache_dir"]), "--runs-dir", str(dirs["runs_dir"])])
    assert status == 2
    assert re.search(r"augment\.copies=1000000000 would grow the training split to [\d,]+ samples \([\d,.]+ GiB\) where this machine has", capsys.readouterr().err)
    assert not list(dirs["cache_dir"].glob("augment/*/meta.json")) and not dirs["runs_dir"].exists()


def test_zero_variance_feature_is_scaled_by_one_with_no_nan_downstream(dirs, tmp_path):
    x = np.column_stack([np.full(60, 3.0), np.random.default_rng(0).normal(size=60), np.arange(60) % 2 * 2.0])
    source = write_npz(tmp_path / "const.npz", x, np.arange(60) % 2)
    result = run(dirs, source, "train.epochs=3")
    assert result.record["scaling"]["scaler"]["scale_"][0] == 1.0
    store = CacheStore(dirs["cache_dir"])
    scale_key = next(o.key for o in result.stages if o.name == "scale")
    scaled = store.load("scale", scale_key).artifact.arrays
    assert all(np.isfinite(scaled[f"x_{split}"]).all() for split in ("train", "val", "test"))
    assert np.isfinite(result.metrics["test_loss"])
    assert json.dumps(result.metrics, allow_nan=False)


def test_an_edited_manifest_is_a_corrupt_entry_not_a_reported_result(dirs, capsys):
    first = run(dirs)
    key = first.record["stages"][-1]["key"]
    meta_path = dirs["cache_dir"] / "train" / key / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["info"]["metrics"]["test_accuracy"] = 0.123
    meta_path.write_text(json.dumps(meta))
    assert verify(CacheStore(dirs["cache_dir"])).corrupt == [f"train/{key[:12]}: meta.json does not match its own checksum: edited, or written by an older gainsplit"]
    again = run(dirs)
    assert statuses(again)["train"] == "miss" and again.metrics["test_accuracy"] == first.metrics["test_accuracy"] != 0.123
    (dirs["cache_dir"] / "train" / key / "meta.json").write_text(json.dumps({**meta, "files": ["weights.npy"]}))
    assert main(["cache", "verify", "--cache-dir", str(dirs["cache_dir"])]) == 0
    assert "1 corrupt" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args_of, pattern",
    [
        (lambda d: ["run", "augment.recipe=[{name: Compose}]"], r"Compose cannot be built from \{\}.*missing 1 required positional argument"),
        (lambda d: ["run", "augment.recipe=[{name: RandomCrop, padding: abc}]"], r"RandomCrop cannot be built from \{'padding': 'abc'\}"),
        (lambda d: ["run", "train.device=cuda:99999999999999999999"], r"'train\.device': String should match pattern"),
        (lambda d: ["run", "model.plugins=[broken_plugin]"], r"plugin module 'broken_plugin' failed while importing: SyntaxError"),
        (lambda d: ["report", str(_folder(d / "empty-summary", "summary.json", "{}"))], r"summary\.json is not what an ablation writes: it lacks ablation"),
        (lambda d: ["run", "data.plugins=[bad_sources]", "data.source=raises:1"], r"the plugin's loader bad_sources\.load_raises raised KeyError: 'column_x'"),
        (lambda d: ["run", "data.plugins=[bad_sources]", "data.source=dict:1"], r"dict:1: the loader returned dict, not datasets\.RawData"),
        (lambda d: ["run", "data.plugins=[bad_sources]", "data.source=beyond:1"], r"beyond:1 gives labels from 0 to 2 \(int64\) but names 2 classes \(a, b\)"),
        (lambda d: ["run", "data.plugins=[bad_sources]", "data.source=exits:1"], r"the plugin's loader bad_sources\.load_exits called sys\.exit\(0\)"),
        (lambda d: ["run", "data.plugins=[bad_sources]", "data.source=twice:1"], r"twice:1 names 3 classes but 'a' more than once"),
        (lambda d: ["run", "data.plugins=[exits_on_import]"], r"plugin module 'exits_on_import' called sys\.exit\(0\) while importing"),
        (lambda d: ["run", "model.plugins=[interrupts_on_import]"], r"plugin module 'interrupts_on_import' raised KeyboardInterrupt while importing"),
    ],
)
def test_assorted_inputs_that_used_to_raise_are_messages(tmp_path, monkeypatch, capsys, args_of, pattern):
    (tmp_path / "broken_plugin.py").write_text("def oops(:\n")
    (tmp_path / "bad_sources.py").write_text(BAD_SOURCES)
    (tmp_path / "exits_on_import.py").write_text("import sys\nsys.exit(0)\n")
    (tmp_path / "interrupts_on_import.py").write_text("raise KeyboardInterrupt\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(datasets.base, "SOURCES", dict(datasets.base.SOURCES))  # the plugins' sources are gone after the test
    args = args_of(tmp_path)
    try:
        status = main([*args, *(["--cache-dir", str(tmp_path / "c")] if args[0] == "run" else [])])
    finally:
        for module in ("broken_plugin", "bad_sources", "exits_on_import", "interrupts_on_import"):
            sys.modules.pop(module, None)
    assert status == 2
    assert re.search(pattern, capsys.readouterr().err)
    assert not [p for p in (tmp_path / "c").glob("*/*") if KEY.match(p.name)]  # nothing cached (a lock folder may be there)


def test_a_network_too_large_for_the_device_is_refused_before_anything_is_allocated(dirs, capsys):
    status = main(["run", *FAST, "model.hidden=[1000000000000]", "--quiet", "--cache-dir", str(dirs["cache_dir"]), "--runs-dir", str(dirs["runs_dir"])])
    assert status == 2
    assert re.search(r"the network \([\d,]+ parameters\) needs about [\d,.]+ GiB .* in all; .*model\.hidden", capsys.readouterr().err)
    assert not list(dirs["cache_dir"].glob("train/*/meta.json")) and not dirs["runs_dir"].exists()


def _folder(path, name, text):
    path.mkdir()
    (path / name).write_text(text)
    return path


def test_a_manifest_nested_100000_deep_is_a_corrupt_entry_that_verify_removes_and_the_run_rebuilds(dirs):
    first = run(dirs)
    key = first.record["stages"][-1]["key"]
    (dirs["cache_dir"] / "train" / key / "meta.json").write_text('{"info": ' + "[" * 100000 + "]" * 100000 + "}")
    assert verify(CacheStore(dirs["cache_dir"])).corrupt == [f"train/{key[:12]}: meta.json is nested deeper than a manifest is"]
    again = run(dirs)
    assert statuses(again)["train"] == "miss" and again.metrics["test_accuracy"] == first.metrics["test_accuracy"]


def test_an_entry_whose_arrays_disagree_in_length_is_corrupt_whatever_its_checksums_say(dirs):
    """`y_train` cut to 10 rows, its checksum and the manifest's own recomputed: the lengths still
    give it away, to `cache verify` and to the next run, which rebuilds it."""
    from pipeline.cache import MANIFEST_DIGEST, file_sha256, manifest_digest

    first = run(dirs)
    key = first.record["stages"][0]["key"]
    folder = dirs["cache_dir"] / "collect" / key
    labels = np.load(folder / "y_train.npy")
    np.save(folder / "y_train.npy", labels[:10])
    meta = json.loads((folder / "meta.json").read_text())
    meta["files"]["y_train.npy"] = {"sha256": file_sha256(folder / "y_train.npy"), "bytes": (folder / "y_train.npy").stat().st_size}
    meta[MANIFEST_DIGEST] = manifest_digest(meta)
    (folder / "meta.json").write_text(json.dumps(meta))
    (problem,) = verify(CacheStore(dirs["cache_dir"])).corrupt
    assert problem == f"collect/{key[:12]}: the train arrays disagree in length (id_train {labels.size}, x_train {labels.size}, y_train 10)"
    again = run(dirs)
    assert statuses(again)["collect"] == "miss" and again.metrics["test_accuracy"] == first.metrics["test_accuracy"]


def test_an_image_size_beyond_the_machines_memory_is_refused_before_any_image_is_read(dirs, tmp_path, capsys):
    source = write_images(tmp_path / "images")
    status = main(["run", *FAST, source, "data.image_size=[200000, 200000]", "--quiet", "--cache-dir", str(dirs["cache_dir"]), "--runs-dir", str(dirs["runs_dir"])])
    assert status == 2
    assert re.search(r"data\.image_size=\[200000, 200000\] makes 2 images of up to 111\.8 GiB each, about [\d,]+ GiB read and scaled, where this machine has", capsys.readouterr().err)
    assert not dirs["runs_dir"].exists()


def test_a_summary_edited_to_hold_a_number_where_a_mapping_goes_is_named_not_a_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "small.yaml").write_text(WINE_ABLATION)
    assert main(["ablate", "--config", "small.yaml", "--cache-dir", "c", "--out", "out", "--quiet"]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    summary["sequential"] = 1.5
    (tmp_path / "out" / "summary.json").write_text(json.dumps(summary))
    before = (tmp_path / "out" / "report.md").read_text()
    assert main(["report", "out"]) == 2
    assert re.search(r"out[/\\]summary\.json \(or a run record it lists\) does not hold what an ablation writes \(TypeError: .*\); run the ablation again", capsys.readouterr().err)
    assert (tmp_path / "out" / "report.md").read_text() == before


@pytest.mark.parametrize(
    "recipe, pattern",
    [
        ("[{name: Albumentations, transform: GaussianBlur, args: {blur_limit: -5}}]", r"Albumentations\(transform='GaussianBlur', args=\{'blur_limit': -5\}\) failed on an image of shape \(8, 8, 1\): error: .*"),
        ("[{name: RandomCrop, padding: 100000}]", r"padding=100000 grows a batch of \d+ images to [\d,.]+ GiB, more than this device can allocate"),
    ],
)
def test_a_recipe_that_fails_on_the_images_names_the_transform(dirs, capsys, recipe, pattern):
    pytest.importorskip("albumentations")
    status = main(["run", *FAST, "augment.mode=offline", f"augment.recipe={recipe}", "--quiet", "--cache-dir", str(dirs["cache_dir"]), "--runs-dir", str(dirs["runs_dir"])])
    assert status == 2
    assert re.search(pattern, capsys.readouterr().err)
    assert not list(dirs["cache_dir"].glob("augment/*/meta.json")) and not dirs["runs_dir"].exists()


def test_labels_beyond_int64_and_numbers_float32_merges_read_right(dirs, tmp_path):
    """Integer labels beyond int64 are classes by their text; a column float32 cannot tell apart
    (Unix times) is a warning naming it, two of its values and the distinct counts."""
    rows = "".join(f"{1700000000 + i},{i},{[10**20, 10**20 + 1, 5][i % 3]}\n" for i in range(60))
    source = write_csv(tmp_path / "t.csv", "a,b,label\n" + rows)
    with pytest.warns(DataWarning, match=r"column 'a' holds numbers float32 cannot tell apart \(e\.g\. 1700000000 and 1700000001\): 60 distinct values become 1"):
        result = run(dirs, *source, "train.epochs=1")
    assert result.record["data"]["class_names"] == ["100000000000000000000", "100000000000000000001", "5"]


def test_a_text_column_of_as_many_values_as_rows_is_a_warning(dirs, tmp_path):
    source = write_csv(tmp_path / "p.csv", "a,b,label\n" + "".join(f"{i}%,{i % 5},{'xy'[i % 2]}\n" for i in range(40)))
    with pytest.warns(DataWarning, match=r"text column 'a' has 40 distinct values in 40 rows \(e\.g\. '0%'\), each a one-hot feature of its own"):
        run(dirs, *source, "train.epochs=1")


def test_a_test_file_of_one_class_with_float_labels_matches_integer_training_labels(dirs, tmp_path):
    rows = "".join(f"{i % 7}.{i},{(i * 3) % 5},{1 + i % 3}\n" for i in range(60))
    train = write_csv(tmp_path / "tr.csv", "a,b,label\n" + rows)
    (tmp_path / "te.csv").write_text("a,b,label\n1.5,2,2.0\n0.5,1,2.0\n")
    result = run(dirs, *train, f"data.test_source=csv:{tmp_path / 'te.csv'}", "train.epochs=1")
    assert result.record["data"]["class_counts"]["test"] == [0, 2, 0]


def test_numbers_in_exponent_form_are_numbers_as_in_yaml_1_2_and_json():
    from pipeline.config import parse_override

    assert [parse_override(f"a={text}")[1] for text in ("1e30", "1E-5", "-2e3", "1.5e3", "1e", "e5")] == [1e30, 1e-5, -2000.0, 1500.0, "1e", "e5"]


def test_a_history_edited_to_hold_no_positive_loss_still_renders(tmp_path, monkeypatch):
    """The learning curves' loss axis is logarithmic only where there is a positive loss to place."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "small.yaml").write_text(WINE_ABLATION)
    assert main(["ablate", "--config", "small.yaml", "--cache-dir", "c", "--out", "out", "--quiet"]) == 0
    for path in (tmp_path / "out" / "runs").glob("*/history.csv"):
        lines = path.read_text().splitlines()
        columns = lines[0].split(",")
        rows = [dict(zip(columns, line.split(","))) | {"train_loss": "0", "val_loss": "-1"} for line in lines[1:]]
        path.write_text("\n".join([lines[0], *(",".join(row[c] for c in columns) for row in rows)]) + "\n")
    assert main(["report", "out"]) == 0
    assert (tmp_path / "out" / "plots" / "learning_curves.png").exists()
