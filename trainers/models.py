"""Networks built from a plain specification, so width, depth, BN and dropout are one line each."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from trainers.registry import MODELS, TORCHVISION, check_type, honoured
from trainers.torchvision_models import build_torchvision


ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
INITS = ("default", "kaiming", "xavier", "normal", "autoencoder")


@dataclass(frozen=True)
class Switches:
    """The per-layer choices every model shares."""

    batch_norm: bool = True
    dropout: float = 0.0
    activation: str = "relu"

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"Unknown activation {self.activation!r}. Known: {', '.join(ACTIVATIONS)}.")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"Dropout must be in [0, 1), got {self.dropout}.")

    def block(self, layer: nn.Module, width: int, norm: type[nn.Module]) -> list[nn.Module]:
        """Linear or conv layer, then BatchNorm (before the activation), activation, dropout."""
        parts = [layer]
        if self.batch_norm:
            parts.append(norm(width))
        parts.append(ACTIVATIONS[self.activation]())
        if self.dropout > 0:
            parts.append(nn.Dropout(self.dropout))
        return parts


def dense_layers(in_features: int, hidden: Sequence[int], n_classes: int, switches: Switches) -> list[nn.Module]:
    """Hidden Linear blocks of the given widths, then the classifier layer."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += switches.block(nn.Linear(in_features, width, bias=not switches.batch_norm), width, nn.BatchNorm1d)
        in_features = width
    layers.append(nn.Linear(in_features, n_classes))
    return layers


def initialize(model: nn.Module, scheme: str, activation: str = "relu", std: float = 0.01) -> nn.Module:
    """Re-initialise every Linear and Conv weight (biases to zero); `default` keeps PyTorch's own,
    and so does `autoencoder`, whose trunk weights come from pretraining (`trainers.pretrain`)."""
    if scheme not in INITS:
        raise ValueError(f"Unknown init {scheme!r}. Known: {', '.join(INITS)}.")
    if scheme in ("default", "autoencoder"):
        return model
    nonlinearity = activation if activation in ("relu", "leaky_relu", "tanh", "sigmoid") else "relu"
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            if scheme == "kaiming":
                nn.init.kaiming_normal_(module.weight, nonlinearity=nonlinearity)
            elif scheme == "xavier":
                nn.init.xavier_normal_(module.weight, gain=nn.init.calculate_gain(nonlinearity))
            else:
                nn.init.normal_(module.weight, 0.0, std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model


def _input_dropout(p: float) -> list[nn.Module]:
    return [nn.Dropout(p)] if p > 0 else []


class MLP(nn.Module):
    """Fully connected network for tabular data (images are flattened)."""

    def __init__(
        self,
        input_shape: Sequence[int],
        n_classes: int,
        hidden: Sequence[int] = (128,),
        switches: Switches = Switches(),
        dropout_input: float = 0.0,
    ) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), *_input_dropout(dropout_input), *dense_layers(math.prod(input_shape), hidden, n_classes, switches)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CNN(nn.Module):
    """3x3 conv blocks (each halving the image while it is at least 2 pixels), then hidden layers and the classifier."""

    def __init__(
        self,
        input_shape: Sequence[int],
        n_classes: int,
        channels: Sequence[int] = (32, 64),
        hidden: Sequence[int] = (128,),
        switches: Switches = Switches(),
        dropout_input: float = 0.0,
    ) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(f"CNN needs images of shape (C, H, W), got input shape {tuple(input_shape)}; use model.type=mlp.")
        in_channels, height, width = input_shape
        layers: list[nn.Module] = _input_dropout(dropout_input)
        for out_channels in channels:
            conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=not switches.batch_norm)
            layers += switches.block(conv, out_channels, nn.BatchNorm2d)
            if min(height, width) >= 2:
                layers.append(nn.MaxPool2d(2))
                height, width = height // 2, width // 2
            in_channels = out_channels
        layers.append(nn.Flatten())
        layers += dense_layers(in_channels * height * width, hidden, n_classes, switches)
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_model(spec: Mapping[str, Any], input_shape: Sequence[int], n_classes: int) -> nn.Module:
    """A model from a specification (the `model` config section), for example
    `{"type": "cnn", "channels": [32, 64], "hidden": [128], "dropout": 0.3, "init": "kaiming"}`.

    `type: auto` (the default) is a CNN for images `(C, H, W)` and an MLP otherwise;
    `torchvision:<name>` a torchvision classifier; any other name a factory registered with
    `register_model`, which receives the whole specification.
    """
    options = dict(spec)
    kind = options.pop("type", "auto")
    check_type(kind)
    if kind.startswith(TORCHVISION):
        return build_torchvision(kind.removeprefix(TORCHVISION), input_shape, n_classes)
    if kind in MODELS:
        try:
            model = MODELS[kind].build(dict(spec), tuple(input_shape), n_classes)
        except SystemExit as exc:  # would end the run with its status and no record
            build = MODELS[kind].build
            raise ValueError(f"The factory of model type {kind!r} ({build.__module__}.{build.__qualname__}) called sys.exit({exc.code!r}).") from None
        if not isinstance(model, nn.Module):
            raise ValueError(f"The factory of model type {kind!r} returned {type(model).__name__}, not a torch.nn.Module.")
        check_logits(model, kind, tuple(input_shape), n_classes)
        return model
    if kind == "auto":
        kind = "cnn" if len(input_shape) == 3 else "mlp"
    switches = Switches(
        batch_norm=options.pop("batch_norm", True),
        dropout=options.pop("dropout", 0.0),
        activation=options.pop("activation", "relu"),
    )
    scheme, std = options.pop("init", "default"), options.pop("init_std", 0.01)
    channels = options.pop("channels", (32, 64))
    for not_a_layer_setting in ("plugins", "options", "pretrain"):  # a plugin's, or the pretrain stage's
        options.pop(not_a_layer_setting, None)
    if kind == "mlp":
        model = MLP(input_shape, n_classes, switches=switches, **options)
    else:
        model = CNN(input_shape, n_classes, channels=channels, switches=switches, **options)
    return initialize(model, scheme, switches.activation, std)


