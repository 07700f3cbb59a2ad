"""Reading MNIST-style IDX files (optionally gzipped) into numpy arrays."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np

from datasets.base import RawData, SourceOptions, check_discrete, hash_files, register_source

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: str | Path) -> np.ndarray:
    """The array in an IDX file; a `.gz` suffix means gzip. Errors name the file and what is wrong."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as exc:
        raise ValueError(f"Cannot read IDX file {path}: {exc}") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {data[:4].hex()}).")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_DTYPES[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(f"{path} should hold {expected} bytes of data for shape {shape} but holds {len(data) - header}.")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _existing(directory: Path, stem: str, notes: list[str]) -> Path | None:
    """The file `stem` or else `stem.gz`; where both exist the plain one is read, and `notes` says so."""
    plain, packed = directory / stem, directory / f"{stem}.gz"
    if plain.is_file() and packed.is_file():
        notes.append(f"{directory} holds both {stem} and {stem}.gz; reading {stem} (remove the one you do not mean)")
    return next((p for p in (plain, packed) if p.is_file()), None)


def idx_pairs(directory: Path, notes: list[str] | None = None) -> dict[str, tuple[Path, Path]]:
    """The complete (images, labels) file pairs in `directory`, by split; half a pair is an error.
    What a reader should know about the choice of files (plain beside gzipped) goes to `notes`."""
    notes = [] if notes is None else notes
    pairs = {}
    for split, (images_stem, labels_stem) in IDX_NAMES.items():
        images, labels = _existing(directory, images_stem, notes), _existing(directory, labels_stem, notes)
        if images and labels:
            pairs[split] = (images, labels)
        elif images or labels:
            missing = labels_stem if images else images_stem
            raise ValueError(f"{directory} has {(images or labels).name} but not {missing}[.gz].")
    return pairs


def expected_idx_files(directory: Path) -> str:
    names = [f"{stem}[.gz]" for pair in IDX_NAMES.values() for stem in pair]
    return f"{', '.join(names)} in {directory}"


def load_idx_directory(directory: Path, source: str) -> RawData:
    """MNIST-style files in one folder: the training pair if present (the test pair, if present
    too, becomes the official test split), else the test pair alone (a folder of t10k files)."""
    notes: list[str] = []
    pairs = idx_pairs(directory, notes) if directory.is_dir() else {}
    if not pairs:
        raise ValueError(f"{source}: no IDX files found; expected {expected_idx_files(directory)}.")
    main_split = "train" if "train" in pairs else "test"
    x, y = _read_pair(*pairs[main_split])
    test = _read_pair(*pairs["test"]) if main_split == "train" and "test" in pairs else None
    classes = np.unique(np.concatenate([y, test[1]]) if test else y)
    if test:
        test = (test[0], np.searchsorted(classes, test[1]))
    return RawData(x, np.searchsorted(classes, y), [str(c) for c in classes], {"source": source}, test=test, warnings=notes)


def _read_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim == 3:
        images = images[:, None, :, :]
    if images.ndim != 4 or labels.ndim != 1:
        raise ValueError(f"{images_path} should hold (N, H, W) images and {labels_path} (N,) labels; got {images.shape} and {labels.shape}.")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images_path} holds {images.shape[0]} images but {labels_path} holds {labels.shape[0]} labels.")
    check_discrete(labels, str(labels_path), "labels")  # 0.2 and 0.8 must not both become class 0
    return images, labels.astype(np.int64)


def _idx_fingerprint(argument: str, options: SourceOptions) -> dict[str, Any]:
    directory = Path(argument)
    if not directory.is_dir():
        raise ValueError(f"idx:{argument}: {directory} is not a folder.")
    return hash_files([path for pair in idx_pairs(directory).values() for path in pair], relative_to=directory)


@register_source("idx", fingerprint=_idx_fingerprint, reads=())
def load_idx(argument: str, options: SourceOptions) -> RawData:
    """`idx:<dir>`: MNIST-format files (gzipped or not) in a folder."""
    return load_idx_directory(Path(argument), f"idx:{argument}")
