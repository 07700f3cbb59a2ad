"""The pipeline's configuration: one typed tree, loaded from defaults, a file and dotted overrides.

Every section is a pydantic model that forbids unknown keys, so a typo is caught before
any work starts and reported with the dotted key and the closest valid one.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, ValidationInfo, field_validator, model_validator

import trainers.registry
from datasets import SourceOptions, parse_source
from pipeline.plugins import import_plugins


Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]  # what NumPy, scikit-learn and torch all take


class ConfigError(ValueError):
    """A configuration problem the user can fix; the CLI exits with status 2 on it."""


def _no_booleans(value: Any, annotation: Any) -> Any:
    """Refuse a boolean where a number goes: pydantic's lax mode would read `train.epochs=true` as 1."""
    if "bool" in str(annotation) or not ("int" in str(annotation) or "float" in str(annotation)):
        return value
    for item in value if isinstance(value, (list, tuple)) else [value]:
        if isinstance(item, bool):
            raise ValueError(f"{item} is a boolean, not a number")
    return value


def dotted(tree: Any, prefix: str = "", lists: bool = False) -> dict[str, Any]:
    """The leaves of a nested mapping as dotted keys: `{"train": {"seed": 3}}` -> `{"train.seed": 3}`;
    with `lists`, into lists too, by position: `{"a": [1, {"b": 2}]}` -> `a.0` and `a.1.b`."""
    if isinstance(tree, dict):
        children = tree.items()
    elif lists and isinstance(tree, (list, tuple)):
        children = enumerate(tree)
    else:
        return {prefix: tree}
    leaves: dict[str, Any] = {}
    for name, value in children:
        leaves.update(dotted(value, f"{prefix}.{name}" if prefix else str(name), lists))
    return leaves


def _finite(value: Any) -> Any:
    """Refuse NaN and infinity (`optim.lr=inf`), here or inside a list: no setting means them."""
    for item in value if isinstance(value, (list, tuple)) else [value]:
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"{item} is not a finite number")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_not_booleans(cls, value: Any, info: ValidationInfo) -> Any:
        return _no_booleans(value, cls.model_fields[info.field_name].annotation)

    @field_validator("*", mode="after")
    @classmethod
    def _numbers_are_finite(cls, value: Any) -> Any:
        return _finite(value)


class DataConfig(_Section):
    """Where the data comes from and how it is split (the `collect` stage)."""

    plugins: list[str] = Field(
        default_factory=list, description="modules to import first: they register their own sources"
    )
    source: str = "sklearn:digits"
    root: str | None = None
    download: bool = False
    target: str | int | None = None  # a column name, or its position (negative counts from the end)
    categorical: Literal["onehot", "error"] = "onehot"
    header: Literal["auto"] | bool = "auto"  # auto: a first row that parses entirely as numbers is data
    decimal: Literal["auto", ".", ","] = "auto"
    x_key: str = "x"
    y_key: str = "y"
    layout: Literal["auto", "channels_first", "channels_last"] = "auto"  # of 4-D npz images
    image_size: tuple[PositiveInt, PositiveInt] | None = None
    val_fraction: float = Field(0.15, gt=0.0, lt=1.0)
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    use_official_test: bool = False
    test_source: str | None = None  # a second source (a file) holding the test split, read like `source`
    train_fraction: float = Field(1.0, gt=0.0, le=1.0)
    seed: Seed = 0
    # k-fold: the test split is fold `fold` of `folds` (see `datasets.splits.kfold_split`), in
    # place of a `test_fraction` held out.
    folds: int | None = Field(None, ge=2)
    fold: int = Field(0, ge=0)

    _import_plugins = field_validator("plugins")(classmethod(lambda cls, plugins: import_plugins(plugins)))

    @field_validator("source", "test_source")
    @classmethod
    def _source_is_known(cls, source: str | None) -> str | None:
        if source is not None:
            parse_source(source)  # raises ValueError listing the known kinds
        return source

    @property
    def fixed_test(self) -> bool:
        """Whether the test split is a set of its own (the source's, or `test_source`), the same
        whatever `data.seed` and `data.test_fraction` say."""
        return self.use_official_test or self.test_source is not None

    @model_validator(mode="after")
    def _folds_fit(self) -> "DataConfig":
        if self.folds is None and "fold" in self.model_fields_set and self.fold:
            raise ValueError("data.fold is set but data.folds is not; set data.folds=K to split into K folds")
        if self.test_source is not None and self.use_official_test:
            raise ValueError("data.test_source and data.use_official_test exclude each other: say which test split to use")
        if self.folds is not None:
            if self.fixed_test:
                which = "data.use_official_test" if self.use_official_test else "data.test_source"
                raise ValueError(f"data.folds and {which} exclude each other: folds make their own test splits")
            if self.fold >= self.folds:
                raise ValueError(f"data.fold must be one of 0..{self.folds - 1} for data.folds={self.folds}, got {self.fold}")
        return self

    def source_options(self, reads: tuple[str, ...] | None = None) -> SourceOptions:
        """The settings a source reads; with `reads`, only those (the others at their defaults), so
        a loader never sees a setting that its cache key leaves out."""
        given = {option.name: getattr(self, option.name) for option in dataclasses.fields(SourceOptions)}
        return SourceOptions(**{name: value for name, value in given.items() if reads is None or name in reads})


