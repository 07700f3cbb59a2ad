"""Reading a training history the way a textbook does: overfitting, underfitting, and where
validation loss turned up (which is where early stopping belongs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

GAP = 0.03  # train accuracy this far above validation accuracy is overfitting
UNDERFIT = 0.90  # train accuracy below this with a small gap is underfitting
RISE = 0.05  # validation loss this far (relative) above its minimum has turned up


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


def val_loss_turn(history: Sequence[dict[str, float]], rise: float = RISE) -> int | None:
    """The epoch of the lowest validation loss, if the loss later rose more than `rise` above it."""
    best = min(history, key=lambda row: row["val_loss"])
    later = [row["val_loss"] for row in history if row["epoch"] > best["epoch"]]
    return int(best["epoch"]) if later and max(later) > best["val_loss"] * (1 + rise) else None


def diagnose(history: Sequence[dict[str, float]], gap: float = GAP, underfit: float = UNDERFIT) -> Diagnosis:
    """A verdict from the last epoch's accuracies and the shape of the validation loss curve."""
    if not history:
        raise ValueError("Cannot diagnose an empty history.")
    last = history[-1]
    train_accuracy, val_accuracy = last["train_accuracy"], last["val_accuracy"]
    difference = train_accuracy - val_accuracy
    turn = val_loss_turn(history)
    if difference > gap or turn is not None:
        signs = []
        if difference > gap:
            signs.append(f"train accuracy ends {difference * 100:.1f} points above validation")
        if turn is not None:
            signs.append(f"validation loss turned up after epoch {turn}, where early stopping belongs")
        advice = f"{'; '.join(signs).capitalize()}. Regularize: dropout, batch normalization, augmentation, early stopping."
        return Diagnosis("overfitting", advice, train_accuracy, val_accuracy, difference, turn)
    if train_accuracy < underfit:
        advice = f"Train accuracy is only {train_accuracy * 100:.1f}% and validation is close: use a bigger network, more epochs or a higher learning rate."
        return Diagnosis("underfitting", advice, train_accuracy, val_accuracy, difference, turn)
    return Diagnosis("good fit", "Train and validation agree and both are high.", train_accuracy, val_accuracy, difference, turn)
