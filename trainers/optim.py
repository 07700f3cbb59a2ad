"""Optimizers built from a plain specification (the `optim` config section)."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import torch

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")


def build_optimizer(parameters: Iterable[torch.nn.Parameter], spec: Mapping[str, Any]) -> torch.optim.Optimizer:
    """`{"name": "sgd"|"adam"|"adamw"|"rmsprop", "lr": ..., "momentum": ..., "nesterov": ..., "weight_decay": ...}`.

    `momentum` and `nesterov` apply to SGD (and `momentum` to RMSprop); Adam's weight decay
    is L2 in the gradient, AdamW's is decoupled.
    """
    name, lr, decay = spec["name"], spec["lr"], spec.get("weight_decay", 0.0)
    if name == "sgd":
        momentum, nesterov = spec.get("momentum", 0.0), spec.get("nesterov", False)
        if nesterov and momentum <= 0:
            raise ValueError("optim.nesterov needs optim.momentum > 0.")
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=decay)
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=decay)
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=decay)
    if name == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=lr, momentum=spec.get("momentum", 0.0), weight_decay=decay)
    raise ValueError(f"Unknown optimizer {name!r}. Known optimizers: {', '.join(OPTIMIZERS)}.")