class AugmentConfig(_Section):
    """How the training split is augmented (the `augment` stage).

    offline: the training split grows by `copies` augmented copies, stored in the cache.
    online: the recipe is applied to every batch inside training.
    auto: offline for images, none for tabular data.
    """

    mode: Literal["auto", "none", "offline", "online"] = "auto"
    recipe: list[dict[str, Any]] = Field(
        default_factory=lambda: [{"name": "RandomCrop", "padding": 1}]
    )
    copies: int = Field(1, ge=1)
    seed: Seed = 0

    @field_validator("recipe")
    @classmethod
    def _recipe_builds(cls, recipe: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for position, step in enumerate(recipe):
            for key, value in dotted(step, lists=True).items():
                if isinstance(value, float) and not math.isfinite(value):  # GaussianNoise(std=inf) would turn every copy to 0 or 255
                    raise ValueError(f"recipe[{position}] ({step.get('name', '?')}): {key}={value} is not a finite number")
        from transforms import build_recipe  # torch: only a recipe that is given is built here

        build_recipe(recipe)  # raises ValueError naming the unknown transform or parameter
        return recipe


class ScaleConfig(_Section):
    """How features are rescaled (the `scale` stage); statistics come from the training split only."""

    method: Literal["none", "minmax", "standard"] = "standard"
    axis: Literal["global", "channel", "feature"] = "channel"
    feature_range: tuple[float, float] = (0.0, 1.0)


class PretrainConfig(_Section):
    """`model.init: autoencoder`'s pretraining (the `pretrain` stage): a denoising autoencoder
    whose encoder is the network's trunk, trained on the training split's samples without labels.
    `noise` is the share of input values masked to 0; `seed` None pretrains with each training's
    own `train.seed` (so intervals over seeds cover the pretraining too), an integer shares one
    pretraining among every seed."""

    epochs: int = Field(10, ge=1)
    lr: float = Field(1e-3, gt=0.0)
    noise: float = Field(0.2, ge=0.0, lt=1.0)
    seed: Seed | None = None


class ModelConfig(_Section):
    """The network (read by the `train` stage). auto: a CNN for images, an MLP for tabular data;
    `torchvision:<name>` a torchvision classifier; any other name a model a plugin registered.

    `channels` are the CNN's conv blocks; `hidden` the fully connected layers (of the MLP,
    or of the CNN's head). BatchNorm sits after each Linear/Conv, before its activation.
    `options` holds a plugin's own settings (its factory receives the whole section).
    """

    plugins: list[str] = Field(default_factory=list, description="modules to import first: they register their own models")
    type: str = "auto"
    channels: list[PositiveInt] = Field(default_factory=lambda: [32, 64], min_length=1)
    hidden: list[PositiveInt] = Field(default_factory=lambda: [128])
    batch_norm: bool = True
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    dropout_input: float = Field(0.0, ge=0.0, lt=1.0)
    activation: Literal["relu", "leaky_relu", "gelu", "tanh", "sigmoid"] = "relu"
    init: Literal["default", "kaiming", "xavier", "normal", "autoencoder"] = "default"
    init_std: float = Field(0.01, gt=0.0)
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    sync_batch_norm: bool = False
    options: dict[str, Any] = Field(default_factory=dict)

    _import_plugins = field_validator("plugins")(classmethod(lambda cls, plugins: import_plugins(plugins)))

    def spec(self) -> dict[str, Any]:
        """What `trainers.models.build_model` takes: the section less what is settled elsewhere
        (SyncBatchNorm by the training, the pretraining by the `pretrain` stage)."""
        return self.model_dump(exclude={"sync_batch_norm", "pretrain"})

    @model_validator(mode="after")
    def _type_is_known_and_applies_what_is_set(self) -> "ModelConfig":
        trainers.registry.check_type(self.type)
        explicit = set(self.model_fields_set) | ({"init"} if "init_std" in self.model_fields_set else set())
        ignored = trainers.registry.ignored_switches(self.type, explicit)
        if ignored:
            applies = ", ".join(trainers.registry.honoured(self.type)) or "none of them"
            raise ValueError(
                f"model type {self.type!r} ignores {', '.join(f'model.{name}' for name in ignored)} (it applies: {applies}); "
                "remove the setting (or the ablation factor), or have the model apply it (register_model(..., honours=...))"
            )
        if self.init == "autoencoder" and self.type not in trainers.registry.BUILT_IN:
            raise ValueError(f"init autoencoder pretrains the trunk of a built-in network (type auto, mlp or cnn), not of {self.type!r}")
        return self


class OptimConfig(_Section):
    """The optimizer; `lr` is the base rate that `schedule` shapes."""

    name: Literal["sgd", "adam", "adamw", "rmsprop"] = "adam"
    lr: float = Field(2e-3, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0.0)


class ScheduleConfig(_Section):
    """Learning-rate decay: step/multistep/exponential per epoch, cosine/onecycle per step,
    plateau on validation loss; `warmup_epochs` of linear warmup in front of any of them."""

    type: Literal["none", "step", "multistep", "exponential", "cosine", "plateau", "onecycle"] = "cosine"
    step_size: PositiveInt = 10
    milestones: list[PositiveInt] = Field(default_factory=lambda: [10, 20])
    gamma: float = Field(0.5, gt=0.0, le=1.0)
    min_lr: float = Field(0.0, ge=0.0)
    patience: PositiveInt = 3
    pct_start: float = Field(0.3, gt=0.0, lt=1.0)
    warmup_epochs: int = Field(0, ge=0)


class EarlyStopConfig(_Section):
    enabled: bool = True
    monitor: Literal["val_loss", "val_accuracy"] = "val_loss"
    patience: int = Field(8, ge=1)
    min_delta: float = Field(0.0, ge=0.0)
    restore_best: bool | None = None  # None: restore with early stopping, keep the last weights without it

    @property
    def restores_best(self) -> bool:
        """Whether training ends on its best epoch's weights: asked for, or else whenever it stops early."""
        return self.enabled if self.restore_best is None else self.restore_best


class TrainConfig(_Section):
    """The loop: length, batches, loss, device, precision and reproducibility."""

    epochs: int = Field(30, ge=1)
    batch_size: int = Field(64, ge=1)
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d{1,4})?)$")
    data_on_device: Literal["auto", "always", "never"] = "auto"
    cuda_graphs: bool = True  # replay a fused fp32 step on CUDA from a graph; the same kernels, launched at once
    checkpoint_every: float = Field(30.0, ge=0.0)  # seconds between checkpoint writes; 0: after every epoch
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    seed: Seed = 0
    deterministic: bool = False
    distributed: Literal["none", "ddp"] = "none"


