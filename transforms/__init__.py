"""Scalers fitted on the training split and batched, replayable augmentations.

Importable on its own: `from transforms import StandardScaler, RandomCrop, Compose`.
Kernels without randomness or classes live in `transforms.functional`.
"""

from transforms.adapters import AGPLAlbumentationsWarning, Albumentations, TorchvisionV2
from transforms.base import TRANSFORMS, Transform, from_dict, register, slice_params
from transforms.compose import Compose, OneOf, build_recipe, dump_recipe, load_recipe
from transforms.geometric import RandomAffine, RandomCrop, RandomHorizontalFlip, RandomVerticalFlip
from transforms.pixel import BrightnessContrast, GaussianNoise, Normalize, RandomErasing
from transforms.scalers import MinMaxScaler, NotFittedError, StandardScaler

__version__ = "0.1.0"

__all__ = [
    "AGPLAlbumentationsWarning",
    "Albumentations",
    "BrightnessContrast",
    "Compose",
    "GaussianNoise",
    "MinMaxScaler",
    "Normalize",
    "NotFittedError",
    "OneOf",
    "RandomAffine",
    "RandomCrop",
    "RandomErasing",
    "RandomHorizontalFlip",
    "RandomVerticalFlip",
    "StandardScaler",
    "TRANSFORMS",
    "TorchvisionV2",
    "Transform",
    "build_recipe",
    "dump_recipe",
    "from_dict",
    "load_recipe",
    "register",
    "slice_params",
]
