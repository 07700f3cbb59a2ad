"""Fused ablations: which runs train as one array, each member cached under its solo key, and the
same results as running them one by one."""

import json

import pytest
import yaml

import trainers.capacity
from conftest import cli
from pipeline.ablation.design import AblationConfig
from pipeline.ablation.execute import run_ablation
from pipeline.ablation.fusion import fusion_units
from pipeline.ablation.plan import plan_ablation
from pipeline.cli import main
from pipeline.runner import run_pipeline

BASE = {"train": {"epochs": 3, "device": "cpu"}, "model": {"channels": [8], "hidden": [16]}}
FUSIBLE = {
    "scale.method": {"side": "data", "values": ["none", "standard"]},
    "model.dropout": {"side": "model", "values": [0.0, 0.3]},
}
SMALL = AblationConfig(design="full", seeds=[0, 1], factors=FUSIBLE)


def test_runs_differing_only_in_member_settings_form_one_unit(tmp_path):
    factors = {
        **FUSIBLE,
        "model.batch_norm": {"side": "model", "values": [False, True]},
        "optim.lr": {"side": "model", "values": [1e-3, 3e-3]},
    }
    tasks = plan_ablation(BASE, [], AblationConfig(design="full", seeds=[0, 1], factors=factors), tmp_path / "c", tmp_path / "r").tasks
    units = fusion_units(tasks, fuse=True)
    # Batch norm changes the network's layers: two arrays; data scaling, dropout, learning rate and seed do not.
    assert sorted(len(unit) for unit in units) == [16, 16]
    for unit in units:
        assert len({task.config.model.batch_norm for task in unit}) == 1
    assert [len(unit) for unit in fusion_units(tasks, fuse=False)] == [1] * 32
    # A group larger than a unit is cut into near-equal units.
    assert [len(unit) for unit in fusion_units(tasks, fuse=True, max_members=5)] == [4, 4, 4, 4] * 2


@pytest.mark.parametrize("vary", [["train"], ["train", "split", "augment"]])
def test_units_keep_the_runs_of_one_augmented_data_together(tmp_path, vary):
    factors = {"augment.mode": {"side": "data", "values": ["none", "offline"]}, **FUSIBLE}
    # Seeds that draw their own split and augmentation change the data, not its shapes.
    design = AblationConfig(design="full", seeds=[0, 1, 2], factors=factors, vary=vary)
    tasks = plan_ablation(BASE, [], design, tmp_path / "c", tmp_path / "r").tasks
    # 12 runs read each augmented data (scale and dropout do not change it); units of 16 would
    # cut one of them in two, and its halves would train as two arrays.
    units = fusion_units(tasks, fuse=True, max_members=16)
    assert sorted(len(unit) for unit in units) == [12, 12]
    assert all(len({task.config.augment.mode for task in unit}) == 1 for unit in units)
    assert sorted(len(unit) for unit in fusion_units(tasks, fuse=True, max_members=30)) == [24]


def test_arrays_are_no_larger_than_the_device_holds(tmp_path, monkeypatch):
    monkeypatch.setattr(trainers.capacity, "members_that_fit", lambda *args: 3)
    run_ablation(BASE, [], SMALL, tmp_path / "out", tmp_path / "cache", progress=False)
    records = [json.loads(path.read_text()) for path in (tmp_path / "out" / "runs").glob("*/run.json")]
    assert sorted(r["fused_members"] for r in records) == [2, 2, 3, 3, 3, 3, 3, 3]