class TrackingConfig(_Section):
    """Where `--track mlflow` logs runs; no stage reads it, so it changes no cache key."""

    uri: str = "sqlite:///mlflow.db"  # a SQLite file here; a server (http://...) or another store works the same
    experiment: str = "gainsplit"


class Config(_Section):
    """The whole resolved configuration of one run."""

    data: DataConfig = Field(default_factory=DataConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    scale: ScaleConfig = Field(default_factory=ScaleConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    early_stop: EarlyStopConfig = Field(default_factory=EarlyStopConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    ablation: dict[str, Any] | None = Field(
        None, description="an ablation's design: read and validated by `ablate` (see `AblationConfig`)"
    )

    @model_validator(mode="after")
    def _batch_norm_has_two_samples(self) -> "Config":
        if self.train.batch_size == 1 and self.model.batch_norm and "batch_norm" in trainers.registry.honoured(self.model.type):
            raise ValueError(
                "train.batch_size=1 with model.batch_norm=true: batch norm cannot train on one sample per batch "
                "(its variance is zero); use batches of 2 or more (16 or more normalize well) or model.batch_norm=false"
            )
        return self


def valid_keys(model: type[BaseModel] = Config, prefix: str = "") -> list[str]:
    """Every dotted key the configuration accepts, sections included."""
    keys = []
    for name, field in model.model_fields.items():
        dotted = f"{prefix}{name}"
        keys.append(dotted)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys.extend(valid_keys(annotation, dotted + "."))
    return keys


def _closest_key(dotted: str) -> str | None:
    matches = difflib.get_close_matches(dotted, valid_keys(), n=1, cutoff=0.5)
    return matches[0] if matches else None


def _leaf_keys(tree: Any, prefix: str) -> list[str]:
    if isinstance(tree, dict) and tree:
        return [key for name, child in tree.items() for key in _leaf_keys(child, f"{prefix}.{name}")]
    return [prefix]


def _unknown_keys(tree: dict[str, Any], model: type[BaseModel] = Config, prefix: str = "") -> list[str]:
    """Dotted keys in `tree` that the schema does not have, down to the leaves the user wrote."""
    unknown = []
    for name, value in tree.items():
        dotted = f"{prefix}{name}"
        field = model.model_fields.get(name)
        if field is None:
            unknown.extend(_leaf_keys(value, dotted))
        elif isinstance(value, dict) and isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            unknown.extend(_unknown_keys(value, field.annotation, dotted + "."))
    return unknown


def _unknown_key_message(dotted: str) -> str:
    message = f"Unknown config key '{dotted}'."
    suggestion = _closest_key(dotted)
    return message + (f" Did you mean '{suggestion}'?" if suggestion else "")


def _describe(error: dict[str, Any], prefix: str = "") -> str:
    dotted = prefix + ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ").rstrip(".")
    if isinstance(error["input"], dict):  # a check across a section's settings: the message names them
        return f"'{dotted}': {message}." if dotted else f"{message}."
    return f"Invalid value for '{dotted}': {message}. Got {error['input']!r}."


def _config_error(problems: list[str]) -> ConfigError:
    return ConfigError("invalid configuration:\n" + "\n".join(f"  - {problem}" for problem in problems))


def parse_override(text: str) -> tuple[str, Any]:
    """Split `a.b=value` and read the value as YAML, so `0.3`, `true` and `[32, 64]` get their types."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"Override {text!r} is not of the form key=value (for example train.epochs=5).")
    try:
        value = yaml.load(raw, Loader=_UniqueKeyLoader) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"Override {text[:80]!r}: the value is not valid YAML ({exc.problem}).") from exc
    except RecursionError:
        raise ConfigError(f"Override {text[:80]!r}...: the value nests lists or mappings deeper than Python can read.") from None
    return key, _not_too_large(value, f"Override {text[:80]!r}")


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            parent = ".".join(parts[: depth + 1])
            raise ConfigError(f"Cannot set '{dotted}': '{parent}' is a value, not a section.")
        node = child
    node[parts[-1]] = value


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a mapping that holds a key twice (the last would win silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (list, dict)):
                raise yaml.constructor.ConstructorError(None, None, f"a key that is a {'list' if isinstance(key, list) else 'mapping'} names no setting", key_node.start_mark)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


# YAML 1.1 reads 1e30 and 1E-5 (no dot) as strings; YAML 1.2, JSON and Python read them as numbers.
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


MOST_VALUES = 1_000_000  # a configuration expands to at most this many values (YAML aliases can multiply them)


def _expanded_size(tree: Any) -> int:
    """How many values `tree` holds once YAML's aliases are expanded (a list referring nine times
    to a list referring nine times to ... is a billion), counted without expanding them."""
    sizes: dict[int, int] = {}

    def size(node: Any) -> int:
        if not isinstance(node, (dict, list)):
            return 1
        if id(node) not in sizes:
            children = node.values() if isinstance(node, dict) else node
            sizes[id(node)] = min(MOST_VALUES + 1, 1 + sum(size(child) for child in children))
        return sizes[id(node)]

    return size(tree)


def _not_too_large(tree: Any, where: str) -> Any:
    if _expanded_size(tree) > MOST_VALUES:
        raise ConfigError(f"{where} expands to more than {MOST_VALUES:,} values (YAML aliases repeating aliases); no configuration is that large.")
    return tree


def _unique_json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ValueError(f"duplicate key {repeated[0]!r}")
    return dict(pairs)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON config file into a plain mapping, naming the file on any error; a key
    given twice in one mapping is an error, not a silent last-one-wins."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"Cannot read config file {path}: {exc.strerror}.") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"Config file {path} is not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#04x}): is it the file you meant?") from None
    try:
        tree = json.loads(text, object_pairs_hook=_unique_json_object) if path.suffix == ".json" else yaml.load(text, Loader=_UniqueKeyLoader)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"Config file {path} is not valid {path.suffix.lstrip('.').upper() or 'YAML'}: {exc}") from exc
    except RecursionError:
        raise ConfigError(f"Config file {path} nests lists or mappings deeper than Python can read; no setting is nested that deep.") from None
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise ConfigError(f"Config file {path} must hold a mapping of sections, not {type(tree).__name__}.")
    return _not_too_large(tree, f"Config file {path}")


def load_config(path: str | Path | None = None, overrides: list[str] = (), base: dict[str, Any] | None = None) -> Config:
    """Resolve defaults, then the file at `path` (or the mapping `base`), then `key=value`
    overrides, and validate the result."""
    tree = read_config_file(path) if path else copy.deepcopy(base or {})
    if isinstance(overrides, (str, bytes)) or not all(isinstance(text, str) for text in overrides):
        raise ConfigError(f"Overrides are a list of 'key=value' strings, such as ['train.epochs=5']; got {overrides!r}.")
    for text in overrides:
        _set_dotted(tree, *parse_override(text))
    return validate_model(Config, tree)


Model = TypeVar("Model", bound=BaseModel)


def validate_model(model: type[Model], tree: dict[str, Any], prefix: str = "") -> Model:
    """`tree` validated as `model`; unknown keys and bad values are one `ConfigError` naming each
    dotted key (under `prefix`, e.g. "ablation.")."""
    unknown = _unknown_keys(tree, model, prefix)
    if unknown:
        raise _config_error([_unknown_key_message(key) for key in unknown])
    try:
        return model.model_validate(tree)
    except ValidationError as exc:
        raise _config_error([_describe(error, prefix) for error in exc.errors()]) from None


def changed_settings(config: Config, sections: Iterable[str]) -> list[str]:
    """`section.key=value` for each setting of `sections` that differs from its default: what
    tells one cache entry or variant from another to a person."""
    defaults = Config()
    changed = []
    for section in sections:
        before = getattr(defaults, section).model_dump(mode="json")
        for key, value in getattr(config, section).model_dump(mode="json").items():
            if value != before.get(key):
                changed.append(f"{section}.{key}={value if isinstance(value, str) else json.dumps(value)}")
    return changed


def config_to_yaml(config: Config) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
