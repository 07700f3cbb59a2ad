"""Checks on raw data before it is split: errors for what no model can use, warnings for what looks wrong."""

from __future__ import annotations

import warnings

import numpy as np

from datasets.base import DataWarning, RawData

IMBALANCE_RATIO = 10.0


def validate(data: RawData, source: str) -> RawData:
    """Raise a `ValueError` naming the problem and where it is; warn about imbalance and duplicates."""
    x, y = data.x, data.y
    if x.shape[0] == 0:
        raise ValueError(f"{source} has no samples.")
    if x.ndim not in (2, 4):
        raise ValueError(f"{source} gives features of shape {x.shape}; expected (N, F) or (N, C, H, W).")
    if x.ndim == 2 and x.shape[1] == 0:
        raise ValueError(f"{source} has no features.")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"{source} has {x.shape[0]} samples but labels of shape {y.shape}.")
    if np.issubdtype(x.dtype, np.floating):
        bad = ~np.isfinite(x)
        if bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            where = f"sample {index[0]}, feature {index[1]}" if x.ndim == 2 else f"sample {index[0]}, pixel {index[1:]}"
            raise ValueError(f"{source} has {x[index]} at {where}.")
    counts = np.bincount(y, minlength=len(data.class_names))
    present = counts[counts > 0]
    if present.size < 2:
        raise ValueError(f"{source} has fewer than two classes ({data.class_names[int(np.argmax(counts))]!r} only).")
    if present.max() / present.min() > IMBALANCE_RATIO:
        rare = data.class_names[int(np.argmin(np.where(counts > 0, counts, counts.max() + 1)))]
        warnings.warn(
            f"{source} is heavily imbalanced: class {rare!r} has {present.min()} samples, the largest has {present.max()}.",
            DataWarning,
            stacklevel=2,
        )
    if x.ndim == 2:
        duplicates = x.shape[0] - np.unique(x, axis=0).shape[0]
        if duplicates:
            warnings.warn(f"{source} has {duplicates} duplicate feature rows.", DataWarning, stacklevel=2)
    return data
