"""scale: fit min-max or standard scaling on the training split only, then apply it to every split.

The samples' identities (`id_<split>`, see `collect`) pass through unchanged, with the training
split's as `augment` grew it. The training samples `data.train_fraction` left out
(`x_unlabelled`) are scaled too, with the statistics of the training split."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from types import ModuleType
from typing import Any

import numpy as np

import transforms.scalers
from pipeline.cache import Artifact
from pipeline.config import Config, ScaleConfig
from pipeline.lookup import DecodedArrays, LookupCoded
from pipeline.stages.base import RunContext, Stage
from pipeline.stages.collect import SPLITS


def make_scaler(settings: ScaleConfig) -> transforms.scalers.StandardScaler | transforms.scalers.MinMaxScaler | None:
    if settings.method == "standard":
        return transforms.scalers.StandardScaler(axis=settings.axis)
    if settings.method == "minmax":
        return transforms.scalers.MinMaxScaler(feature_range=settings.feature_range, axis=settings.axis)
    return None


def finite(x: np.ndarray, what: str) -> np.ndarray:
    """`x`, if every value is finite; else a `ValueError` naming the first sample and feature that
    is not (1e300 is a valid float64 that overflows float32 once scaled), so no NaN reaches training."""
    if np.isfinite(x.sum()):  # one pass, no mask: a NaN or inf anywhere makes the sum one (a finite overflow is rechecked below)
        return x
    bad = ~np.isfinite(x)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        where = f"feature {index[1]}" if x.ndim == 2 else f"pixel {index[1:]}"
        raise ValueError(f"the {what} holds {x[index]} at sample {index[0]}, {where}: the input's values are too large for float32 arithmetic; rescale them at the source.")
    return x


def scaled(scaler: transforms.scalers.StandardScaler | transforms.scalers.MinMaxScaler | None, x: np.ndarray, what: str) -> np.ndarray | LookupCoded:
    """`x` scaled to float32, checked finite; 8-bit `x` as its bytes and a table of what each
    byte scales to (`LookupCoded`) where that is smaller than the float32 array, decoded to the
    same bits."""
    if x.dtype.itemsize == 1 and x.dtype.kind in "uib" and x.ndim >= 1:
        table = identity_table(x) if scaler is None else scaler.lookup_table(x).numpy()
        if x.nbytes + table.nbytes < 4 * x.size:
            coded = LookupCoded(x, table)
            if not np.isfinite(table).all():  # a byte that scales past float32: an error only if it occurs
                finite(coded.decode(), what)
            return coded
    data = scaler.transform(x) if scaler else np.asarray(x, dtype=np.float32)
    return finite(data.astype(np.float32, copy=False), what)


def identity_table(x: np.ndarray) -> np.ndarray:
    """The lookup table of 8-bit `x` unscaled: each byte's value as float32, one column for all."""
    values = np.arange(256, dtype=np.uint8).view(np.int8) if x.dtype == np.int8 else np.minimum(np.arange(256), 1) if x.dtype == np.bool_ else np.arange(256)
    return values.astype(np.float32).reshape(256, *([1] * (x.ndim - 1)))


FAR = 1e4  # a scaled value this many training spreads out: Chebyshev puts it at odds below 1e-8


def far_outside_training(arrays: Mapping[str, np.ndarray], source: str) -> list[str]:
    """A warning for each of the validation and test splits whose scaled values lie more than `FAR`
    training spreads (standard deviations, or min-max ranges) out: a feature constant or nearly
    so in training but not there, or a shift between splits; the network extrapolates wildly."""
    found = []
    for split in ("val", "test"):
        x = arrays[f"x_{split}"]
        if x.size == 0 or float(np.abs(x).max()) <= FAR:
            continue
        index = np.unravel_index(int(np.argmax(np.abs(x))), x.shape)
        where = f"feature {index[1]}" if x.ndim == 2 else f"pixel {tuple(int(i) for i in index[1:])}"
        found.append(
            f"{source}: the scaled {split} split holds {x[index]:.3g} at sample {index[0]}, {where}, more than {FAR:,.0f} times the "
            "training split's spread (a feature constant, or nearly, in training?); the network meets values it never trained near"
        )
    return found


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
        ids = {split: collected[f"id_{split}"] for split in SPLITS if f"id_{split}" in collected}
        if "x_train" in augmented:
            raw["train"], labels["train"] = augmented["x_train"], augmented["y_train"]
            ids.pop("train", None)
            if "id_train" in augmented:
                ids["train"] = augmented["id_train"]
        scaler = make_scaler(config.scale)
        arrays: dict[str, np.ndarray | LookupCoded] = {}
        info: dict[str, Any] = {"method": config.scale.method, "axis": config.scale.axis}
        if scaler is not None:
            scaler.fit(raw["train"])
            info["scaler"] = scaler.state_dict()
        for split in SPLITS:
            arrays[f"x_{split}"] = scaled(scaler, raw[split], f"scaled {split} split")
            arrays[f"y_{split}"] = labels[split]
            if split in ids:
                arrays[f"id_{split}"] = np.asarray(ids[split], dtype=np.int64)
        if "x_unlabelled" in collected:  # scaled as the training split was; never fitted on
            arrays["x_unlabelled"] = scaled(scaler, collected["x_unlabelled"], "scaled unlabelled training samples")
        decoded = DecodedArrays(arrays)
        if scaler is not None:
            info["warnings"] = far_outside_training(decoded, config.data.source)
        return Artifact(decoded, info)
