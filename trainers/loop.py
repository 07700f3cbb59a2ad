"""The training loop: batches by index from data kept on the device, per-step LR schedule, early
stopping, mixed precision on CUDA, an atomic checkpoint after every epoch, and exact resume."""

from __future__ import annotations

import contextlib
import copy
import os
import random
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Mapping

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from trainers.devices import canonical_device, same_device
from trainers.distributed import SINGLE, Distributed
from trainers.early_stopping import EarlyStopping, StopReason
from trainers.schedules import Plateau, learning_rate

HISTORY_COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds")
SHUFFLE_STREAM, AUGMENT_STREAM = 0, 1
DEVICE_MEMORY_SHARE = 0.5
CHECKPOINT_FORMAT = 1


class TrainingDiverged(ValueError):
    """The loss became NaN or infinite; the message names the epoch and batch."""


@dataclass
class Split:
    """Features and integer labels of one split (on the training device, or on the host for the loader path)."""

    x: torch.Tensor
    y: torch.Tensor


@dataclass
class FitResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    stopped_epoch: int = 0
    stop_reason: str = StopReason.NOT_STOPPED.value
    resumed_from_epoch: int = 0

    @property
    def epochs_run(self) -> int:
        return len(self.history)


def fits_on_device(arrays: list[np.ndarray], device: torch.device) -> bool:
    """Whether the arrays take at most half of the device's free memory (always true on the CPU)."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return sum(a.nbytes for a in arrays) <= DEVICE_MEMORY_SHARE * free


def place(x: np.ndarray, y: np.ndarray, device: torch.device, on_device: bool) -> Split:
    """Copy a split to the device once, or to (pinned, when CUDA is the target) host memory."""
    features = torch.from_numpy(np.array(x))
    labels = torch.from_numpy(np.array(y, dtype=np.int64))
    if on_device:
        return Split(features.to(device), labels.to(device))
    if device.type == "cuda":
        features, labels = features.pin_memory(), labels.pin_memory()
    return Split(features, labels)


def epoch_generator(seed: int, epoch: int, stream: int, device: torch.device) -> torch.Generator:
    """A generator for one purpose (`stream`) in one epoch, derived from `(seed, epoch)` alone.

    An epoch's shuffling and augmentation do not depend on what ran before it, so a run
    resumed at epoch k draws exactly what the uninterrupted run drew.
    """
    state = np.random.SeedSequence([seed, epoch, stream]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(state))


def _identity(rows: torch.Tensor) -> torch.Tensor:
    return rows


class _HostBatches(torch.utils.data.Dataset):
    """Batches cut from host tensors in a given order, for a DataLoader that pins them."""

    def __init__(self, split: Split, order: torch.Tensor, batch_size: int, select: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.split, self.order, self.batch_size, self.select = split, order, batch_size, select

    def __len__(self) -> int:
        return (len(self.order) + self.batch_size - 1) // self.batch_size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.select(self.order[index * self.batch_size : (index + 1) * self.batch_size])
        return self.split.x[rows], self.split.y[rows]


def batches(
    split: Split,
    order: torch.Tensor,
    batch_size: int,
    device: torch.device,
    select: Callable[[torch.Tensor], torch.Tensor] = _identity,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches in `order` (each narrowed by `select`, e.g. to this rank's shard): indexed on the
    device when the data lives there, else through a DataLoader that pins them."""
    if same_device(split.x.device, device):
        order = order.to(device)
        for start in range(0, len(order), batch_size):
            rows = select(order[start : start + batch_size])
            yield split.x[rows], split.y[rows]
        return
    # The loader's own generator keeps it from drawing its base seed from the global RNG (dropout's).
    loader = torch.utils.data.DataLoader(
        _HostBatches(split, order.cpu(), batch_size, select),
        batch_size=None,
        pin_memory=device.type == "cuda",
        generator=torch.Generator(),
    )
    for x, y in loader:
        yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed precision on CUDA; nothing at all (not even a disabled autocast) otherwise."""
    if device.type != "cuda" or precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


@torch.no_grad()
def predict(model: nn.Module, split: Split, device: torch.device, precision: str = "fp32", batch_size: int = 1024) -> torch.Tensor:
    """Logits for every sample of `split`, in eval mode, as float32 on the device."""
    model.eval()
    order = torch.arange(split.x.shape[0])
    outputs = []
    for x, _ in batches(split, order, batch_size, device):
        with _autocast(device, precision):
            outputs.append(model(x).float())
    return torch.cat(outputs) if outputs else torch.zeros(0, device=device)


def evaluate(model: nn.Module, split: Split, device: torch.device | None = None, precision: str = "fp32") -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy of `model` on `split`."""
    device = device or split.x.device
    logits = predict(model, split, device, precision)
    target = split.y.to(device)
    loss = nn.functional.cross_entropy(logits, target).item()
    return loss, (logits.argmax(dim=1) == target).sum().item() / max(1, len(target))


