"""What a data source is: a loader registered under a kind (`csv`, `idx`, ...) that returns `RawData`.

`data.source` reads `<kind>:<argument>`, for example `csv:data/train.csv` or
`sklearn:digits`. A source also says what identifies its content (file hashes, a library
version), so the pipeline's `collect` key changes when the data does, not just its path.
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np


class DataWarning(UserWarning):
    """Data that can be used but deserves a look (class imbalance, duplicate rows)."""


@dataclass(frozen=True)
class SourceOptions:
    """Source settings from the `data` section; each source reads the ones it needs (and says
    which, in `register_source(reads=...)`, so the others stay out of its cache key)."""

    root: str | None = None
    download: bool = False
    target: str | int | None = None  # a column name, or a position (negative counts from the end)
    categorical: str = "onehot"
    header: str | bool = "auto"  # auto: a first row that parses entirely as numbers is data
    decimal: str = "auto"  # auto: a decimal comma when the delimiter is not a comma and numbers are written 5,1
    x_key: str = "x"
    y_key: str = "y"
    layout: str = "auto"  # auto: (N, H, W, C) with C in 1, 3, 4 (and the second axis not) is channels-last
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
    warnings: list[str] = field(default_factory=list)  # what the loader changed or noticed, for the record


Loader = Callable[[str, SourceOptions], RawData]
Fingerprint = Callable[[str, SourceOptions], dict[str, Any]]


@dataclass(frozen=True)
class Source:
    kind: str
    load: Loader
    fingerprint: Fingerprint
    reads: tuple[str, ...] | None = None  # the SourceOptions it reads; None: any of them


SOURCES: dict[str, Source] = {}


def _no_fingerprint(argument: str, options: SourceOptions) -> dict[str, Any]:
    return {}


def register_source(
    kind: str, fingerprint: Fingerprint | None = None, reads: tuple[str, ...] | None = None
) -> Callable[[Loader], Loader]:
    """Register `load(argument, options) -> RawData` as `data.source: <kind>:<argument>`.

    `fingerprint(argument, options)` returns what identifies the content (see `hash_files`);
    without one, the pipeline keys the source by its parameters and the loader's code.
    `reads` names the `SourceOptions` the loader uses (for example `("target",)`): only those
    enter the cache key, so changing another one rebuilds nothing. Without it, all of them do.
    """
    unknown = set(reads or ()) - {option.name for option in fields(SourceOptions)}
    if unknown:
        raise ValueError(f"register_source({kind!r}, reads=...) names unknown options {sorted(unknown)}.")

    def decorate(load: Loader) -> Loader:
        SOURCES[kind] = Source(kind, load, fingerprint or _no_fingerprint, reads)
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


CONTINUOUS_DISTINCT = 20  # more distinct numeric labels than this, and more than half the rows: a regression target


def check_discrete(labels: np.ndarray, source: str, name: str) -> None:
    """Refuse labels that look like a regression target (non-integral numbers, or as many distinct
    values as rows), with what they are and how to bin them: a classifier cannot learn them."""
    values = np.asarray(labels)
    if values.dtype.kind not in "iuf":
        return
    if values.dtype.kind == "f" and np.isnan(values).any():
        raise ValueError(f"{source}: the target {name!r} is missing (NaN) at sample {int(np.flatnonzero(np.isnan(values))[0])}; every sample needs a label.")
    if values.dtype.kind == "f" and np.isinf(values).any():
        raise ValueError(f"{source}: the target {name!r} is infinite at sample {int(np.flatnonzero(np.isinf(values))[0])}; labels are classes (whole numbers or text).")
    distinct = np.unique(values)
    non_integral = values.dtype.kind == "f" and bool(np.any(distinct != np.round(distinct)))
    if non_integral or (distinct.size > CONTINUOUS_DISTINCT and distinct.size > values.size / 2):
        examples = ", ".join(f"{value:g}" for value in distinct[np.linspace(0, distinct.size - 1, 3).astype(int)])
        raise ValueError(
            f"{source}: the target {name!r} has {distinct.size} distinct values among {values.size} rows ({examples}, ...) "
            "and looks continuous, as a regression target does; this pipeline classifies. To classify ranges of it, "
            f"bin it into a new column first, e.g. with pandas: df['{name}_bin'] = pd.qcut(df['{name}'], q=4, labels=False)."
        )


def host_memory_bytes() -> int | None:
    """This machine's physical memory in bytes, or None where the platform does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_real(array: np.ndarray, source: str, name: str) -> None:
    """Refuse complex numbers (casting them to real would drop the imaginary part without a word),
    and times and durations (their casts to numbers are units the network cannot know)."""
    if array.dtype.kind in "mM":
        raise ValueError(
            f"{source}: array {name!r} holds {'durations' if array.dtype.kind == 'm' else 'times'} ({array.dtype}), not numbers; "
            "convert it to numbers first (e.g. seconds: array / np.timedelta64(1, 's'))."
        )
    if np.iscomplexobj(array):
        raise ValueError(
            f"{source}: array {name!r} holds complex numbers ({array.dtype}); the pipeline needs real ones. "
            "Store the real and imaginary parts (or magnitude and phase) as separate features."
        )


def composed(labels: np.ndarray, source: str, name: str, notes: list[str]) -> np.ndarray:
    """Text labels as one spelling each: bytes decoded as UTF-8, Unicode in its composed form
    (NFC), so "café" typed two ways is one class; `notes` says how many labels changed."""
    if labels.dtype.kind == "S":
        try:
            labels = np.char.decode(labels, "utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{source}: labels {name!r} are bytes that are not UTF-8 text ({exc.reason} at byte {exc.start}).") from None
    if labels.dtype.kind not in "UO":
        return labels
    normal = np.array([unicodedata.normalize("NFC", v) if isinstance(v, str) else v for v in labels.tolist()], dtype=labels.dtype)
    changed = int(np.sum(normal != labels))
    if changed:
        notes.append(f"{source}: {changed} labels of {name!r} were in decomposed Unicode; read in composed form (NFC), as one class with their composed spelling")
    return normal


def encode_labels(labels: np.ndarray | list[Any]) -> tuple[np.ndarray, list[str]]:
    """Integer codes `0..k-1` and the class names (sorted unique labels, as text)."""
    values = np.asarray(labels)
    classes, codes = np.unique(values, return_inverse=True)
    return codes.astype(np.int64), [str(c) for c in classes]
