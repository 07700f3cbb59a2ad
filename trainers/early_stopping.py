"""Early stopping on a monitored validation metric, as a small stateful object with a pure decision."""

from __future__ import annotations

import enum
import math
from typing import Any, Literal


class StopReason(str, enum.Enum):
    NOT_STOPPED = "not_stopped"
    PATIENCE = "patience"
    NON_FINITE = "non_finite"


class EarlyStopping:
    """Stop after `patience` epochs in which the metric did not beat the best by more than `min_delta`."""

    def __init__(self, patience: int, min_delta: float = 0.0, mode: Literal["min", "max"] = "min") -> None:
        if patience < 1:
            raise ValueError(f"The 'patience' parameter of EarlyStopping must be >= 1. Got {patience!r} instead.")
        if min_delta < 0:
            raise ValueError(f"The 'min_delta' parameter of EarlyStopping must be >= 0. Got {min_delta!r} instead.")
        if mode not in ("min", "max"):
            raise ValueError(f"The 'mode' parameter of EarlyStopping must be 'min' or 'max'. Got {mode!r} instead.")
        self.patience = patience
        self.min_delta = min_delta
        self.mode = mode
        self.best = math.inf if mode == "min" else -math.inf
        self.best_epoch = 0
        self.wait = 0

    def improves(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def step(self, value: float, epoch: int) -> tuple[bool, StopReason]:
        """Record the metric of `epoch`; say whether to stop now and why."""
        if not math.isfinite(value):
            return True, StopReason.NON_FINITE
        if self.improves(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            return False, StopReason.NOT_STOPPED
        self.wait += 1
        if self.wait >= self.patience:
            return True, StopReason.PATIENCE
        return False, StopReason.NOT_STOPPED

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]
