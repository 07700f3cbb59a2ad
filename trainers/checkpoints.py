"""Training checkpoints: written atomically, read back with every RNG state, so a resumed run
continues exactly where the interrupted one stopped; written at most every so many seconds, so
epochs of milliseconds do not spend their time serializing."""

from __future__ import annotations

import os
import pickle
import random
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

CHECKPOINT_FORMAT = 2  # 2: one entry per member of the trained array


def rng_states() -> dict[str, Any]:
    """Every global RNG's state as tensors, numbers and strings: what `torch.load(weights_only=True)` reads."""
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    version, python_state, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": position, "has_gauss": has_gauss, "cached_gaussian": cached_gaussian},
        "python": {"version": version, "state": torch.tensor(python_state, dtype=torch.int64), "gauss_next": gauss_next},
    }


def set_rng_states(states: Mapping[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    numpy_state = states["numpy"]
    keys = numpy_state["keys"].numpy().astype(np.uint32)
    np.random.set_state((numpy_state["name"], keys, numpy_state["pos"], numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    python_state = states["python"]
    random.setstate((python_state["version"], tuple(python_state["state"].tolist()), python_state["gauss_next"]))


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
    """The state in `path`, read with `weights_only=True`: tensors, numbers, strings and containers
    only, so a planted pickle that would run code is refused, never executed (the cache folder may
    be shared, and whoever can write it must not run code on the next `--resume`)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise ValueError(
            f"Refusing checkpoint {path}: it holds more than tensors and numbers ({first_line}); "
            "nothing in it was run. Delete it to start the training over."
        ) from None
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
