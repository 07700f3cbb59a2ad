"""Training checkpoints: written atomically, read back with every RNG state, so a resumed run
continues exactly where the interrupted one stopped; written at most every so many seconds, so
epochs of milliseconds do not spend their time serializing."""

from __future__ import annotations

import os
import random
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

CHECKPOINT_FORMAT = 2  # 2: one entry per member of the trained array


def rng_states() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def set_rng_states(states: Mapping[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write `state` with torch.save to a temporary file beside `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        torch.save({"format": CHECKPOINT_FORMAT, **state}, temp)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as exc:
        raise ValueError(f"Cannot read checkpoint {path}: {exc}") from exc
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"Checkpoint {path} has format {state.get('format')!r}, expected {CHECKPOINT_FORMAT}.")
    return state


class CheckpointWriter:
    """Writes the state after an epoch once `every` seconds have passed since the last write (or
    the start); 0 writes after every epoch. A run killed in between resumes from the last
    written epoch and replays the rest exactly, so a longer interval costs only repeated work.
    Under DDP only rank 0 `writes`; every rank knows which epoch the file holds."""

    def __init__(self, path: Path | None, every: float = 0.0, written_epoch: int = 0, writes: bool = True) -> None:
        self.path, self.every, self.written_epoch, self.writes = path, every, written_epoch, writes
        self._last_write = time.monotonic()

    def after_epoch(self, epoch: int, state: Callable[[], dict[str, Any]]) -> None:
        """Write `state()` (built only when written) if the interval has passed."""
        if self.path is None or time.monotonic() - self._last_write < self.every:
            return
        if self.writes:
            save_checkpoint(self.path, state())
        self._last_write, self.written_epoch = time.monotonic(), epoch

    def kept(self) -> str:
        """Where the last written state is, for a message; empty when none was written."""
        return f"; the checkpoint of epoch {self.written_epoch} is kept at {self.path}" if self.path and self.written_epoch else ""
