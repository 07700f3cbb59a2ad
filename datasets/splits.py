"""Stratified, seeded train / validation / test splits, and nested training subsets."""

from __future__ import annotations

import math

import numpy as np


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
        rest, test = _stratified(indices, test_fraction, y, seed, "data.test_fraction")
    else:
        rest, test = indices, indices[:0]
    val_share = val_fraction / (1.0 - test_fraction)
    train, val = _stratified(rest, val_share, y[rest], seed, "data.val_fraction")
    return np.sort(train), np.sort(val), np.sort(test)


def _stratified(indices: np.ndarray, share: float, y: np.ndarray, seed: int, key: str) -> list[np.ndarray]:
    """scikit-learn's stratified split, its complaints about too few samples said in the settings' words."""
    from sklearn.model_selection import train_test_split  # here: importing the data package stays light

    try:
        return train_test_split(indices, test_size=share, stratify=y, random_state=seed)
    except ValueError as exc:
        raise ValueError(
            f"{key} cannot take a stratified share of {len(indices)} samples in {len(np.unique(y))} classes ({exc}); "
            "lower data.val_fraction or data.test_fraction, or use more data."
        ) from None


def kfold_split(
    y: np.ndarray, folds: int, fold: int, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the train, validation and test splits where the test split is fold `fold` of a
    stratified `folds`-fold partition drawn by `seed`; validation is a stratified `val_fraction`
    of all samples, taken from the other folds, and the rest trains.

    The folds are equal in size, so every fold's splits have the same shapes (and their trainings
    fuse): `len(y) % folds` samples, drawn by `seed`, are in no test fold and train in every fold.
    Within each class, consecutive samples of a shuffled order go to consecutive folds, so each
    class's count differs by at most one between folds. For one seed, the folds' test splits
    partition every other sample.
    """
    if not 0 <= fold < folds:
        raise ValueError(f"data.fold must be one of 0..{folds - 1} for data.folds={folds}, got {fold}.")
    if len(y) < 2 * folds:
        raise ValueError(f"data.folds={folds} splits {len(y)} samples into folds of {len(y) // folds}; each test fold needs at least 2, so use at most {len(y) // 2} folds.")
    val_share = val_fraction * folds / (folds - 1)  # of the samples outside the test fold
    if val_share >= 1.0:
        raise ValueError(f"data.val_fraction={val_fraction} leaves no training samples beside a test fold of 1/{folds}; lower it below {(folds - 1) / folds:.3g}.")
    order = np.random.default_rng(seed).permutation(len(y))
    scored = order[len(y) % folds :]
    scored = scored[np.argsort(y[scored], kind="stable")]  # grouped by class, shuffled within each
    test = scored[fold::folds]
    rest = np.setdiff1d(np.arange(len(y)), test)
    train, val = _stratified(rest, val_share, y[rest], seed, "data.val_fraction")
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
