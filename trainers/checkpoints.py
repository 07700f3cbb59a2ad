"""Training checkpoints: written atomically, read back with every RNG state, so a resumed run
continues exactly where the interrupted one stopped; written at most every so many seconds, so
epochs of milliseconds do not spend their time serializing."""

from __future__ import annotations

import math
import os
import pickle
import random
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Collection, Mapping, Protocol, Sequence

import numpy as np
import torch

from trainers.arrays import TrainingArray
from trainers.early_stopping import StopReason
from trainers.precision import Precision

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
    except Exception as exc:  # bytes that are no checkpoint at all (a text file) fail anywhere inside the unpickler
        raise set_aside(path, f"cannot be read as a checkpoint ({exc.__class__.__name__}: {exc})") from None
    found = state.get("format") if isinstance(state, dict) else type(state).__name__
    if not (isinstance(found, int) and found == CHECKPOINT_FORMAT):
        raise set_aside(path, f"format {repr(found) if isinstance(found, (int, str)) else _kind(found)}, expected {CHECKPOINT_FORMAT}")
    return state


class MemberState(Protocol):
    """What the loop keeps about every member between epochs (its `MEMBER_LISTS`)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


def training_state(array: TrainingArray, precision: Precision, members: MemberState) -> dict[str, Any]:
    """Everything a resumed run needs to continue exactly: weights, optimizer, loss scaler, the
    members' own state and every RNG."""
    return {
        "module": array.module.state_dict(),
        "optimizer": array.optimizer.state_dict(),
        "scaler": precision.state_dict(),
        **members.state_dict(),
        "rng": rng_states(),
    }


def resume_from(path: Path, array: TrainingArray, precision: Precision, members: MemberState) -> None:
    """Load the `training_state` in `path` back into `array`, `precision`, `members` and the RNGs;
    a checkpoint that does not fit this training is set aside (`UnusableCheckpoint`)."""
    saved = load_checkpoint(path)
    try:
        check_member_state(saved, [array.member_state_dict(k) for k in range(array.members)], {reason.value for reason in StopReason})
        array.module.load_state_dict(saved["module"])
        check_optimizer_state(saved["optimizer"], array.optimizer)
        array.optimizer.load_state_dict(saved["optimizer"])
        precision.load_state_dict(saved["scaler"])
        members.load_state_dict(saved)
        set_rng_states(saved["rng"])
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, RuntimeError, OverflowError) as exc:
        raise set_aside(path, f"it does not fit this training: {exc.__class__.__name__}: {exc}") from None


MEMBER_LISTS = ("early_stopping", "plateaus", "best", "final", "histories", "stop_reasons")


def check_member_state(saved: Mapping[str, Any], weights: Sequence[Mapping[str, torch.Tensor]], stop_reasons: Collection[str]) -> None:
    """Refuse, naming the first difference, a checkpoint whose per-member state does not fit an
    array whose members' weights look like `weights` (names, shapes, dtypes; one per member): one
    entry per member in every list, numbers where numbers go. Read as it is, such a state would
    fail epochs later, or worse, restore another network's weights."""
    count = len(weights)
    for name in MEMBER_LISTS:
        if not isinstance(saved.get(name), list) or len(saved[name]) != count:
            raise ValueError(f"{name!r} is {_kind(saved.get(name))}, not a list of {count} (one per member)")
    for k in range(count):
        for name in ("best", "final"):
            if saved[name][k] is not None:
                _check_weights(saved[name][k], weights[k], f"{name}[{k}]")
        history = saved["histories"][k]
        if not isinstance(history, list) or not all(isinstance(row, dict) and all(map(_is_number, row.values())) for row in history):
            raise ValueError(f"histories[{k}] is not a list of epochs' numbers")
        if saved["stop_reasons"][k] not in stop_reasons:
            raise ValueError(f"stop_reasons[{k}] is {saved['stop_reasons'][k]!r}, not one of {sorted(stop_reasons)}")
        _check_numbers(saved["early_stopping"][k], ("best", "best_epoch", "wait"), f"early_stopping[{k}]")
        if saved["plateaus"][k] is not None:
            _check_numbers(saved["plateaus"][k], ("scale", "best", "wait"), f"plateaus[{k}]")


