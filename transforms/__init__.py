"""Scalers fitted on the training split and batched, replayable augmentations.

Importable on its own: `from transforms import StandardScaler, RandomCrop, Compose`.
"""

from transforms.augment import (
    TRANSFORMS,
    Compose,
    RandomCrop,
    RandomHorizontalFlip,
    RandomVerticalFlip,
    Transform,
    build_recipe,
    from_dict,
    register,
)
from transforms.scalers import MinMaxScaler, NotFittedError, StandardScaler

__all__ = [
    "TRANSFORMS",
    "Compose",
    "MinMaxScaler",
    "NotFittedError",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RandomVerticalFlip",
    "StandardScaler",
    "Transform",
    "build_recipe",
    "from_dict",
    "register",
]
