"""Networks built from a plain specification, so width, depth, BN and dropout are one line each."""

from __future__ import annotations

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


class CNN(nn.Module):
    """3x3 conv blocks (each halving the image while it is at least 2 pixels), then a hidden layer and the classifier."""

    def __init__(
        self,
        input_shape: Sequence[int],
        n_classes: int,
        channels: Sequence[int] = (32, 64),
        hidden: int = 128,
        batch_norm: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(f"CNN needs images of shape (C, H, W), got input shape {tuple(input_shape)}.")
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
        layers += _block(nn.Linear(in_channels * height * width, hidden, bias=not batch_norm), hidden, batch_norm, dropout, nn.BatchNorm1d)
        layers.append(nn.Linear(hidden, n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


MODELS = {"cnn": CNN}


def build_model(spec: Mapping[str, Any], input_shape: Sequence[int], n_classes: int) -> nn.Module:
    """A model from a specification such as `{"type": "cnn", "channels": [32, 64], "dropout": 0.3}`."""
    options = dict(spec)
    kind = options.pop("type", "cnn")
    if kind not in MODELS:
        raise ValueError(f"Unknown model type {kind!r}. Known types: {', '.join(sorted(MODELS))}.")
    return MODELS[kind](input_shape, n_classes, **options)
