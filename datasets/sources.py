"""Data sources: each turns a name from `data.source` into raw arrays plus their provenance."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

SOURCES: dict[str, Callable[[], "RawData"]] = {}


@dataclass
class RawData:
    """A whole dataset before splitting: samples first, integer labels, one name per class."""

    x: np.ndarray
    y: np.ndarray
    class_names: list[str]
    provenance: dict[str, Any] = field(default_factory=dict)


def register_source(name: str) -> Callable[[Callable[[], RawData]], Callable[[], RawData]]:
    """Make a loader available as `data.source: <name>`."""

    def decorate(loader: Callable[[], RawData]) -> Callable[[], RawData]:
        SOURCES[name] = loader
        return loader

    return decorate


def load_source(name: str) -> RawData:
    try:
        loader = SOURCES[name]
    except KeyError:
        raise ValueError(f"Unknown data source {name!r}. Known sources: {', '.join(sorted(SOURCES))}.") from None
    return validate(loader(), name)


def validate(data: RawData, name: str) -> RawData:
    """Reject data no split or model can use, naming what is wrong."""
    if data.x.shape[0] == 0:
        raise ValueError(f"Source {name!r} has no samples.")
    if data.x.shape[0] != data.y.shape[0]:
        raise ValueError(f"Source {name!r} has {data.x.shape[0]} samples but {data.y.shape[0]} labels.")
    if np.issubdtype(data.x.dtype, np.floating) and not np.isfinite(data.x).all():
        index = tuple(int(i) for i in np.argwhere(~np.isfinite(data.x))[0])
        raise ValueError(f"Source {name!r} has a non-finite value at index {index}.")
    if np.unique(data.y).size < 2:
        raise ValueError(f"Source {name!r} has fewer than two classes.")
    return data


@register_source("sklearn:digits")
def load_digits_images() -> RawData:
    """scikit-learn's bundled 1,797 handwritten digits as uint8 images `(N, 1, 8, 8)`, values 0-16."""
    import sklearn
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.astype(np.uint8)[:, None, :, :]
    provenance = {"source": "sklearn:digits", "sklearn": sklearn.__version__}
    return RawData(images, bunch.target.astype(np.int64), [str(c) for c in bunch.target_names], provenance)
