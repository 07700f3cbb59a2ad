"""scale: fit min-max or standard scaling on the training split only, then apply it to every split."""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

import numpy as np

import transforms.scalers
from pipeline.cache import Artifact
from pipeline.config import Config, ScaleConfig
from pipeline.stages.base import RunContext, Stage
from pipeline.stages.collect import SPLITS


def make_scaler(settings: ScaleConfig) -> transforms.scalers.StandardScaler | transforms.scalers.MinMaxScaler | None:
    if settings.method == "standard":
        return transforms.scalers.StandardScaler(axis=settings.axis)
    if settings.method == "minmax":
        return transforms.scalers.MinMaxScaler(feature_range=settings.feature_range, axis=settings.axis)
    return None


class ScaleStage(Stage):
    name = "scale"
    version = "1"
    inputs = ("collect", "augment")

    def code(self, config: Config) -> tuple[ModuleType, ...]:
        return (sys.modules[__name__], transforms.scalers)

    def params(self, config: Config) -> dict[str, Any]:
        return config.scale.model_dump(mode="json")

    def describe(self, config: Config) -> str:
        settings = config.scale
        if settings.method == "none":
            return "none"
        span = f" to [{settings.feature_range[0]:g}, {settings.feature_range[1]:g}]" if settings.method == "minmax" else ""
        return f"{settings.method}{span} per {settings.axis}"

    def run(self, inputs: dict[str, Artifact], config: Config, context: RunContext) -> Artifact:
        collected, augmented = inputs["collect"].arrays, inputs["augment"].arrays
        raw = {split: collected[f"x_{split}"] for split in SPLITS}
        labels = {split: collected[f"y_{split}"] for split in SPLITS}
        if "x_train" in augmented:
            raw["train"], labels["train"] = augmented["x_train"], augmented["y_train"]
        scaler = make_scaler(config.scale)
        arrays: dict[str, np.ndarray] = {}
        info: dict[str, Any] = {"method": config.scale.method, "axis": config.scale.axis}
        if scaler is not None:
            scaler.fit(raw["train"])
            info["scaler"] = scaler.state_dict()
        for split in SPLITS:
            data = scaler.transform(raw[split]) if scaler else np.asarray(raw[split], dtype=np.float32)
            arrays[f"x_{split}"] = data.astype(np.float32, copy=False)
            arrays[f"y_{split}"] = labels[split]
        return Artifact(arrays, info)
