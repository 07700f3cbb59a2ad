"""`torchvision:<name>` with `data.root`: the files torchvision's datasets keep on disk, read locally.

MNIST, FashionMNIST and KMNIST are IDX files in `<root>/<name>/raw`; CIFAR10 and CIFAR100
are the python pickles in `<root>/cifar-10-batches-py` and `<root>/cifar-100-python` (a
pickle runs code when read: use files from a source you trust). Nothing is downloaded
unless `data.download` is true, in which case torchvision fetches the files first.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from datasets.base import RawData, SourceOptions, hash_files, register_source
from datasets.idx import expected_idx_files, idx_pairs, load_idx_directory

MNIST_FAMILY = ("MNIST", "FashionMNIST", "KMNIST")
CIFAR = {
    "CIFAR10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "batches.meta", "labels", "label_names"),
    "CIFAR100": ("cifar-100-python", ["train"], ["test"], "meta", "fine_labels", "fine_label_names"),
}
NAMES = (*MNIST_FAMILY, *CIFAR)


def _root(name: str, options: SourceOptions) -> Path:
    if name not in NAMES:
        raise ValueError(f"Unknown torchvision dataset {name!r}. Known: {', '.join(NAMES)}.")
    if not options.root:
        raise ValueError(f"torchvision:{name} needs data.root, the folder that holds (or will hold) its files.")
    return Path(options.root)


def _expected_files(name: str, root: Path) -> tuple[list[Path], str]:
    """The files the dataset needs and a sentence saying where they go."""
    if name in MNIST_FAMILY:
        raw = root / name / "raw"
        pairs = idx_pairs(raw) if raw.is_dir() else {}
        files = [path for pair in pairs.values() for path in pair] if len(pairs) == 2 else []
        return files, expected_idx_files(raw)
    folder, train, test, meta, _, _ = CIFAR[name]
    names = [*train, *test, meta]
    files = [root / folder / n for n in names]
    return (files if all(f.is_file() for f in files) else []), f"{', '.join(names)} in {root / folder}"


def _ensure_files(name: str, options: SourceOptions) -> list[Path]:
    root = _root(name, options)
    files, where = _expected_files(name, root)
    if files:
        return files
    if not options.download:
        raise ValueError(
            f"torchvision:{name}: files not found; expected {where}. Copy them there, or set "
            f"data.download=true to let torchvision fetch them into {root} (needs network access)."
        )
    import torchvision.datasets

    for train in (True, False):
        getattr(torchvision.datasets, name)(str(root), train=train, download=True)
    files, where = _expected_files(name, root)
    if not files:
        raise ValueError(f"torchvision:{name}: the download did not leave {where}.")
    return files


def _fingerprint(argument: str, options: SourceOptions) -> dict[str, Any]:
    return hash_files(_ensure_files(argument, options), relative_to=Path(options.root))


def _unpickle(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return pickle.load(handle, encoding="latin1")
    except (OSError, pickle.UnpicklingError, EOFError) as exc:
        raise ValueError(f"Cannot read CIFAR file {path}: {exc}") from exc


def _load_cifar(name: str, root: Path) -> RawData:
    folder, train, test, meta, label_key, names_key = CIFAR[name]

    def read(batches: list[str]) -> tuple[np.ndarray, np.ndarray]:
        parts = [_unpickle(root / folder / batch) for batch in batches]
        x = np.concatenate([np.asarray(p["data"], dtype=np.uint8) for p in parts]).reshape(-1, 3, 32, 32)
        y = np.concatenate([np.asarray(p[label_key], dtype=np.int64) for p in parts])
        return x, y

    x, y = read(train)
    class_names = [str(n) for n in _unpickle(root / folder / meta)[names_key]]
    return RawData(x, y, class_names, {"source": f"torchvision:{name}"}, test=read(test))


def _mnist_class_names(name: str, codes: list[str]) -> list[str]:
    """torchvision's names for the classes ("T-shirt/top", ...) when torchvision is installed."""
    try:
        import torchvision.datasets
    except ImportError:
        return codes
    names = [str(n) for n in getattr(torchvision.datasets, name).classes]
    return [names[int(code)] for code in codes] if all(c.isdigit() and int(c) < len(names) for c in codes) else codes


@register_source("torchvision", fingerprint=_fingerprint, reads=("root", "download"))
def load_torchvision(argument: str, options: SourceOptions) -> RawData:
    """`torchvision:<MNIST|FashionMNIST|KMNIST|CIFAR10|CIFAR100>` from `data.root`."""
    _ensure_files(argument, options)
    root = _root(argument, options)
    if argument in MNIST_FAMILY:
        data = load_idx_directory(root / argument / "raw", f"torchvision:{argument}")
        data.class_names = _mnist_class_names(argument, data.class_names)
        return data
    return _load_cifar(argument, root)