def check_logits(model: nn.Module, kind: str, input_shape: tuple[int, ...], n_classes: int) -> None:
    """A `ValueError` naming the plugin's model type and its module when the network fails on a
    batch of two zero inputs of `input_shape` or does not return `(2, n_classes)` logits (checked
    in eval mode, without gradients, where its parameters are: on the meta device, shapes only;
    an operation the meta device lacks skips the check there)."""
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    plugin = f"model type {kind!r} (registered by {MODELS[kind].build.__module__}.{MODELS[kind].build.__qualname__})"
    was_training = model.training
    try:
        with torch.no_grad():
            logits = model.eval()(torch.zeros((2, *input_shape), device=device))
    except NotImplementedError:
        if device.type == "meta":
            return
        raise
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - whatever the plugin's forward raises is the user's to read
        what = f"calls sys.exit({exc.code!r})" if isinstance(exc, SystemExit) else f"fails: {type(exc).__name__}: {exc}"
        raise ValueError(f"The network of {plugin} {what} on a batch of inputs of shape {input_shape}") from None
    finally:
        model.train(was_training)
    shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
    if shape != (2, n_classes):
        raise ValueError(
            f"The network of {plugin} returns {shape} for a batch of 2 inputs of shape {input_shape}; a classifier of "
            f"{n_classes} classes returns logits of shape (batch, {n_classes})."
        )


def architecture(spec: Mapping[str, Any], input_shape: Sequence[int], n_classes: int) -> dict[str, Any]:
    """What `build_model(spec, ...)` builds, for a run record: the type, the module's class, layer
    widths (of the built-in networks), switches and the number of trainable parameters (counted
    on the meta device: nothing allocated)."""
    with torch.device("meta"):
        model = build_model(spec, input_shape, n_classes)
    kind = spec.get("type", "auto")
    if kind == "auto":
        kind = type(model).__name__.lower()
    described: dict[str, Any] = {"type": kind, "class": type(model).__name__, "input_shape": list(input_shape), "classes": n_classes}
    if isinstance(model, CNN):
        described["channels"] = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    if isinstance(model, (CNN, MLP)):
        described["hidden"] = [m.out_features for m in model.modules() if isinstance(m, nn.Linear)][:-1]
        described["dropout_input"] = spec.get("dropout_input", 0.0)
    described.update({name: spec[name] for name in honoured(spec.get("type", "auto")) if name in spec})
    described["parameters"] = sum(parameter.numel() for parameter in model.parameters())
    return described