def _rng_states() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def _set_rng_states(states: Mapping[str, Any]) -> None:
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


def fit(
    model: nn.Module,
    train: Split,
    val: Split,
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    batch_size: int,
    device: torch.device | None = None,
    schedule: Mapping[str, Any] | None = None,
    early_stopping: EarlyStopping | None = None,
    monitor: Literal["val_loss", "val_accuracy"] = "val_loss",
    restore_best: bool = True,
    label_smoothing: float = 0.0,
    precision: Literal["fp32", "bf16", "fp16"] = "fp32",
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    seed: int = 0,
    augment_seed: int = 0,
    checkpoint: Path | None = None,
    resume: bool = False,
    on_epoch_end: Callable[[int], None] | None = None,
    distributed: Distributed = SINGLE,
    progress: bool = True,
) -> FitResult:
    """Train `model` in place and return its per-epoch history.

    The learning rate is set every step from `schedule` (the `schedule` config section; the
    optimizer's own lr is the base rate). Shuffling comes from `(seed, epoch)` and online
    augmentation (`augment(batch, generator)`, run on the device) from `(augment_seed, epoch)`.
    With `checkpoint`, the full state is written after each epoch and, with `resume`, read
    back first, so a killed run continues to the same result. With `restore_best`, the model
    ends with the weights of the best epoch by `monitor`, also when interrupted.

    Under torchrun (`distributed`), the model is wrapped in DistributedDataParallel, each rank
    trains on its shard of every global batch of `batch_size`, epoch metrics are summed over
    ranks, rank 0's validation numbers and stopping decision are broadcast, and only rank 0
    writes checkpoints.
    """
    device = canonical_device(device or train.x.device)
    schedule = dict(schedule or {"type": "none"})
    base_lr = optimizer.param_groups[0].get("initial_lr", optimizer.param_groups[0]["lr"])
    for group in optimizer.param_groups:
        group["initial_lr"] = base_lr
    plateau = Plateau(schedule.get("gamma", 0.1), schedule.get("patience", 3)) if schedule["type"] == "plateau" else None
    tracker = early_stopping or EarlyStopping(patience=epochs + 1, mode="min" if monitor == "val_loss" else "max")
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda" and precision == "fp16")
    result = FitResult()
    best_state: dict[str, Any] | None = None
    n = train.x.shape[0]
    steps_per_epoch = max(1, (n + batch_size - 1) // batch_size)
    # A trailing batch too small to give every rank two samples is dropped: BatchNorm cannot
    # train on one sample, and every rank must take part in every step.
    remainder = n % batch_size
    used = n - remainder if n > batch_size and 0 < remainder < 2 * distributed.world_size else n
    net: nn.Module = model
    if distributed.active:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    if resume and checkpoint is not None and checkpoint.exists():
        state = load_checkpoint(checkpoint)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        tracker.load_state_dict(state["early_stopping"])
        if plateau is not None:
            plateau.load_state_dict(state["plateau"])
        best_state, result.history = state["best_model"], state["history"]
        result.stop_reason = state["stop_reason"]
        result.resumed_from_epoch = len(result.history)
        _set_rng_states(state["rng"])

    bar = tqdm(total=epochs, initial=result.epochs_run, desc="train", unit="epoch", disable=not progress, leave=False)
    last_epoch = epochs if result.stop_reason == StopReason.NOT_STOPPED.value else result.epochs_run
    try:
        for epoch in range(result.epochs_run + 1, last_epoch + 1):
            started = time.perf_counter()
            model.train()
            order = torch.randperm(n, generator=epoch_generator(seed, epoch, SHUFFLE_STREAM, torch.device("cpu")))[:used]
            augment_generator = epoch_generator(augment_seed, epoch, AUGMENT_STREAM, device)
            # Per-batch results stay on the device until the epoch ends: no host sync and a single
            # extra kernel (argmax) per step; the epoch's metrics come from them in a few kernels.
            losses, counts, predicted, targets, rates = [], [], [], [], []
            for index, (xb, yb) in enumerate(batches(train, order, batch_size, device, distributed.shard)):
                rate = learning_rate(schedule, base_lr, (epoch - 1) * steps_per_epoch + index, steps_per_epoch, epochs)
                rate *= plateau.scale if plateau else 1.0
                for group in optimizer.param_groups:
                    group["lr"] = rate
                rates.append(rate)
                if augment is not None:
                    xb = augment(xb, augment_generator)
                with _autocast(device, precision):
                    logits = net(xb)
                    loss = nn.functional.cross_entropy(logits, yb, label_smoothing=label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                if scaler.is_enabled():
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    optimizer.step()
                losses.append(loss.detach())
                counts.append(yb.shape[0])
                predicted.append(logits.detach().argmax(dim=1))
                targets.append(yb)
            losses = torch.stack(losses).float()
            finite = torch.isfinite(losses)
            bad = torch.nonzero(~finite).flatten().tolist()
            if distributed.sum((~finite).sum().float()).item() > 0:
                where = f"batch {bad[0]}" if bad else "another rank's batch"
                kept = f"; the checkpoint of epoch {epoch - 1} is kept at {checkpoint}" if checkpoint and epoch > 1 else ""
                raise TrainingDiverged(f"The training loss became NaN or inf at epoch {epoch}, {where}{kept}.")
            correct = (torch.cat(predicted) == torch.cat(targets)).sum()
            sizes = torch.tensor(counts, dtype=losses.dtype, device=device)
            totals = distributed.sum(torch.stack([(losses * sizes).sum(), sizes.sum(), correct.to(losses.dtype)]))
            scores = torch.tensor(evaluate(model, val, device, precision), dtype=torch.float64, device=device)
            val_loss, val_accuracy = distributed.from_main(scores).tolist()
            row = {
                "epoch": epoch,
                "train_loss": (totals[0] / totals[1]).item(),
                "train_accuracy": (totals[2] / totals[1]).item(),
                "val_loss": val_loss,
                "val_accuracy": val_accuracy,
                "lr": float(np.mean(rates)),
                "seconds": time.perf_counter() - started,
            }
            result.history.append(row)
            if plateau is not None:
                plateau.step(val_loss)
            should_stop, reason = tracker.step(row[monitor], epoch)
            if tracker.best_epoch == epoch:
                best_state = copy.deepcopy(model.state_dict())
            stop_now = should_stop and early_stopping is not None
            if distributed.from_main(torch.tensor(int(stop_now), device=device)).item():
                result.stop_reason = reason.value if stop_now else StopReason.PATIENCE.value
            if checkpoint is not None and distributed.is_main:
                save_checkpoint(
                    checkpoint,
                    {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scaler": scaler.state_dict(),
                        "early_stopping": tracker.state_dict(),
                        "plateau": plateau.state_dict() if plateau else None,
                        "best_model": best_state,
                        "history": result.history,
                        "stop_reason": result.stop_reason,
                        "rng": _rng_states(),
                    },
                )
            bar.update(1)
            bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_loss=f"{val_loss:.3f}", val_acc=f"{val_accuracy:.3f}")
            if on_epoch_end is not None:
                on_epoch_end(epoch)
            if result.stop_reason != StopReason.NOT_STOPPED.value:
                break
    finally:
        bar.close()
        if restore_best and best_state is not None:
            model.load_state_dict(best_state)
    result.best_epoch = tracker.best_epoch
    result.stopped_epoch = result.epochs_run
    return result