def check_optimizer_state(saved: Any, optimizer: torch.optim.Optimizer) -> None:
    """Refuse, naming the first difference, an optimizer state that does not fit `optimizer`: the
    same groups with the same settings (a checkpoint belongs to one training, so only the learning
    rate, and a fused optimizer's per-member counters, may have moved), and per parameter the same
    state names, each a tensor shaped as the optimizer keeps it (a fused optimizer member by member)
    or the scalar step count. torch's own `load_state_dict` takes far less and fails at the next
    step, or trains on with settings nobody chose."""
    groups = saved.get("param_groups") if isinstance(saved, dict) else None
    if not isinstance(groups, list) or len(groups) != len(optimizer.param_groups) or not isinstance(saved.get("state"), dict):
        raise ValueError(f"the optimizer state is {_kind(saved)} that does not hold {len(optimizer.param_groups)} parameter group(s)")
    members = getattr(optimizer, "members", None)  # FusedOptimizer keeps each parameter's state as (members, -1) rows
    for g, (found, current) in enumerate(zip(groups, optimizer.param_groups)):
        if not isinstance(found, dict) or found.keys() != current.keys() or len(found["params"]) != len(current["params"]):
            raise ValueError(f"optimizer group {g} does not hold this optimizer's settings and parameters")
        for key, value in current.items():
            moved = key in ("lr", "initial_lr") or isinstance(value, torch.Tensor)
            if key != "params" and not (_same_kind(found[key], value) if moved else _equal(found[key], value)):
                raise ValueError(f"optimizer setting {key!r} is {found[key]!r}, not {value!r} as this training has it")
        names = None
        for index, param in zip(found["params"], current["params"]):
            state = saved["state"].get(index, {})
            if not isinstance(state, dict) or names is not None and state.keys() != names:
                raise ValueError(f"optimizer state of parameter {index} differs from the others'")
            names = state.keys()
            shape = param.view(members, -1).shape if members else param.shape
            for key, value in state.items():
                fits = isinstance(value, torch.Tensor) and value.is_floating_point() and (value.shape == shape or key == "step" and value.dim() == 0)
                if not fits:
                    raise ValueError(f"optimizer state {key!r} of parameter {index} is {_kind(value)}, not a float tensor of shape {tuple(shape)}")


def _same_kind(found: Any, current: Any) -> bool:
    """Whether a saved value that may have moved can stand where `current` stands: a tensor of its
    shape and dtype, or a finite number for a number."""
    if isinstance(current, torch.Tensor):
        return isinstance(found, torch.Tensor) and found.shape == current.shape and found.dtype == current.dtype
    return _is_number(found) and math.isfinite(found)


def _equal(found: Any, current: Any) -> bool:
    """Equal and of the same type (True is not 1 here), element by element in a sequence."""
    if isinstance(current, (list, tuple)):
        return isinstance(found, (list, tuple)) and len(found) == len(current) and all(map(_equal, found, current))
    return type(found) is type(current) and found == current


def _check_weights(found: Any, weights: Mapping[str, torch.Tensor], where: str) -> None:
    if not isinstance(found, dict) or found.keys() != weights.keys():
        raise ValueError(f"{where} does not hold this network's weights ({_kind(found)})")
    for name, tensor in weights.items():
        value = found[name]
        if not isinstance(value, torch.Tensor) or value.shape != tensor.shape or value.dtype != tensor.dtype:
            raise ValueError(f"{where}[{name!r}] is {_kind(value)}, not a {tensor.dtype} tensor of shape {tuple(tensor.shape)}")


def _check_numbers(found: Any, keys: Collection[str], where: str) -> None:
    if not isinstance(found, dict) or not all(_is_number(found.get(key)) for key in keys):
        raise ValueError(f"{where} is {_kind(found)}, not numbers for {', '.join(keys)}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"a list of {len(value)}" if isinstance(value, list) else f"a {type(value).__name__}"


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
