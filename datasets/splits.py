"""Stratified, seeded train / validation / test splits, and nested training subsets."""

from __future__ import annotations

import math

import numpy as np
from sklearn.model_selection import train_test_split


def check_class_sizes(y: np.ndarray, class_names: list[str], needed: int, source: str) -> None:
    """Every class must have at least `needed` samples to appear in each stratified split."""
    counts = np.bincount(y, minlength=len(class_names))
    for index in np.flatnonzero((counts > 0) & (counts < needed)):
        raise ValueError(
            f"{source}: class {class_names[index]!r} has {counts[index]} sample(s); a stratified split "
            f"into train, validation and test needs at least {needed}."
        )


def stratified_split(
    y: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the train, validation and test splits; each class keeps its share in every split.

    With `test_fraction` 0 the test split is empty (for sources with their own test split).
    """
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(f"data.val_fraction + data.test_fraction must be below 1, got {val_fraction} + {test_fraction}.")
    indices = np.arange(len(y))
    if test_fraction > 0:
        rest, test = train_test_split(indices, test_size=test_fraction, stratify=y, random_state=seed)
    else:
        rest, test = indices, indices[:0]
    val_share = val_fraction / (1.0 - test_fraction)
    train, val = train_test_split(rest, test_size=val_share, stratify=y[rest], random_state=seed)
    return np.sort(train), np.sort(val), np.sort(test)


def nested_subset(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted positions of a stratified `fraction` of `y`; for one seed, smaller fractions lie inside larger ones.

    Each class is shuffled once by `seed` and the first `ceil(fraction * count)` are kept,
    so a sweep over fractions is a clean learning curve.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"data.train_fraction must be in (0, 1], got {fraction}.")
    rng = np.random.default_rng(seed)
    keep = []
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        order = rng.permutation(members)
        keep.append(order[: max(1, math.ceil(fraction * len(members)))])
    return np.sort(np.concatenate(keep))
