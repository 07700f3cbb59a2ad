"""What a data source is: a loader registered under a kind (`csv`, `idx`, ...) that returns `RawData`.

`data.source` reads `<kind>:<argument>`, for example `csv:data/train.csv` or
`sklearn:digits`. A source also says what identifies its content (file hashes, a library
version), so the pipeline's `collect` key changes when the data does, not just its path.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np


class DataWarning(UserWarning):
    """Data that can be used but deserves a look (class imbalance, duplicate rows)."""


@dataclass(frozen=True)
class SourceOptions:
    """Source settings from the `data` section; each source reads the ones it needs."""

    root: str | None = None
    download: bool = False
    target: str | None = None
    categorical: str = "onehot"
    x_key: str = "x"
    y_key: str = "y"
    image_size: tuple[int, int] | None = None


@dataclass
class RawData:
    """A dataset before splitting: samples first, integer labels `0..k-1`, one name per class.

    Images are `(N, C, H, W)`; tabular data is `(N, F)`. `test` holds a source's own test
    split when it has one (used with `data.use_official_test`).
    """

    x: np.ndarray
    y: np.ndarray
    class_names: list[str]
    provenance: dict[str, Any] = field(default_factory=dict)
    test: tuple[np.ndarray, np.ndarray] | None = None
    feature_names: list[str] | None = None


Loader = Callable[[str, SourceOptions], RawData]
Fingerprint = Callable[[str, SourceOptions], dict[str, Any]]


@dataclass(frozen=True)
class Source:
    kind: str
    load: Loader
    fingerprint: Fingerprint


SOURCES: dict[str, Source] = {}


def _no_fingerprint(argument: str, options: SourceOptions) -> dict[str, Any]:
    return {}


def register_source(kind: str, fingerprint: Fingerprint | None = None) -> Callable[[Loader], Loader]:
    """Register `load(argument, options) -> RawData` as `data.source: <kind>:<argument>`.

    `fingerprint(argument, options)` returns what identifies the content (see `hash_files`);
    without one, the pipeline keys the source by its parameters and the loader's code.
    """

    def decorate(load: Loader) -> Loader:
        SOURCES[kind] = Source(kind, load, fingerprint or _no_fingerprint)
        return load

    return decorate


def parse_source(text: str) -> tuple[Source, str]:
    """The registered source and its argument for `<kind>:<argument>`."""
    kind, _, argument = text.partition(":")
    source = SOURCES.get(kind)
    if source is None:
        raise ValueError(
            f"Unknown data source kind {kind!r} in {text!r}. Known kinds: {', '.join(sorted(SOURCES))} "
            "(written as kind:argument, e.g. csv:path/to/file.csv)."
        )
    return source, argument


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hash_files(paths: Iterable[Path], relative_to: Path | None = None) -> dict[str, Any]:
    """`{"files": {name: sha256}}` for a source's files; a missing or unreadable file is named."""
    hashes = {}
    for path in sorted(paths):
        name = str(path.relative_to(relative_to)) if relative_to else str(path)
        try:
            hashes[name] = file_sha256(path)
        except OSError as exc:
            raise ValueError(f"Cannot read data file {path}: {exc.strerror or exc}.") from exc
    return {"files": hashes}


def encode_labels(labels: np.ndarray | list[Any]) -> tuple[np.ndarray, list[str]]:
    """Integer codes `0..k-1` and the class names (sorted unique labels, as text)."""
    values = np.asarray(labels)
    classes, codes = np.unique(values, return_inverse=True)
    return codes.astype(np.int64), [str(c) for c in classes]
