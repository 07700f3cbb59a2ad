"""Models, the training loop, early stopping, optimizers and schedules."""

from trainers.early_stopping import EarlyStopping, StopReason
from trainers.loop import HISTORY_COLUMNS, FitResult, Split, evaluate, fit, resolve_device
from trainers.models import CNN, build_model
from trainers.optim import build_optimizer, build_scheduler

__all__ = [
    "CNN",
    "HISTORY_COLUMNS",
    "EarlyStopping",
    "FitResult",
    "Split",
    "StopReason",
    "build_model",
    "build_optimizer",
    "build_scheduler",
    "evaluate",
    "fit",
    "resolve_device",
]
