"""scikit-learn's bundled datasets: `sklearn:digits` (8x8 images) and three tabular ones."""

from __future__ import annotations

import importlib.metadata
from typing import Any

import numpy as np

from datasets.base import RawData, SourceOptions, register_source

TABULAR = ("iris", "wine", "breast_cancer")


def _sklearn_version(argument: str, options: SourceOptions) -> dict[str, Any]:
    # The data ships inside scikit-learn, so its version identifies the content; read from the
    # package's metadata, as importing scikit-learn to ask would take a second.
    return {"sklearn": importlib.metadata.version("scikit-learn")}


@register_source("sklearn", fingerprint=_sklearn_version, reads=())
def load_sklearn(argument: str, options: SourceOptions) -> RawData:
    """`digits` as uint8 images `(N, 1, 8, 8)` with values 0-16; `iris`, `wine`, `breast_cancer` as float32 tables."""
    from sklearn import datasets as bundled

    if argument == "digits":
        bunch = bundled.load_digits()
        x = bunch.images.astype(np.uint8)[:, None, :, :]
        features = None
    elif argument in TABULAR:
        bunch = getattr(bundled, f"load_{argument}")()
        x = bunch.data.astype(np.float32)
        features = [str(name) for name in bunch.feature_names]
    else:
        raise ValueError(f"Unknown scikit-learn dataset {argument!r}. Known: digits, {', '.join(TABULAR)}.")
    names = [str(name) for name in bunch.target_names]
    return RawData(x, bunch.target.astype(np.int64), names, {"source": f"sklearn:{argument}"}, feature_names=features)
