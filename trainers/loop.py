"""The training loop: data kept on the device, batches drawn by index, early stopping, history."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from trainers.early_stopping import EarlyStopping, StopReason

HISTORY_COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds")
SHUFFLE_STREAM, AUGMENT_STREAM = 0, 1


@dataclass
class Split:
    """Features and integer labels of one split, already on the training device."""

    x: torch.Tensor
    y: torch.Tensor


@dataclass
class FitResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    stopped_epoch: int = 0
    stop_reason: str = StopReason.NOT_STOPPED.value

    @property
    def epochs_run(self) -> int:
        return len(self.history)


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA when present, else the CPU; an explicit CUDA device must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device is {name!r} but CUDA is not available on this machine.")
    return device


def epoch_generator(seed: int, epoch: int, stream: int, device: torch.device) -> torch.Generator:
    """A generator for one purpose (`stream`) in one epoch, derived from `(seed, epoch)` alone.

    An epoch's shuffling and augmentation do not depend on what ran before it, so a run
    resumed at epoch k draws exactly what the uninterrupted run drew.
    """
    state = np.random.SeedSequence([seed, epoch, stream]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(state))


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, batch_size: int = 1024) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy of `model` on `split`, in eval mode."""
    model.eval()
    total_loss, correct = 0.0, 0
    for start in range(0, split.x.shape[0], batch_size):
        logits = model(split.x[start : start + batch_size])
        target = split.y[start : start + batch_size]
        total_loss += nn.functional.cross_entropy(logits, target, reduction="sum").item()
        correct += (logits.argmax(dim=1) == target).sum().item()
    n = split.x.shape[0]
    return total_loss / n, correct / n


def fit(
    model: nn.Module,
    train: Split,
    val: Split,
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    batch_size: int,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    early_stopping: EarlyStopping | None = None,
    monitor: str = "val_loss",
    restore_best: bool = True,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    seed: int = 0,
    augment_seed: int = 0,
    progress: bool = True,
) -> FitResult:
    """Train `model` in place and return its per-epoch history.

    Batches are drawn by shuffled index from tensors that already live on the device, so a
    step does no host work. `augment(batch, generator)` runs per batch (online augmentation)
    on the device. Shuffling comes from `(seed, epoch)` and augmentation from
    `(augment_seed, epoch)`. With `restore_best`, the model ends with the weights of the best
    epoch by `monitor`.
    """
    device = train.x.device
    result = FitResult()
    best_state: dict[str, Any] | None = None
    tracker = early_stopping or EarlyStopping(patience=epochs + 1, mode="min" if monitor == "val_loss" else "max")
    n = train.x.shape[0]
    bar = tqdm(range(1, epochs + 1), desc="train", unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        started = time.perf_counter()
        model.train()
        lr = optimizer.param_groups[0]["lr"]
        order = torch.randperm(n, generator=epoch_generator(seed, epoch, SHUFFLE_STREAM, device), device=device)
        augment_generator = epoch_generator(augment_seed, epoch, AUGMENT_STREAM, device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            xb, yb = train.x[index], train.y[index]
            if augment is not None:
                xb = augment(xb, augment_generator)
            logits = model(xb)
            loss = nn.functional.cross_entropy(logits, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * yb.shape[0]
            correct += (logits.detach().argmax(dim=1) == yb).sum()
        if scheduler is not None:
            scheduler.step()
        val_loss, val_accuracy = evaluate(model, val)
        row = {
            "epoch": epoch,
            "train_loss": loss_sum.item() / n,
            "train_accuracy": correct.item() / n,
            "val_loss": val_loss,
            "val_accuracy": val_accuracy,
            "lr": lr,
            "seconds": time.perf_counter() - started,
        }
        result.history.append(row)
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_loss=f"{val_loss:.3f}", val_acc=f"{val_accuracy:.3f}")
        should_stop, reason = tracker.step(row[monitor], epoch)
        if tracker.best_epoch == epoch:
            best_state = copy.deepcopy(model.state_dict())
        if should_stop and early_stopping is not None:
            result.stop_reason = reason.value
            break
    bar.close()
    result.best_epoch = tracker.best_epoch
    result.stopped_epoch = result.epochs_run
    if restore_best and best_state is not None:
        model.load_state_dict(best_state)
    return result
