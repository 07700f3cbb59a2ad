"""Reading a training history the way a textbook does, with the noise in mind: overfitting,
underfitting, and where validation loss turned up (which is where early stopping belongs).

A sign counts only when it is larger than what the validation set's size makes noise: a
train-validation gap beyond two binomial standard errors of the validation accuracy, a rise
of validation loss beyond two standard errors of that mean loss. The verdict reads the epoch
whose weights the run kept, and the train accuracy of those weights measured in eval mode
(no dropout, no augmentation) where it was measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Collection, Literal, Sequence

GAP = 0.03  # train accuracy this far above validation accuracy is overfitting (when it also exceeds the noise)
UNDERFIT = 0.90  # train accuracy below this with a small gap is underfitting
RISE = 0.05  # validation loss this far (relative) above its minimum has turned up (when it also exceeds the noise)
NOISE_SE = 2.0  # how many standard errors a sign must exceed
REGULARIZERS = ("dropout", "batch normalization", "augmentation", "early stopping")
# Batch norm's statistics come from the batch: below this many samples per batch (per device)
# they are noisy enough to steer training wrong. Wu and He (Group Normalization, 2018) measured
# BN's ImageNet error flat from 32 to 16 images per device and rising steeply below 16 (8: +1.5
# points, 4: +3.4, 2: +10.6 over batch 32); Ioffe (Batch Renormalization, 2017) makes the same case.
SMALL_BATCH = 16


@dataclass(frozen=True)
class Diagnosis:
    verdict: Literal["overfitting", "underfitting", "good fit"]
    advice: str
    train_accuracy: float
    val_accuracy: float
    gap: float
    val_loss_turned_up_at: int | None

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def batch_norm_caveats(batch_norm: bool, batch_size: int, train_samples: int, world_size: int = 1) -> list[str]:
    """What a run's batches do to batch normalization: statistics from too few samples, and a last
    batch too small to train on (PyTorch refuses one sample per channel in training mode; the
    loop leaves it out of that epoch, a different sample each epoch)."""
    if not batch_norm:
        return []
    caveats = []
    per_device = batch_size // max(1, world_size)
    if per_device < SMALL_BATCH and train_samples > per_device:
        caveats.append(
            f"Batch norm normalizes each batch by its own mean and variance, here from {per_device} samples per device: below "
            f"{SMALL_BATCH} those estimates are noisy enough to train in the wrong direction (with one sample, the variance is "
            f"zero and nothing can be normalized). Use batches of {SMALL_BATCH} or more, or drop batch norm."
        )
    remainder = train_samples % batch_size
    if train_samples > batch_size and 0 < remainder < 2 * max(1, world_size):
        caveats.append(
            f"{train_samples} training samples in batches of {batch_size} leave a last batch of {remainder}, too small for batch norm "
            "to train on: it is left out of each epoch (a different sample each time, as the order is shuffled)."
        )
    return caveats


def val_loss_turn(history: Sequence[dict[str, float]], rise: float = RISE) -> int | None:
    """The epoch of the lowest validation loss, if the loss later rose more than `rise` above it
    and, where the history has the loss's standard error, more than two of them."""
    best = min(history, key=lambda row: row["val_loss"])
    later = [row["val_loss"] for row in history if row["epoch"] > best["epoch"]]
    threshold = max(best["val_loss"] * rise, NOISE_SE * best.get("val_loss_se", 0.0))
    return int(best["epoch"]) if later and max(later) - best["val_loss"] > threshold else None


def _advice_to_regularize(uses: Collection[str], applies: Collection[str]) -> str:
    """Regularizers to try: those that apply to this data and network and the run does not use yet."""
    missing = [technique for technique in REGULARIZERS if technique in applies and technique not in uses]
    if missing:
        return f"Regularize: {', '.join(missing)}."
    used = [technique for technique in REGULARIZERS if technique in uses]
    stronger = ["a higher dropout rate" if "dropout" in used else "", "more augmentation" if "augmentation" in used else "", "weight decay"]
    return (f"It already uses {_listed(used) or 'no regularizer that applies'}: regularize more strongly "
            f"({', '.join(part for part in stronger if part)}) or collect more data.")


def _listed(names: list[str]) -> str:
    return " and ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else "".join(names)


def diagnose(
    history: Sequence[dict[str, float]],
    gap: float = GAP,
    underfit: float = UNDERFIT,
    *,
    kept_epoch: int | None = None,
    train_accuracy: float | None = None,
    val_samples: int | None = None,
    uses: Collection[str] = (),
    applies: Collection[str] = REGULARIZERS,
) -> Diagnosis:
    """A verdict from the kept epoch (the last when not given), the train accuracy of its weights
    (the history's running one when not given), and the shape of the validation loss curve.
    `val_samples` scales the gap threshold to the validation set's noise; `uses` names the
    regularizers the run already has, which the advice leaves out, and `applies` those that could
    apply at all (augmentation only to images: a table cannot be augmented)."""
    if not history:
        raise ValueError("Cannot diagnose an empty history.")
    kept = history[(kept_epoch or len(history)) - 1]
    val_accuracy = kept["val_accuracy"]
    train_accuracy = kept["train_accuracy"] if train_accuracy is None else train_accuracy
    difference = train_accuracy - val_accuracy
    if val_samples:
        gap = max(gap, NOISE_SE * math.sqrt(val_accuracy * (1 - val_accuracy) / val_samples))
    turn = val_loss_turn(history)
    if difference > gap or turn is not None:
        signs = []
        if difference > gap:
            signs.append(f"train accuracy is {difference * 100:.1f} points above validation")
        if turn is not None:
            signs.append(f"validation loss turned up after epoch {turn}, where early stopping belongs")
        advice = f"{'; '.join(signs).capitalize()}. {_advice_to_regularize(uses, applies)}"
        return Diagnosis("overfitting", advice, train_accuracy, val_accuracy, difference, turn)
    if train_accuracy < underfit:
        advice = f"Train accuracy is only {train_accuracy * 100:.1f}% and validation is close: use a bigger network, more epochs or a higher learning rate."
        return Diagnosis("underfitting", advice, train_accuracy, val_accuracy, difference, turn)
    return Diagnosis("good fit", "Train and validation agree and both are high.", train_accuracy, val_accuracy, difference, turn)
