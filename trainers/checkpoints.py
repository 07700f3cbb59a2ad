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


class UnusableCheckpoint(ValueError):
    """A checkpoint `--resume` cannot continue from; it has been moved aside and nothing trained."""


def set_aside(path: Path, reason: str) -> UnusableCheckpoint:
    """Move an unusable checkpoint out of the way (kept for a look, never read again) and say so."""
    aside = path.with_name(f"{path.stem}.unusable-{time.strftime('%Y%m%d-%H%M%S')}{path.suffix}")
    try:
        os.replace(path, aside)
    except FileNotFoundError:  # another rank of the same job moved it first
        pass
    return UnusableCheckpoint(
        f"Checkpoint {path} is unusable ({reason}); it was moved aside to {aside.name} and nothing was trained. "
        "Run again to start the training over."
    )


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write `state` with torch.save to a temporary file beside `path`, then rename it into place;
    a failed write (a full disk) is an `OSError` naming the file, and the last checkpoint stays."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        torch.save({"format": CHECKPOINT_FORMAT, **state}, temp)
        os.replace(temp, path)
    except (OSError, RuntimeError) as exc:  # torch reports a full disk as a RuntimeError
        raise OSError(getattr(exc, "errno", None), f"cannot write the checkpoint ({exc})", str(path)) from exc
    finally:
        temp.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The state in `path`, read with `weights_only=True`: tensors, numbers, strings and containers
    only, so a planted pickle that would run code is refused, never executed (the cache folder may
    be shared, and whoever can write it must not run code on the next `--resume`). Anything else
    that is not a checkpoint of this format is set aside as unusable."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # torch's message advises weights_only=False: never pass that on
        _, _, detail = str(exc).partition("WeightsUnpickler error:")
        reason = detail.strip().split(". ")[0].splitlines()[0] if detail.strip() else exc.__class__.__name__
        raise set_aside(path, f"refused: not a plain checkpoint of tensors and numbers ({reason}); nothing in it was run") from None
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        raise set_aside(path, f"cannot be read: {exc}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise set_aside(path, f"format {found!r}, expected {CHECKPOINT_FORMAT}")
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
