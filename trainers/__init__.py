"""Models, the training loop, early stopping, optimizers, LR schedules and metrics."""

from trainers.arrays import FusedArray, SoloArray, fused_array
from trainers.devices import canonical_device, resolve_device, same_device
from trainers.early_stopping import EarlyStopping, StopReason
from trainers.fused import FusedNet, fuse, fused_cross_entropy
from trainers.fused_optim import FusedOptimizer
from trainers.loop import (
    HISTORY_COLUMNS,
    FitResult,
    Member,
    Split,
    TrainingDiverged,
    evaluate,
    fit,
    fit_array,
    fits_on_device,
    place,
    predict,
)
from trainers.metrics import confusion_matrix, per_class_accuracy
from trainers.models import CNN, MLP, build_model, initialize
from trainers.optim import build_optimizer
from trainers.registry import register_model
from trainers.schedules import Plateau, learning_rate

__all__ = [
    "CNN",
    "HISTORY_COLUMNS",
    "MLP",
    "Member",
    "EarlyStopping",
    "FitResult",
    "FusedArray",
    "FusedNet",
    "FusedOptimizer",
    "Plateau",
    "SoloArray",
    "Split",
    "StopReason",
    "TrainingDiverged",
    "build_model",
    "build_optimizer",
    "canonical_device",
    "confusion_matrix",
    "evaluate",
    "fit",
    "fit_array",
    "fits_on_device",
    "fuse",
    "fused_array",
    "fused_cross_entropy",
    "initialize",
    "learning_rate",
    "per_class_accuracy",
    "place",
    "predict",
    "register_model",
    "resolve_device",
    "same_device",
]
