"""Networks built from a plain specification, so width, depth, BN and dropout are one line each."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
from torch import nn


def _block(layer: nn.Module, width: int, batch_norm: bool, dropout: float, norm: type[nn.Module]) -> list[nn.Module]:
    """Linear or conv layer, then BatchNorm (before the activation), activation, dropout."""
    parts = [layer]
    if batch_norm:
        parts.append(norm(width))
    parts.append(nn.ReLU())
    if dropout > 0:
        parts.append(nn.Dropout(dropout))
    return parts


def dense_layers(
    in_features: int, hidden: Sequence[int], n_classes: int, batch_norm: bool, dropout: float
) -> list[nn.Module]:
    """Hidden Linear blocks of the given widths, then the classifier layer."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += _block(nn.Linear(in_features, width, bias=not batch_norm), width, batch_norm, dropout, nn.BatchNorm1d)
        in_features = width
    layers.append(nn.Linear(in_features, n_classes))
    return layers


class MLP(nn.Module):
    """Fully connected network for tabular data (images are flattened)."""

    def __init__(
        self,
        input_shape: Sequence[int],
        n_classes: int,
        hidden: Sequence[int] = (128,),
        batch_norm: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), *dense_layers(math.prod(input_shape), hidden, n_classes, batch_norm, dropout)
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
        batch_norm: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(f"CNN needs images of shape (C, H, W), got input shape {tuple(input_shape)}; use model.type=mlp.")
        in_channels, height, width = input_shape
        layers: list[nn.Module] = []
        for out_channels in channels:
            conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=not batch_norm)
            layers += _block(conv, out_channels, batch_norm, dropout, nn.BatchNorm2d)
            if min(height, width) >= 2:
                layers.append(nn.MaxPool2d(2))
                height, width = height // 2, width // 2
            in_channels = out_channels
        layers.append(nn.Flatten())
        layers += dense_layers(in_channels * height * width, hidden, n_classes, batch_norm, dropout)
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_model(spec: Mapping[str, Any], input_shape: Sequence[int], n_classes: int) -> nn.Module:
    """A model from a specification such as `{"type": "cnn", "channels": [32, 64], "dropout": 0.3}`.

    `type: auto` (the default) is a CNN for images `(C, H, W)` and an MLP otherwise.
    """
    options = dict(spec)
    kind = options.pop("type", "auto")
    if kind == "auto":
        kind = "cnn" if len(input_shape) == 3 else "mlp"
    if kind == "mlp":
        options.pop("channels", None)
        return MLP(input_shape, n_classes, **options)
    if kind == "cnn":
        return CNN(input_shape, n_classes, **options)
    raise ValueError(f"Unknown model type {kind!r}. Known types: auto, cnn, mlp.")
