"""Checks on raw data before it is split: errors for what no model can use, warnings for what looks wrong."""

from __future__ import annotations

import warnings

import numpy as np

from datasets.base import DataWarning, RawData, check_real

IMBALANCE_RATIO = 10.0


FLOAT32_MAX = float(np.finfo(np.float32).max)


def _where(x: np.ndarray, index: tuple[int, ...]) -> str:
    return f"sample {index[0]}, feature {index[1]}" if x.ndim == 2 else f"sample {index[0]}, pixel {index[1:]}"


def validate(data: RawData, source: str) -> RawData:
    """Raise a `ValueError` naming the problem and where it is; warn about imbalance and duplicates."""
    check_usable(data, source)
    for message in data_warnings(data, source):
        warnings.warn(message, DataWarning, stacklevel=2)
    return data


def check_usable(data: RawData, source: str, min_classes: int = 2) -> None:
    """Raise a `ValueError` naming what no model can use: not `RawData` at all (a plugin's loader
    returned something else), no samples, mismatched labels, labels beyond the class names, NaN, one class."""
    if not isinstance(data, RawData):
        raise ValueError(f"{source}: the loader returned {type(data).__name__}, not datasets.RawData(x, y, class_names).")
    x, y = data.x, data.y
    if x.shape[0] == 0:
        raise ValueError(f"{source} has no samples.")
    if x.ndim not in (2, 4):
        raise ValueError(f"{source} gives features of shape {x.shape}; expected (N, F) or (N, C, H, W).")
    if x.ndim == 2 and x.shape[1] == 0:
        raise ValueError(f"{source} has no features.")
    check_real(x, source, "features")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"{source} has {x.shape[0]} samples but labels of shape {y.shape}.")
    if np.issubdtype(x.dtype, np.floating):
        bad = ~np.isfinite(x)
        if bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"{source} has {x[index]} at {_where(x, index)}.")
        huge = np.abs(x) > FLOAT32_MAX
        if huge.any():  # finite here, infinite once training's float32 arithmetic sees it
            index = tuple(int(i) for i in np.argwhere(huge)[0])
            raise ValueError(f"{source} has {x[index]:g} at {_where(x, index)}, beyond float32's range (about 3.4e38); rescale it at the source.")
    if y.size and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= len(data.class_names)):
        raise ValueError(
            f"{source} gives labels from {y.min()} to {y.max()} ({y.dtype}) but names {len(data.class_names)} classes "
            f"({', '.join(map(str, data.class_names[:5]))}{', ...' if len(data.class_names) > 5 else ''}); labels are 0..{len(data.class_names) - 1}."
        )
    named = [str(name) for name in data.class_names]
    twice = sorted({name for name in named if named.count(name) > 1})
    if twice:
        raise ValueError(f"{source} names {len(named)} classes but {', '.join(map(repr, twice))} more than once; each class needs a name of its own.")
    counts = np.bincount(y, minlength=len(data.class_names))
    if np.count_nonzero(counts) < min_classes:
        raise ValueError(f"{source} has fewer than two classes ({data.class_names[int(np.argmax(counts))]!r} only).")


def data_warnings(data: RawData, source: str) -> list[str]:
    """What can be used but deserves a look, one sentence each: what the loader noted, heavy class
    imbalance, duplicate rows."""
    found = list(data.warnings)
    counts = np.bincount(data.y, minlength=len(data.class_names))
    present = counts[counts > 0]
    if present.max() / present.min() > IMBALANCE_RATIO:
        rare = data.class_names[int(np.argmin(np.where(counts > 0, counts, counts.max() + 1)))]
        found.append(f"{source}: heavily imbalanced: class {rare!r} has {present.min()} samples, the largest has {present.max()}")
    if data.x.ndim == 2:
        duplicates = data.x.shape[0] - np.unique(data.x, axis=0).shape[0]
        if duplicates:
            found.append(f"{source}: {duplicates} duplicate feature rows")
    return found
