"""model.init: autoencoder: the pretrain stage trains a denoising autoencoder on the training
split only, caches the trunk's weights like any stage, and they start the classifier."""

import numpy as np
import pytest
import torch

import trainers.loop
import trainers.registry
from conftest import FAST
from pipeline.ablation.design import AblationConfig
from pipeline.ablation.execute import run_ablation
from pipeline.cache import Artifact, CacheStore
from pipeline.config import ConfigError, load_config
from pipeline.runner import run_pipeline
from pipeline.stages import PretrainStage, RunContext, default_stages
from pipeline.stages.train import arrays_to_weights
from trainers.models import build_model
from trainers.pretrain import PretrainSettings, pretrain_trunk, split_trunk

PRETRAIN = [*FAST, "model.init=autoencoder", "model.pretrain.epochs=2", "train.device=cpu"]
QUIET = RunContext(progress=False)


def run(dirs, *overrides):
    return run_pipeline(load_config(None, [*PRETRAIN, *overrides]), **dirs, progress=False)


def statuses(result):
    return {outcome.name: outcome.cache for outcome in result.stages}


def test_the_stage_sits_between_scale_and_train_only_for_an_autoencoder_init():
    assert [s.name for s in default_stages(load_config(None, PRETRAIN))] == ["collect", "augment", "scale", "pretrain", "train"]
    assert default_stages(load_config(None, PRETRAIN))[-1].inputs == ("collect", "augment", "scale", "pretrain")
    assert [s.name for s in default_stages(load_config(None, FAST))] == ["collect", "augment", "scale", "train"]


def test_the_pretrain_stage_caches_and_invalidates_like_the_others(dirs):
    first = run(dirs)
    assert statuses(first) == dict.fromkeys(["collect", "augment", "scale", "pretrain", "train"], "miss")
    assert statuses(run(dirs)) == dict.fromkeys(["collect", "augment", "scale", "pretrain", "train"], "hit")
    # A training setting reuses the pretraining; a pretraining setting rebuilds it and the training.
    assert statuses(run(dirs, "optim.lr=0.01")) == {"collect": "hit", "augment": "hit", "scale": "hit", "pretrain": "hit", "train": "miss"}
    assert statuses(run(dirs, "model.pretrain.noise=0.5")) == {"collect": "hit", "augment": "hit", "scale": "hit", "pretrain": "miss", "train": "miss"}
    # Other scaled data is other pretraining; another seed pretrains again unless model.pretrain.seed pins it.
    assert statuses(run(dirs, "scale.method=minmax"))["pretrain"] == "miss"
    assert statuses(run(dirs, "train.seed=1"))["pretrain"] == "miss"
    assert statuses(run(dirs, "model.pretrain.seed=0", "train.seed=2"))["pretrain"] == "hit"
    record = first.record
    assert [stage["name"] for stage in record["stages"]] == ["collect", "augment", "scale", "pretrain", "train"]
    assert len(record["pretraining"]["reconstruction_loss"]) == 2
    assert record["pretraining"]["samples"] == record["train_samples"]


def test_a_run_without_the_autoencoder_init_neither_pretrains_nor_reads_its_settings(dirs):
    plain = run_pipeline(load_config(None, FAST), **dirs, progress=False)
    again = run_pipeline(load_config(None, [*FAST, "model.pretrain.epochs=7"]), **dirs, progress=False)
    assert "pretrain" not in statuses(plain) and "pretraining" not in plain.record
    assert statuses(again)["train"] == "hit"


def test_the_reconstruction_loss_falls_and_the_same_seed_gives_the_same_weights():
    x = np.random.default_rng(0).standard_normal((200, 1, 8, 8)).astype(np.float32)
    spec = {"type": "cnn", "channels": [4], "hidden": [8]}
    settings = PretrainSettings(epochs=5, lr=1e-2, noise=0.2, batch_size=32)
    first = pretrain_trunk(spec, x, 10, settings, seed=3, device=torch.device("cpu"))
    second = pretrain_trunk(spec, x, 10, settings, seed=3, device=torch.device("cpu"))
    assert first.losses[-1] < first.losses[0]
    assert first.trunk.keys() == second.trunk.keys()
    assert all(torch.equal(first.trunk[name], second.trunk[name]) for name in first.trunk)
    model = build_model(spec, (1, 8, 8), 10)
    _, head = split_trunk(model)
    assert set(first.trunk) == {name for name in model.state_dict() if not name.startswith(head)}


