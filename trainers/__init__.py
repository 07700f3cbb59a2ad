"""Models, the training loop, early stopping, optimizers, LR schedules and metrics.

Importing the package is light: each name below comes from its module when first used
(PEP 562), so the configuration checks model types (`trainers.registry`) without importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainers.arrays import FusedArray, SoloArray, fused_array
    from trainers.devices import canonical_device, resolve_device, same_device
    from trainers.early_stopping import EarlyStopping, StopReason
    from trainers.fused import FusedNet, fuse, fused_cross_entropy
    from trainers.fused_optim import FusedOptimizer
    from trainers.loop import HISTORY_COLUMNS, FitResult, Member, Split, TrainingDiverged, evaluate, fit, fit_array, fits_on_device, place, predict
    from trainers.metrics import confusion_matrix, per_class_accuracy
    from trainers.models import CNN, MLP, build_model, initialize
    from trainers.optim import build_optimizer
    from trainers.registry import register_model
    from trainers.schedules import Plateau, learning_rate

_WHERE = {
    "FusedArray": "trainers.arrays",
    "SoloArray": "trainers.arrays",
    "fused_array": "trainers.arrays",
    "canonical_device": "trainers.devices",
    "resolve_device": "trainers.devices",
    "same_device": "trainers.devices",
    "EarlyStopping": "trainers.early_stopping",
    "StopReason": "trainers.early_stopping",
    "FusedNet": "trainers.fused",
    "fuse": "trainers.fused",
    "fused_cross_entropy": "trainers.fused",
    "FusedOptimizer": "trainers.fused_optim",
    "HISTORY_COLUMNS": "trainers.loop",
    "FitResult": "trainers.loop",
    "Member": "trainers.loop",
    "Split": "trainers.loop",
    "TrainingDiverged": "trainers.loop",
    "evaluate": "trainers.loop",
    "fit": "trainers.loop",
    "fit_array": "trainers.loop",
    "fits_on_device": "trainers.loop",
    "place": "trainers.loop",
    "predict": "trainers.loop",
    "confusion_matrix": "trainers.metrics",
    "per_class_accuracy": "trainers.metrics",
    "CNN": "trainers.models",
    "MLP": "trainers.models",
    "build_model": "trainers.models",
    "initialize": "trainers.models",
    "build_optimizer": "trainers.optim",
    "register_model": "trainers.registry",
    "Plateau": "trainers.schedules",
    "learning_rate": "trainers.schedules",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'trainers' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})
