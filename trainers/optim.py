"""Optimizers and per-epoch learning-rate schedules built from plain specifications."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import torch


def build_optimizer(parameters: Iterable[torch.nn.Parameter], spec: Mapping[str, Any]) -> torch.optim.Optimizer:
    """`{"name": "adam"|"sgd", "lr": ..., "momentum": ..., "weight_decay": ...}`."""
    name = spec["name"]
    if name == "adam":
        return torch.optim.Adam(parameters, lr=spec["lr"], weight_decay=spec.get("weight_decay", 0.0))
    if name == "sgd":
        return torch.optim.SGD(
            parameters, lr=spec["lr"], momentum=spec.get("momentum", 0.0), weight_decay=spec.get("weight_decay", 0.0)
        )
    raise ValueError(f"Unknown optimizer {name!r}. Known optimizers: adam, sgd.")


def build_scheduler(
    optimizer: torch.optim.Optimizer, spec: Mapping[str, Any], epochs: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """`{"type": "none"|"step"|"cosine", "step_size": ..., "gamma": ...}`, stepped once per epoch."""
    kind = spec["type"]
    if kind == "none":
        return None
    if kind == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=spec["step_size"], gamma=spec["gamma"])
    if kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    raise ValueError(f"Unknown schedule {kind!r}. Known schedules: none, step, cosine.")