def test_a_fused_ablation_caches_each_member_under_its_solo_key(tmp_path):
    summary = run_ablation(BASE, [], SMALL, tmp_path / "out", tmp_path / "cache", progress=False)
    assert summary["stages"]["train"] == {"built": 8, "hit": 0}
    records = [json.loads(path.read_text()) for path in (tmp_path / "out" / "runs").glob("*/run.json")]
    assert len(records) == 8 and {r["fused_members"] for r in records} == {8}
    key = lambda r: (r["config"]["scale"]["method"], r["config"]["model"]["dropout"], r["config"]["train"]["seed"])
    by_run = {key(r): r for r in records}
    # A later plain run of one variant finds the member's result in the cache.
    tasks = plan_ablation(BASE, [], SMALL, tmp_path / "cache", tmp_path / "r").tasks
    config = next(t for t in tasks if t.variant == "scale.method=standard, model.dropout=0.3" and t.seed == 1).config
    alone = run_pipeline(config, tmp_path / "cache", tmp_path / "runs", progress=False)
    assert [outcome.cache for outcome in alone.stages] == ["hit"] * 4
    assert alone.metrics == by_run[("standard", 0.3, 1)]["metrics"]


@pytest.mark.rounding
def test_fused_and_one_by_one_ablations_agree(tmp_path):
    fused = run_ablation(BASE, [], SMALL, tmp_path / "fused", tmp_path / "cache-fused", progress=False)
    alone = run_ablation(BASE, [], SMALL, tmp_path / "alone", tmp_path / "cache-alone", progress=False, fuse=False)
    assert [v["name"] for v in fused["variants"]] == [v["name"] for v in alone["variants"]]
    for ours, theirs in zip(fused["variants"], alone["variants"]):
        # The same trainings up to float rounding, which training carries on: on average at most two
        # of the 360 test samples apart per run (see test_fused.py for what holds exactly).
        assert ours["test_accuracy"]["mean"] == pytest.approx(theirs["test_accuracy"]["mean"], abs=2 / 360 + 1e-9)
        assert ours["epochs_run"] == theirs["epochs_run"]


def train_entries(cache_dir):
    """Each train entry's weight checksums, history (without timings) and metrics, by key."""
    entries = {}
    for meta_path in (cache_dir / "train").glob("*/meta.json"):
        meta = json.loads(meta_path.read_text())
        history = [{k: v for k, v in row.items() if k != "seconds"} for row in meta["info"]["history"]]
        entries[meta_path.parent.name] = ({n: e["sha256"] for n, e in meta["files"].items()}, history, meta["info"]["metrics"])
    return entries


