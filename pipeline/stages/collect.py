"""collect: load the source, validate it and split it into train / val / test."""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

import numpy as np

import datasets.sources
import datasets.splits
from pipeline.cache import Artifact
from pipeline.config import Config
from pipeline.stages.base import RunContext, Stage

SPLITS = ("train", "val", "test")


class CollectStage(Stage):
    name = "collect"
    version = "1"

    def code(self) -> tuple[ModuleType, ...]:
        return (sys.modules[__name__], datasets.sources, datasets.splits)

    def params(self, config: Config) -> dict[str, Any]:
        import sklearn

        # The bundled data ships with scikit-learn, so its version identifies the source's content.
        return {**config.data.model_dump(mode="json"), "sklearn": sklearn.__version__}

    def run(self, inputs: dict[str, Artifact], config: Config, context: RunContext) -> Artifact:
        raw = datasets.sources.load_source(config.data.source)
        indices = datasets.splits.stratified_split(
            raw.y, config.data.val_fraction, config.data.test_fraction, config.data.seed
        )
        arrays: dict[str, np.ndarray] = {}
        counts = {}
        for split, index in zip(SPLITS, indices):
            arrays[f"x_{split}"] = raw.x[index]
            arrays[f"y_{split}"] = raw.y[index]
            counts[split] = np.bincount(raw.y[index], minlength=len(raw.class_names)).tolist()
        info = {
            "class_names": raw.class_names,
            "provenance": raw.provenance,
            "sample_shape": list(raw.x.shape[1:]),
            "dtype": str(raw.x.dtype),
            "class_counts": counts,
        }
        return Artifact(arrays, info)
