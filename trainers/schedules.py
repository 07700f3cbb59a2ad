"""Learning-rate schedules as pure functions of the step, plus the one that needs a metric (plateau).

`learning_rate(spec, base_lr, step, steps_per_epoch, epochs)` gives the rate for a global
step (0-based), so resuming at any step needs no scheduler state. `step`, `multistep` and
`exponential` change once per epoch (like torch's StepLR, MultiStepLR and ExponentialLR);
`cosine` and `onecycle` change every step (like CosineAnnealingLR and OneCycleLR stepped per
batch). A linear warmup over `warmup_epochs` multiplies any of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

SCHEDULES = ("none", "step", "multistep", "exponential", "cosine", "plateau", "onecycle")


def _annealed_cosine(start: float, end: float, fraction: float) -> float:
    return end + (start - end) * (1 + math.cos(math.pi * fraction)) / 2


def _onecycle(max_lr: float, step: int, total: int, pct_start: float, div_factor: float, final_div_factor: float) -> float:
    initial = max_lr / div_factor
    final = initial / final_div_factor
    peak = float(pct_start * total) - 1
    if step <= peak:
        return _annealed_cosine(initial, max_lr, step / peak if peak > 0 else 1.0)
    return _annealed_cosine(max_lr, final, (step - peak) / (total - 1 - peak))


def learning_rate(spec: Mapping[str, Any], base_lr: float, step: int, steps_per_epoch: int, epochs: int) -> float:
    """The learning rate at global `step` for a schedule specification (the `schedule` config section)."""
    kind = spec.get("type", "none")
    epoch = step // steps_per_epoch
    total = steps_per_epoch * epochs
    if kind in ("none", "plateau"):
        rate = base_lr
    elif kind == "step":
        rate = base_lr * spec["gamma"] ** (epoch // spec["step_size"])
    elif kind == "multistep":
        rate = base_lr * spec["gamma"] ** sum(1 for milestone in spec["milestones"] if milestone <= epoch)
    elif kind == "exponential":
        rate = base_lr * spec["gamma"] ** epoch
    elif kind == "cosine":
        rate = _annealed_cosine(base_lr, spec.get("min_lr", 0.0), step / total)
    elif kind == "onecycle":
        rate = _onecycle(base_lr, step, total, spec.get("pct_start", 0.3), 25.0, 1e4)
    else:
        raise ValueError(f"Unknown schedule {kind!r}. Known schedules: {', '.join(SCHEDULES)}.")
    warmup_steps = spec.get("warmup_epochs", 0) * steps_per_epoch
    if step < warmup_steps:
        rate *= (step + 1) / warmup_steps
    return rate


@dataclass
class Plateau:
    """Multiply the rate by `factor` after `patience` epochs without the monitored loss improving.

    The same rule as torch's ReduceLROnPlateau (mode min, relative threshold 1e-4, no cooldown).
    """

    factor: float
    patience: int
    threshold: float = 1e-4
    scale: float = 1.0
    best: float = math.inf
    wait: int = 0

    def step(self, value: float) -> None:
        if value < self.best * (1 - self.threshold):
            self.best, self.wait = value, 0
            return
        self.wait += 1
        if self.wait > self.patience:
            self.scale *= self.factor
            self.wait = 0

    def state_dict(self) -> dict[str, float]:
        return {"scale": self.scale, "best": self.best, "wait": self.wait}

    def load_state_dict(self, state: Mapping[str, float]) -> None:
        self.scale, self.best, self.wait = state["scale"], state["best"], int(state["wait"])