@pytest.mark.slow
def test_a_killed_fused_ablation_resumes_to_the_same_results(tmp_path):
    config = tmp_path / "ablation.yaml"
    config.write_text(yaml.safe_dump({**BASE, "ablation": SMALL.model_dump(mode="json")}))
    args = ["ablate", "--config", str(config), "train.checkpoint_every=0", "--quiet"]
    whole = cli(*args, "--cache-dir", "whole", "--out", "whole-out", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr

    killed = cli(*args, "--cache-dir", "killed", "--out", "killed-out", cwd=tmp_path, fault="kill-after-epoch=2")
    assert killed.returncode == -9
    (checkpoint,) = (tmp_path / "killed" / ".checkpoints" / "train").glob("array-*.pt")
    assert not list((tmp_path / "killed" / "train").glob("*/meta.json"))

    again = cli(*args, "--cache-dir", "killed", "--out", "killed-out", "--resume", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert not checkpoint.exists()
    resumed, expected = train_entries(tmp_path / "killed"), train_entries(tmp_path / "whole")
    assert resumed.keys() == expected.keys() and len(resumed) == 8
    for key, (weights, history, metrics) in resumed.items():
        assert weights == expected[key][0] and history == expected[key][1]
        assert metrics["resumed_from_epoch"] == 2
        assert metrics["test_accuracy"] == expected[key][2]["test_accuracy"]


@pytest.mark.parametrize(
    "factor, message",
    [
        ("augment.mode: {side: data, values: [none, offline]}", r"variant 'augment.mode=offline' \(seed 0\) cannot run.*augment.mode=offline needs images"),
        ("model.type: {side: model, values: [mlp, cnn]}", r"variant 'model.type=cnn' \(seed 0\) cannot run.*CNN needs images"),
        ("model.hidden: {side: model, values: [[8], [1000000000000]]}",
         r"variant 'model.hidden=\[1000000000000\]' \(seed 0\) cannot run.*parameters\) needs about [\d,.]+ GiB to train"),
    ],
)
def test_a_variant_that_cannot_run_stops_the_ablation_before_anything_trains(tmp_path, monkeypatch, capsys, factor, message):
    import re

    monkeypatch.chdir(tmp_path)
    (tmp_path / "table.yaml").write_text(
        "data: {source: 'sklearn:wine'}\naugment: {mode: none}\nmodel: {type: mlp, hidden: [8]}\ntrain: {epochs: 2, device: cpu}\n"
        f"ablation:\n  seeds: [0, 1]\n  factors:\n    {factor}\n"
    )
    assert main(["ablate", "--config", "table.yaml", "--out", "out", "--cache-dir", "c", "--quiet"]) == 2
    error = capsys.readouterr().err
    assert re.search(message, error), error
    assert not (tmp_path / "c" / "train").exists() or not list((tmp_path / "c" / "train").glob("*/meta.json"))
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_an_ablation_warns_about_its_data_once_on_one_line(tmp_path, jobs):
    (tmp_path / "iris.yaml").write_text(
        "data: {source: 'sklearn:iris'}\nmodel: {hidden: [8]}\ntrain: {epochs: 2, device: cpu}\n"
        "ablation:\n  seeds: [0, 1]\n  factors:\n    model.dropout: {side: model, values: [0.0, 0.3]}\n"
    )
    done = cli("ablate", "--config", "iris.yaml", "--out", "out", "--cache-dir", "c", "--jobs", jobs, "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == ["warning: sklearn:iris: 1 duplicate feature rows"]


@pytest.mark.parametrize("jobs", [1, 2])
def test_the_progress_bar_counts_member_epochs_as_they_train_and_the_cached_ones_at_once(tmp_path, monkeypatch, jobs):
    """The bar's total is every run's train.epochs; trainings report within epochs (here, with one
    job, several times per unit), early stopping's untrained epochs count when a unit ends, and an
    ablation found in the cache fills the bar as well."""
    import pipeline.ablation.execute as execute
    from pipeline.ablation.progress import ProgressBar

    bars = []

    class Recorded(ProgressBar):
        def __init__(self, tasks, enabled):
            super().__init__(tasks, enabled)
            self.heard = []
            bars.append(self)

        def __call__(self, member_epochs):
            self.heard.append(member_epochs)
            super().__call__(member_epochs)

    monkeypatch.setattr(execute, "ProgressBar", Recorded)
    base = {"data": {"source": "sklearn:wine"}, "augment": {"mode": "none"}, "model": {"hidden": [8]},
            "train": {"epochs": 12, "batch_size": 32, "device": "cpu"}, "early_stop": {"patience": 1}}
    design = AblationConfig(design="full", seeds=[0, 1], factors={"model.dropout": {"side": "model", "values": [0.0, 0.3]}})
    summary = run_ablation(base, [], design, tmp_path / "out", tmp_path / "cache", jobs=jobs, progress=False)
    assert any(variant["epochs_run"] < 12 for variant in summary["variants"])  # early stopping left epochs untrained
    again = run_ablation(base, [], design, tmp_path / "again", tmp_path / "cache", jobs=jobs, progress=False)
    assert again["stages"]["train"] == {"built": 0, "hit": 4}
    trained, cached = bars
    assert trained.total == cached.total == 4 * 12
    assert sum(trained.heard) == pytest.approx(48) and sum(cached.heard) == pytest.approx(48)
    if jobs == 1:
        assert len(trained.heard) > 4 * 2  # steps of each epoch, not units
        assert cached.heard[0] == 48  # the one fused unit, found in the cache before anything trains
