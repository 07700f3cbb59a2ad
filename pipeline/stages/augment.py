"""augment: grow the training split by augmented copies (offline), or hand the recipe to training (online).

Validation and test data are never augmented: they are read from `collect` by later stages.
An augmented copy keeps the identity of the sample it was made from (`id_train`, see `collect`).
"""

from __future__ import annotations

import importlib.metadata
import sys
from types import ModuleType
from typing import Any

import numpy as np
import torch

import transforms.adapters
import transforms.base
import transforms.compose
import transforms.functional
import transforms.geometric
import transforms.pixel
from datasets.base import host_memory_bytes
from pipeline.cache import Artifact
from pipeline.config import Config
from pipeline.stages.base import RunContext, Stage

CHUNK = 4096
AUGMENTATION_CODE = (
    transforms.base,
    transforms.functional,
    transforms.geometric,
    transforms.pixel,
    transforms.compose,
    transforms.adapters,
)
ADAPTER_LIBRARIES = {"Albumentations": "albumentations", "TorchvisionV2": "torchvision"}


def adapter_versions(recipe: list[dict[str, Any]]) -> dict[str, str]:
    """Versions of the outside libraries a recipe runs through: their output is part of ours."""
    names = set()
    stack = list(recipe)
    while stack:
        spec = stack.pop()
        names.add(spec.get("name"))
        stack.extend(spec.get("transforms", []))
    return {
        library: importlib.metadata.version(library)
        for name, library in ADAPTER_LIBRARIES.items()
        if name in names
    }


def check_room_for_copies(x: np.ndarray, copies: int) -> None:
    """Refuse, before allocating, a grown training split larger than this machine's memory
    (`augment.copies=1000000000` is a message, not minutes of swapping)."""
    needed, total = x.nbytes * (copies + 1), host_memory_bytes()
    if total is not None and needed > total:
        raise ValueError(
            f"augment.copies={copies} would grow the training split to {x.shape[0] * (copies + 1):,} samples "
            f"({needed / 2**30:,.1f} GiB) where this machine has {total / 2**30:,.1f} GiB of memory; lower augment.copies."
        )


def augmented_copies(x: np.ndarray, recipe: list[dict[str, Any]], copies: int, seed: int) -> np.ndarray:
    """`copies` augmented versions of the image batch `x`, stacked; one seeded generator draws them all."""
    pipeline = transforms.compose.build_recipe(recipe)
    generator = torch.Generator().manual_seed(seed)
    source = torch.from_numpy(np.array(x))  # a copy: cached inputs are read-only memory maps
    out = [
        pipeline(source[start : start + CHUNK], generator).numpy()
        for _ in range(copies)
        for start in range(0, source.shape[0], CHUNK)
    ]
    return np.concatenate(out)


class AugmentStage(Stage):
    name = "augment"
    version = "1"
    inputs = ("collect",)

    def code(self, config: Config) -> tuple[ModuleType, ...]:
        return (sys.modules[__name__], *AUGMENTATION_CODE)

    def params(self, config: Config) -> dict[str, Any]:
        return {**config.augment.model_dump(mode="json"), "libraries": adapter_versions(config.augment.recipe)}

    def describe(self, config: Config) -> str:
        settings = config.augment
        if settings.mode == "none":
            return "none"
        names = ", ".join(str(spec.get("name")) for spec in settings.recipe)
        return f"{settings.mode}: {names or 'no transforms'} (copies {settings.copies}, seed {settings.seed})"

    def run(self, inputs: dict[str, Artifact], config: Config, context: RunContext) -> Artifact:
        settings = config.augment
        collected = inputs["collect"].arrays
        x, y = collected["x_train"], collected["y_train"]
        images = x.ndim == 4
        mode = ("offline" if images else "none") if settings.mode == "auto" else settings.mode
        if mode != "none" and not images:
            raise ValueError(
                f"augment.mode={mode} needs images (N, C, H, W), but {inputs['collect'].info['source']} gives "
                f"tabular data of shape {x.shape}; use augment.mode=none (or auto)."
            )
        info = {"mode": mode, "recipe": settings.recipe if mode != "none" else [], "seed": settings.seed}
        if mode != "offline":
            return Artifact({}, info)
        check_room_for_copies(x, settings.copies)
        grown_x = np.concatenate([x, augmented_copies(x, settings.recipe, settings.copies, settings.seed)])
        grown_y = np.concatenate([y] * (settings.copies + 1))
        origin = np.tile(np.arange(x.shape[0], dtype=np.int64), settings.copies + 1)
        info["train_samples"] = {"original": int(x.shape[0]), "total": int(grown_x.shape[0])}
        arrays = {"x_train": grown_x, "y_train": grown_y, "origin_index": origin}
        if "id_train" in collected:
            arrays["id_train"] = np.asarray(collected["id_train"])[origin]
        return Artifact(arrays, info)
