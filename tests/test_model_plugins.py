"""Bring your own network: models registered by plugins and torchvision's, keyed on their code,
refusing switches they ignore, fused when their layers fuse and trained alone when not."""

import re
import sys

import pytest
import torch

import trainers.registry
from conftest import FAST, ROOT, cli
from pipeline.ablation.design import AblationConfig
from pipeline.ablation.plan import plan_ablation
from pipeline.ablation.fusion import fusion_units
from pipeline.ablation.prepare import prepare
from pipeline.cli import main
from pipeline.config import ConfigError, load_config
from pipeline.runner import run_pipeline
from trainers import register_model
from trainers.arrays import model_fuses
from trainers.models import architecture, build_model
from trainers.torchvision_models import with_input_channels

PLUGIN = '''
from torch import nn
from trainers import register_model


class Tiny(nn.Module):
    """Layers that are not a `net` Sequential: it trains one run at a time."""

    def __init__(self, features, width, classes, dropout):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(features, width), nn.ReLU(), nn.Dropout(dropout), nn.Linear(width, classes))

    def forward(self, x):
        return self.body(x)


class Chain(nn.Module):
    """A `net` Sequential of fusible layers, like the built-in MLP: it fuses."""

    def __init__(self, features, classes):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(features, 12), nn.ReLU(), nn.Linear(12, classes))

    def forward(self, x):
        return self.net(x)


@register_model("tiny", honours=("dropout",))
def tiny(options, input_shape, n_classes):
    features = 1
    for size in input_shape:
        features *= size
    return Tiny(features, options["options"].get("width", 16), n_classes, options["dropout"])


@register_model("three_classes")
def three_classes(options, input_shape, n_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 3))


@register_model("wrong_inputs")
def wrong_inputs(options, input_shape, n_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(10, n_classes))


@register_model("one_score")
def one_score(options, input_shape, n_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 1), nn.Flatten(0))


@register_model("exits")
def exits(options, input_shape, n_classes):
    import sys

    sys.exit(0)


@register_model("chain")
def chain(options, input_shape, n_classes):
    return Chain(input_shape[0] * input_shape[1] * input_shape[2] if len(input_shape) == 3 else input_shape[0], n_classes)
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """`my_models.py` on the path; the models it registers are gone after the test."""
    saved = dict(trainers.registry.MODELS)
    (tmp_path / "my_models.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path / "my_models.py"
    trainers.registry.MODELS.clear()
    trainers.registry.MODELS.update(saved)
    sys.modules.pop("my_models", None)


def run(dirs, *overrides):
    return run_pipeline(load_config(None, [*FAST, "train.device=cpu", "model.plugins=[my_models]", *overrides]), **dirs, progress=False)


def train_outcome(result):
    return next(o for o in result.stages if o.name == "train")


def test_a_plugin_model_trains_and_its_record_names_it(dirs, plugin):
    result = run(dirs, "model.type=tiny", "model.options={width: 24}", "model.dropout=0.2")
    model = result.record["model"]
    assert model["type"] == "tiny" and model["class"] == "Tiny" and model["dropout"] == 0.2
    assert model["parameters"] == 64 * 24 + 24 + 24 * 10 + 10
    assert "batch_norm" not in model and "hidden" not in model
    assert result.record["fused_members"] == 1 and 0 <= result.metrics["test_accuracy"] <= 1


def test_editing_the_plugin_retrains_and_editing_a_comment_does_not(dirs, plugin):
    first = train_outcome(run(dirs, "model.type=tiny"))
    plugin.write_text(plugin.read_text().replace("class Tiny(nn.Module):", "class Tiny(nn.Module):  # a comment"))
    assert train_outcome(run(dirs, "model.type=tiny")).cache == "hit"
    plugin.write_text(plugin.read_text().replace("nn.ReLU(), nn.Dropout", "nn.Tanh(), nn.Dropout"))
    edited = train_outcome(run(dirs, "model.type=tiny"))
    assert edited.cache == "miss" and edited.key != first.key


@pytest.mark.parametrize(
    "overrides, ignored",
    [(["model.type=tiny", "model.batch_norm=false"], "model.batch_norm"), (["model.type=chain", "model.init=kaiming"], "model.init")],
)
def test_a_switch_the_model_ignores_is_refused_naming_model_and_switch(tmp_path, plugin, capsys, overrides, ignored):
    status = main(["run", "model.plugins=[my_models]", *overrides, "--cache-dir", str(tmp_path / "c"), "--runs-dir", str(tmp_path / "r")])
    assert status == 2
    error = capsys.readouterr().err
    assert f"model type '{overrides[0].split('=')[1]}' ignores {ignored}" in error
    assert not (tmp_path / "c").exists() and not (tmp_path / "r").exists()


@pytest.mark.parametrize(("kind", "message"), [
    ("three_classes", r"model type 'three_classes' \(registered by my_models\.three_classes\) returns \(2, 3\) for a batch of 2 inputs of shape \(1, 8, 8\); a classifier of 10 classes"),
    ("wrong_inputs", r"model type 'wrong_inputs' \(registered by my_models\.wrong_inputs\) fails: RuntimeError: .* on a batch of inputs of shape \(1, 8, 8\)"),
    ("exits", r"The factory of model type 'exits' \(my_models\.exits\) called sys\.exit\(0\)"),
    ("one_score", r"model type 'one_score' .* returns \(2,\) for a batch of 2 inputs"),
])
def test_a_plugin_network_that_cannot_classify_the_data_is_named_before_training(tmp_path, plugin, capsys, kind, message):
    status = main(["run", *FAST, "train.device=cpu", "model.plugins=[my_models]", f"model.type={kind}", "--quiet", "--cache-dir", str(tmp_path / "c"), "--runs-dir", str(tmp_path / "r")])
    assert status == 2 and re.search(message, capsys.readouterr().err)
    assert not [p for p in (tmp_path / "c").glob("train/*") if re.fullmatch("[0-9a-f]{64}", p.name)]  # the data stages stay cached, valid
    assert not (tmp_path / "r").exists()


def test_register_model_refuses_unknown_switches_and_taken_names():
    with pytest.raises(ValueError, match="unknown switches \\['width'\\]"):
        register_model("x", honours=("width",))
    with pytest.raises(ValueError, match="'cnn' is taken"):
        register_model("cnn")
    with pytest.raises(ConfigError, match="Unknown model type 'resnet'.*torchvision:<name>"):
        load_config(None, ["model.type=resnet"])


def test_which_models_fuse(plugin):
    load_config(None, ["model.plugins=[my_models]"])
    assert model_fuses({"type": "chain"}, (1, 8, 8), 10) and not model_fuses({"type": "tiny", "options": {}, "dropout": 0.0}, (1, 8, 8), 10)
    assert model_fuses({"type": "cnn", "channels": [8], "hidden": [16]}, (1, 8, 8), 10)
    assert not model_fuses({"type": "torchvision:resnet18"}, (1, 8, 8), 10)


def test_an_ablation_trains_runs_of_a_model_that_does_not_fuse_one_at_a_time(tmp_path, plugin):
    base = {"model": {"plugins": ["my_models"], "type": "tiny"}, "train": {"epochs": 2, "device": "cpu"}}
    factors = {"model.dropout": {"side": "model", "values": [0.0, 0.3]}}
    tasks = plan_ablation(base, [], AblationConfig(seeds=[0, 1], factors=factors), tmp_path / "c", tmp_path / "r").tasks
    prepared = prepare(tasks)
    assert prepared.solo == {task.run for task in tasks}
    assert [len(unit) for unit in fusion_units(tasks, fuse=True, solo=prepared.solo)] == [1, 1, 1, 1]
    chain = {"model": {"plugins": ["my_models"], "type": "chain"}, "train": {"epochs": 2, "device": "cpu"}}
    tasks = plan_ablation(chain, [], AblationConfig(seeds=[0, 1], factors={"optim.lr": {"side": "model", "values": [1e-3, 2e-3]}}), tmp_path / "c", tmp_path / "r").tasks
    assert prepare(tasks).solo == set()


def test_an_ablation_factor_on_a_switch_the_model_ignores_exits_2(tmp_path, plugin):
    (tmp_path / "ablate.yaml").write_text(
        "model: {plugins: [my_models], type: tiny}\ntrain: {epochs: 2, device: cpu}\n"
        "ablation:\n  seeds: [0, 1]\n  factors:\n    model.batch_norm: {side: model, values: [false, true]}\n"
    )
    done = cli("ablate", "--config", "ablate.yaml", "--out", "out", "--cache-dir", "c", cwd=tmp_path, env={"PYTHONPATH": f"{tmp_path}:{ROOT}"})
    assert done.returncode == 2 and "model type 'tiny' ignores model.batch_norm" in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()


def test_a_torchvision_model_by_name_with_its_first_convolution_adapted(dirs):
    model = build_model({"type": "torchvision:resnet18"}, (1, 8, 8), 10)
    assert model.conv1.in_channels == 1 and model.fc.out_features == 10
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    result = run_pipeline(
        load_config(None, ["model.type=torchvision:resnet18", "train.epochs=1", "train.device=cpu", "data.train_fraction=0.2"]), **dirs, progress=False
    )
    assert result.record["model"]["class"] == "ResNet" and result.record["model"]["parameters"] == sum(p.numel() for p in model.parameters())
    with pytest.raises(ConfigError, match="ignores model.dropout"):
        load_config(None, ["model.type=torchvision:resnet18", "model.dropout=0.1"])


def test_torchvision_names_and_data_are_checked():
    with pytest.raises(ValueError, match="torchvision has no classification model 'resnet7'"):
        build_model({"type": "torchvision:resnet7"}, (1, 8, 8), 10)
    with pytest.raises(ValueError, match="needs images"):
        build_model({"type": "torchvision:resnet18"}, (13,), 3)
    rgb_stem = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1))
    assert with_input_channels(rgb_stem, 5)[0].in_channels == 5


def test_the_docs_model_plugin_registers_a_network_of_the_stated_size_that_fuses(tmp_path, monkeypatch):
    """docs/models.md's `wide_mlp`: one hidden layer of `width` with batch norm, fused in ablations."""
    page = (ROOT / "docs" / "models.md").read_text()
    (tmp_path / "my_models.py").write_text(re.search(r"```python\n# my_models.py\n(.*?)```", page, re.S).group(1))
    monkeypatch.syspath_prepend(str(tmp_path))
    saved = dict(trainers.registry.MODELS)
    try:
        config = load_config(None, ["model.plugins=[my_models]", "model.type=wide_mlp", "model.options={width: 256}", "model.dropout=0.3"])
        spec = config.model.model_dump(exclude={"sync_batch_norm"})
        assert architecture(spec, (1, 8, 8), 10)["parameters"] == (64 + 1) * 256 + 2 * 256 + 256 * 10 + 10
        assert model_fuses(spec, (1, 8, 8), 10)
    finally:
        trainers.registry.MODELS.clear()
        trainers.registry.MODELS.update(saved)
        sys.modules.pop("my_models", None)