class TrainingSplitOnly(dict):
    """A scale artifact's arrays that fail the test on any read of the validation or test split."""

    def __getitem__(self, name):
        if name.endswith(("_val", "_test")):
            pytest.fail(f"the pretraining read {name}")
        return super().__getitem__(name)

    def get(self, name, default=None):
        return self[name] if name in self else default


def test_the_pretraining_never_reads_the_validation_or_test_split():
    config = load_config(None, PRETRAIN)
    rng = np.random.default_rng(0)
    arrays = {f"x_{split}": rng.standard_normal((40, 1, 8, 8)).astype(np.float32) for split in ("train", "val", "test")}
    inputs = {"collect": Artifact({}, {"class_names": [str(i) for i in range(10)]})}
    guarded = PretrainStage().run({**inputs, "scale": Artifact(TrainingSplitOnly(arrays), {})}, config, QUIET)
    other = {**arrays, "x_val": np.full_like(arrays["x_val"], np.nan), "x_test": np.full_like(arrays["x_test"], 1e6)}
    changed = PretrainStage().run({**inputs, "scale": Artifact(other, {})}, config, QUIET)
    assert all(np.array_equal(guarded.arrays[name], changed.arrays[name]) for name in guarded.arrays)


@pytest.mark.parametrize("seeds", [[0], [0, 1]], ids=["alone", "fused"])
def test_each_member_starts_from_its_own_pretrained_trunk_and_a_fresh_classifier_layer(dirs, seeds, monkeypatch):
    started = []
    fit_array = trainers.loop.fit_array

    def record_start(array, members, **options):
        started.extend(array.member_state_dict(k) for k in range(array.members))
        return fit_array(array, members, **options)

    monkeypatch.setattr(trainers.loop, "fit_array", record_start)
    ablation = AblationConfig.model_validate({"design": "one_at_a_time", "seeds": seeds, "factors": {"optim.lr": {"values": [0.002, 0.01], "side": "model"}}})
    summary = run_ablation({}, PRETRAIN, ablation, dirs["runs_dir"], dirs["cache_dir"], progress=False)
    store = CacheStore(dirs["cache_dir"])
    trunks = [arrays_to_weights(store.load("pretrain", entry.key).artifact.arrays) for entry in store.entries() if entry.stage == "pretrain"]
    assert len(trunks) == len(seeds)  # one pretraining per seed, shared by both learning rates
    assert summary["stages"]["pretrain"] == {"built": len(seeds), "hit": len(seeds)}
    assert len(started) == 2 * len(seeds)
    for state in started:
        own = [trunk for trunk in trunks if torch.equal(trunk["net.0.weight"], state["net.0.weight"])]
        assert len(own) == 1
        for name, weight in own[0].items():
            assert torch.equal(state[name].reshape(-1), weight.reshape(-1).to(state[name].dtype)), name
    classifier = [name for name in started[0] if name not in trunks[0]]
    assert classifier and all(name.startswith(classifier[0].rsplit(".", 1)[0]) for name in classifier)


def test_an_autoencoder_init_needs_a_built_in_network(monkeypatch):
    """Even a plugin's network that applies `model.init` has no trunk the stage knows to split off."""
    factory = trainers.registry.ModelFactory("tiny", lambda options, shape, classes: torch.nn.Linear(1, classes), ("init",))
    monkeypatch.setitem(trainers.registry.MODELS, "tiny", factory)
    with pytest.raises(ConfigError, match="'model': init autoencoder pretrains the trunk of a built-in network"):
        load_config(None, ["model.type=tiny", "model.init=autoencoder"])


def test_with_a_training_fraction_the_left_out_training_samples_are_pretrained_on_without_their_labels(dirs):
    result = run(dirs, "data.train_fraction=0.25", "augment.mode=none")
    collected = result.artifacts["collect"].artifact.arrays
    assert "y_unlabelled" not in collected
    train, left_out = set(collected["id_train"].tolist()), set(collected["id_unlabelled"].tolist())
    assert not train & left_out and not left_out & (set(collected["id_val"].tolist()) | set(collected["id_test"].tolist()))
    assert len(left_out) > 2 * len(train)
    assert result.record["pretraining"]["samples"] == len(train) + len(left_out)
    assert result.record["pretraining"]["unlabelled_samples"] == len(left_out)
    assert result.record["train_samples"] == len(train)
    full = run(dirs, "augment.mode=none")
    assert "x_unlabelled" not in full.artifacts["collect"].artifact.arrays
    assert full.record["pretraining"]["samples"] == result.record["pretraining"]["samples"]
