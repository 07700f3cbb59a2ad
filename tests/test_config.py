import json

import pytest

from pipeline.config import Config, ConfigError, load_config, parse_override


def test_defaults_resolve():
    config = load_config()
    assert config == Config()
    assert config.data.source == "sklearn:digits"


def test_file_then_overrides(tmp_path):
    path = tmp_path / "my.yaml"
    path.write_text("train:\n  epochs: 7\n  batch_size: 32\nmodel:\n  dropout: 0.1\n")
    config = load_config(path, ["train.epochs=5", "model.channels=[16, 32, 64]"])
    assert config.train.epochs == 5
    assert config.train.batch_size == 32
    assert config.model.dropout == 0.1
    assert config.model.channels == [16, 32, 64]


def test_json_file(tmp_path):
    path = tmp_path / "my.json"
    path.write_text(json.dumps({"scale": {"method": "minmax", "feature_range": [-1, 1]}}))
    config = load_config(path)
    assert config.scale.method == "minmax"
    assert config.scale.feature_range == (-1.0, 1.0)


@pytest.mark.parametrize(
    "text, key, value",
    [("train.epochs=5", "train.epochs", 5), ("model.dropout=0.3", "model.dropout", 0.3),
     ("model.batch_norm=false", "model.batch_norm", False), ("model.channels=[8,16]", "model.channels", [8, 16])],
)
def test_override_values_are_typed(text, key, value):
    assert parse_override(text) == (key, value)


@pytest.mark.parametrize(
    "overrides, pattern",
    [
        (["trian.epochs=5"], r"Unknown config key 'trian\.epochs'\. Did you mean 'train\.epochs'\?"),
        (["model.dropuot=0.3"], r"'model\.dropuot'.*'model\.dropout'"),
        (["train.epochs=-1"], r"'train\.epochs'.*greater than or equal to 1.*Got -1"),
        (["train.epochs=five"], r"'train\.epochs'.*valid integer"),
        (["scale.method=zscore"], r"'scale\.method'.*'none', 'minmax' or 'standard'.*Got 'zscore'"),
        (["model.dropout=1.5"], r"'model\.dropout'.*less than 1"),
        (["train.device=tpu"], r"'train\.device'"),
        (["augment.recipe=[{name: Spin}]"], r"'augment\.recipe'.*Unknown transform 'Spin'"),
        (["augment.recipe=[{name: RandomCrop, size: 8, paddng: 1}]"], r"RandomCrop got unknown parameter.*paddng"),
        (["train.epochs.x=1"], r"'train\.epochs'"),
        (["train.epochs"], r"not of the form key=value"),
    ],
)
def test_bad_config_names_the_key(overrides, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_config(None, overrides)


@pytest.mark.parametrize(
    "content, pattern",
    [("train: [1, 2", r"my\.yaml is not valid YAML"), ("- 1\n- 2\n", r"my\.yaml must hold a mapping")],
)
def test_bad_config_file_names_the_file(tmp_path, content, pattern):
    path = tmp_path / "my.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=pattern):
        load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match=r"Cannot read config file .*absent\.yaml"):
        load_config(tmp_path / "absent.yaml")
