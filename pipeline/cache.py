"""The content-addressed stage cache: `<root>/<stage>/<key>/` holding `.npy` arrays and `meta.json`.

Writes go to a temporary folder beside the target and are renamed into place, with
`meta.json` written last, so an entry is either whole or absent. Readers re-hash every
file against `meta.json`; a missing, truncated or corrupt entry is logged and treated as
a miss. A file lock per key keeps two processes from building the same entry at once;
the operating system drops it when its holder dies, so a killed run never blocks the next.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from datasets.base import file_sha256
from pipeline.files import naming
from pipeline.lookup import DecodedArrays, LookupCoded

log = logging.getLogger(__name__)

META_FILE = "meta.json"
LAST_USED_FILE = ".last_used"
TEMP_PREFIX = ".tmp-"
CHECKPOINTS = ".checkpoints"
KEY_PATTERN = re.compile(r"^[0-9a-f]{64}$")
_ARRAY_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
# What writing to a read-only mount, or to a folder of another user, fails with.
READ_ONLY_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})
_SAID_UNWRITABLE: set[Path] = set()


@dataclass
class Artifact:
    """A stage's output: named arrays plus JSON-serialisable information about them."""

    arrays: Mapping[str, Any] = field(default_factory=dict)  # np.ndarray values; a stage may give `LookupCoded` ones
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class CachedArtifact:
    """An artifact as stored: its content digest and the `meta.json` that describes it."""

    artifact: Artifact
    sha256: str
    meta: dict[str, Any]


class CorruptEntry(Exception):
    """An entry on disk does not match its manifest."""


@dataclass(frozen=True)
class EntryInfo:
    """What `cache ls` shows of an entry or a training checkpoint (`kind`), read without hashing
    its files; `key` names what its lock is (a checkpoint's holder locks the same name)."""

    stage: str
    key: str
    path: Path
    bytes: int
    created: float
    last_used: float
    label: str = ""  # what the entry holds, in a few words (`Stage.describe`)
    kind: str = "entry"

    @classmethod
    def read(cls, stage: str, folder: Path) -> "EntryInfo":
        size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
        created, label = folder.stat().st_mtime, ""
        meta = _lenient_manifest(folder) or {}  # an unreadable one: verify reports it; here the folder's time stands in
        try:
            created, label = float(meta["created"]), str(meta.get("label", ""))
        except (KeyError, TypeError, ValueError):
            pass
        stamp = folder / LAST_USED_FILE
        last_used = max(created, stamp.stat().st_mtime) if stamp.exists() else created
        return cls(stage, folder.name, folder, size, created, last_used, label)

    @classmethod
    def checkpoint(cls, stage: str, path: Path) -> "EntryInfo":
        """A training's checkpoint (or a write of one that never finished), last touched when written."""
        status = path.stat()
        name = path.name.removeprefix(".").split(".")[0]  # `<name>.pt`, or `.<name>.pt.<uuid>.tmp` mid-write
        return cls(stage, name, path, status.st_size, status.st_mtime, status.st_mtime, "interrupted training", "checkpoint")


def _lenient_manifest(folder: Path) -> dict[str, Any] | None:
    """`folder`'s `meta.json` as an object, unchecked (for listing and comparing), or None."""
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # RecursionError: nested deeper than Python reads
        return None
    return meta if isinstance(meta, dict) else None


PER_SAMPLE_PREFIXES = ("x_", "y_", "id_")  # arrays with one row per sample of the split they name


def _stored_arrays(arrays: Mapping[str, Any]) -> dict[str, np.ndarray | LookupCoded]:
    """An artifact's arrays as they are to be stored: lookup-coded ones undecoded."""
    return {name: arrays.stored(name) if isinstance(arrays, DecodedArrays) else arrays[name] for name in arrays}


def _check_split_lengths(arrays: Mapping[str, np.ndarray | LookupCoded]) -> None:
    """`CorruptEntry` when an entry's per-sample arrays of one split disagree in length (`y_train`
    cut to 10 rows with its checksums recomputed would otherwise index past its end), whatever
    the checksums say."""
    lengths: dict[str, dict[str, int]] = {}
    for name, array in arrays.items():
        prefix = next((p for p in PER_SAMPLE_PREFIXES if name.startswith(p)), None)
        if prefix is not None and array.ndim > 0:
            lengths.setdefault(name.removeprefix(prefix), {})[name] = int(array.shape[0])
    for split, found in lengths.items():
        if len(set(found.values())) > 1:
            listed = ", ".join(f"{name} {length}" for name, length in sorted(found.items()))
            raise CorruptEntry(f"the {split} arrays disagree in length ({listed})")


def content_digest(files: dict[str, dict[str, Any]], info: dict[str, Any]) -> str:
    """One SHA-256 for an artifact: its files' checksums and its information, canonically encoded."""
    checksums = {name: entry["sha256"] for name, entry in files.items()}
    text = json.dumps({"files": checksums, "info": info}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# Information that says where an output came from, not what it is: left out of `output_digest`.
PROVENANCE_INFO = ("source", "provenance", "warnings")


def output_digest(cached: "CachedArtifact") -> str:
    """What downstream keys chain on: the arrays' checksums and the information later stages read,
    not where the data came from, so the same arrays from another file (a `;` CSV of a `,` one)
    give the same downstream keys and the stages after it hit (early cutoff)."""
    info = {name: value for name, value in cached.artifact.info.items() if name not in PROVENANCE_INFO}
    return content_digest(cached.meta["files"], info)


LOOKUP, CODES, TABLE = "lookup", ".codes", ".table"  # lookup-coded arrays: listed in the manifest, stored as two files each
MANIFEST_DIGEST = "manifest_sha256"  # the manifest's own checksum: its info (metrics, history) is as guarded as its arrays
_FILE_NAME = re.compile(r"^[A-Za-z0-9_.\-]+\.npy$")


def manifest_digest(meta: dict[str, Any]) -> str:
    """SHA-256 of the manifest's canonical JSON, its own checksum field left out."""
    body = {name: value for name, value in meta.items() if name != MANIFEST_DIGEST}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def read_manifest(path: Path) -> dict[str, Any]:
    """A `meta.json` that is whole and unedited, or `CorruptEntry` saying what is wrong: any other
    shape (a list for `files`, an entry without `bytes`, edited metrics) is a corrupt entry, which
    the cache rebuilds and `cache verify` removes, never a traceback."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CorruptEntry(f"{META_FILE} is missing") from None
    except (OSError, ValueError) as exc:
        raise CorruptEntry(f"{META_FILE} is unreadable ({exc.__class__.__name__}: {exc})") from None
    except RecursionError:
        raise CorruptEntry(f"{META_FILE} is nested deeper than a manifest is") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("info"), dict) or not isinstance(meta.get("files"), dict):
        raise CorruptEntry(f"{META_FILE} is not a manifest (an object with 'files' and 'info' mappings)")
    for name, entry in meta["files"].items():
        well_formed = isinstance(entry, dict) and type(entry.get("bytes")) is int and isinstance(entry.get("sha256"), str)
        if not (_FILE_NAME.match(name) and well_formed):
            raise CorruptEntry(f"{META_FILE} lists {name!r} as {entry!r}, not a .npy file with 'bytes' and 'sha256'")
    coded = meta.get(LOOKUP, [])
    if not (isinstance(coded, list) and all(isinstance(name, str) for name in coded)):
        raise CorruptEntry(f"{META_FILE} lists {LOOKUP!r} as {coded!r}, not a list of array names")
    if meta.get(MANIFEST_DIGEST) != manifest_digest(meta):
        raise CorruptEntry(f"{META_FILE} does not match its own checksum: edited, or written by an older gainsplit")
    return meta


def _new_hasher() -> None:
    """The hashing thread's pool; a forked child makes one of its own (the parent's thread is
    not there, and the inherited pool would wait for it forever)."""
    global _HASHER
    _HASHER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cache-sha256")


_HASHER: ThreadPoolExecutor
_new_hasher()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_hasher)


def _sha256(*parts: Any) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.hexdigest()


def write_array(path: Path, array: np.ndarray) -> dict[str, Any]:
    """Save `array` as a `.npy` file and return its manifest line (`sha256`, `bytes`): the bytes are
    hashed from memory on a second thread while they are written, so no file is read back."""
    array = np.asarray(array, order="C")  # ascontiguousarray would make a 0-d array 1-d
    if array.dtype.hasobject:
        raise ValueError(f"{path.name}: object arrays cannot be cached (they would need pickle)")
    header = io.BytesIO()
    fields = np.lib.format.header_data_from_array_1_0(array)
    try:
        np.lib.format.write_array_header_1_0(header, fields)
    except ValueError:  # a header past 64 KiB (a shape of very many dimensions)
        header = io.BytesIO()
        np.lib.format.write_array_header_2_0(header, fields)
    digest = _HASHER.submit(_sha256, header.getvalue(), array)
    with open(path, "wb") as file:
        file.write(header.getvalue())
        array.tofile(file)
        size = file.tell()
    return {"sha256": digest.result(), "bytes": size}


IN_MEMORY_BYTES = 1 << 20  # files up to this size are read once, then hashed and parsed from memory


def _verified_array(path: Path, expected: dict[str, Any]) -> np.ndarray:
    """The array in `path`, read-only, once its size and SHA-256 match the manifest's `expected`;
    else `CorruptEntry`. A small file is read into memory once (a training's entry holds a dozen
    of them, and mapping each cost more than reading it); a larger one is memory-mapped."""
    size = path.stat().st_size
    if size != expected["bytes"]:
        raise CorruptEntry(f"{path.name} has {size} bytes, the manifest says {expected['bytes']}")
    data = path.read_bytes() if size <= IN_MEMORY_BYTES else None
    digest = hashlib.sha256(data).hexdigest() if data is not None else file_sha256(path)
    if digest != expected["sha256"]:
        raise CorruptEntry(f"{path.name} does not match its SHA-256 checksum")
    try:
        if data is None:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, EOFError) as exc:  # EOFError: an empty file
        raise CorruptEntry(f"{path.name} is not a valid .npy file ({exc})") from None
    array.flags.writeable = False  # as a mapped one is: a reader must not change what the cache holds
    return array


class CacheStore:
    """Reads and writes stage artifacts under one root folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise ValueError(f"The cache folder {self.root} is a file, not a folder (from --cache-dir or PIPELINE_CACHE_DIR).")
        self.unwritable: OSError | None = None  # why this process could not write here, once it has tried

    def entry_dir(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def checkpoint_path(self, stage: str, key: str) -> Path:
        """Where a stage building `key` keeps resumable state; removed once the entry is saved."""
        return self.root / CHECKPOINTS / stage / f"{key}.pt"

    def lock(self, stage: str, key: str) -> FileLock:
        """An inter-process lock for building one entry."""
        folder = self.root / stage
        folder.mkdir(parents=True, exist_ok=True)
        return FileLock(str(folder / f"{key}.lock"))

    @contextlib.contextmanager
    def guard(self, stage: str, key: str) -> Iterator[bool]:
        """Hold the lock for looking up and building one entry, and yield True. In a cache this
        process cannot write (a read-only mount, another user's folder) no lock can be taken: it
        yields False, and the entry may be read but not built."""
        lock: FileLock | None = None
        try:
            lock = self.lock(stage, key)
            lock.acquire()
        except OSError as exc:
            if exc.errno not in READ_ONLY_ERRNOS:
                raise
            self._note_unwritable(exc)
            lock = None
        if lock is None:
            yield False
            return
        try:
            yield True
        finally:
            lock.release()

    def cannot_build(self, stage: str, key: str) -> OSError:
        """The error for an entry a read-only cache lacks: nothing can build it here."""
        reason = self.unwritable.strerror if self.unwritable else "not writable"
        return OSError(errno.EROFS, f"the cache cannot be written ({reason}) and holds no {stage} entry {key[:12]} to read", str(self.root))

    def _note_unwritable(self, exc: OSError) -> None:
        if self.root.resolve() not in _SAID_UNWRITABLE:  # once per folder and process, however many stores read it
            _SAID_UNWRITABLE.add(self.root.resolve())
            log.warning(
                "the cache %s cannot be written (%s): its entries are read without a lock and without updating their "
                "last-used stamps, which `cache gc --keep-last` and `--older-than` go by",
                self.root, exc.strerror or exc,
            )
        self.unwritable = exc

    def load(self, stage: str, key: str) -> CachedArtifact | None:
        """The verified entry, or None when it is absent or fails verification (logged)."""
        folder = self.entry_dir(stage, key)
        if not folder.exists():
            return None
        try:
            cached = self._read_verified(folder)
        except CorruptEntry as exc:
            log.warning("cache entry %s/%s is unusable and will be rebuilt: %s", stage, key[:12], exc)
            return None
        try:
            (folder / LAST_USED_FILE).touch()
        except OSError as exc:
            if exc.errno not in READ_ONLY_ERRNOS:
                raise
            self._note_unwritable(exc)
        return cached

    def manifest(self, stage: str, key: str) -> dict[str, Any] | None:
        """The entry's `meta.json` as written (not checked against its files), or None if unreadable."""
        return _lenient_manifest(self.entry_dir(stage, key))

    def read(self, stage: str, key: str) -> CachedArtifact:
        """The entry, verified against its manifest, without marking it used; `CorruptEntry` says what is wrong."""
        return self._read_verified(self.entry_dir(stage, key))

    def verify(self, stage: str, key: str) -> str | None:
        """None when the entry matches its manifest, else what is wrong with it."""
        try:
            self.read(stage, key)
        except CorruptEntry as exc:
            return str(exc)
        return None

    def entries(self) -> list[EntryInfo]:
        """Every committed entry (temporary folders and checkpoints excluded), oldest use first."""
        found = []
        for stage_dir in sorted(p for p in self.root.glob("*") if p.is_dir() and not p.name.startswith(".")):
            for folder in stage_dir.iterdir():
                if folder.is_dir() and KEY_PATTERN.match(folder.name):
                    found.append(EntryInfo.read(stage_dir.name, folder))
        return sorted(found, key=lambda entry: entry.last_used)

    def checkpoints(self) -> list[EntryInfo]:
        """Checkpoints of unfinished trainings, oldest first; a live training holds the lock of the same name."""
        found = [
            EntryInfo.checkpoint(stage_dir.name, path)
            for stage_dir in sorted((self.root / CHECKPOINTS).glob("*"))
            for path in stage_dir.iterdir()
            if path.is_file()
        ]
        return sorted(found, key=lambda checkpoint: checkpoint.last_used)

    def lock_files(self) -> list[Path]:
        """Every lock file: one per key ever looked up or built, left in place when released (see `filelock`)."""
        return sorted(p for p in self.root.glob("*/*.lock") if not p.parent.name.startswith("."))

    def temp_folders(self) -> list[Path]:
        """Temporary folders of writes in progress, or left behind by a writer that died."""
        return sorted(self.root.glob(f"*/{TEMP_PREFIX}*"))

    def remove(self, stage: str, key: str) -> None:
        """Delete an entry: renamed aside first, so no reader ever sees half of it."""
        folder = self.entry_dir(stage, key)
        if folder.exists():
            doomed = folder.with_name(f"{TEMP_PREFIX}{key}-removed-{uuid.uuid4().hex}")
            os.rename(folder, doomed)
            shutil.rmtree(doomed, ignore_errors=True)

    def _read_verified(self, folder: Path) -> CachedArtifact:
        meta = read_manifest(folder / META_FILE)
        files, info = meta["files"], meta["info"]
        arrays = {}
        for filename, expected in files.items():
            path = folder / filename
            if not path.is_file():
                raise CorruptEntry(f"{filename} is missing")
            arrays[filename.removesuffix(".npy")] = _verified_array(path, expected)
        stored: dict[str, np.ndarray | LookupCoded] = {}
        for name in meta.get(LOOKUP, []):
            try:
                stored[name] = LookupCoded(arrays.pop(f"{name}{CODES}"), arrays.pop(f"{name}{TABLE}"))
            except KeyError as exc:
                raise CorruptEntry(f"the lookup-coded array {name!r} lacks its {exc.args[0]}.npy") from None
            except ValueError as exc:
                raise CorruptEntry(f"the lookup-coded array {name!r} is malformed: {exc}") from None
        stored.update(arrays)
        _check_split_lengths(stored)
        return CachedArtifact(Artifact(DecodedArrays(stored), info), content_digest(files, info), meta)

    def save(self, stage: str, key: str, artifact: Artifact, meta: dict[str, Any]) -> CachedArtifact:
        """Write an entry atomically, replacing any entry already under `key`.

        Call it while holding `lock(stage, key)`. On any error the temporary folder is
        removed and whatever was cached before is left as it was.
        """
        target = self.entry_dir(stage, key)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.parent / f"{TEMP_PREFIX}{key}-{uuid.uuid4().hex}"
        try:
            temp.mkdir()
            files, stored = {}, _stored_arrays(artifact.arrays)
            for name, array in stored.items():
                if not _ARRAY_NAME.match(name):
                    raise ValueError(f"Array name {name!r} of stage {stage!r} is not a safe file name.")
                parts = {f"{name}{CODES}": array.codes, f"{name}{TABLE}": array.table} if isinstance(array, LookupCoded) else {name: array}
                for part, values in parts.items():
                    path = temp / f"{part}.npy"
                    if path.name in files:
                        raise ValueError(f"Array name {part!r} of stage {stage!r} is given twice (a lookup-coded {part.rsplit('.', 1)[0]!r} is stored under it too).")
                    with naming(path):
                        files[path.name] = write_array(path, values)
            full_meta = {**meta, "stage": stage, "key": key, "created": time.time(), "files": files, "info": artifact.info}
            coded = sorted(name for name, array in stored.items() if isinstance(array, LookupCoded))
            if coded:
                full_meta[LOOKUP] = coded
            full_meta[MANIFEST_DIGEST] = manifest_digest(full_meta)
            with naming(temp / META_FILE):
                (temp / META_FILE).write_text(json.dumps(full_meta, indent=1, sort_keys=True), encoding="utf-8")
            self._replace(temp, target)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        arrays = artifact.arrays if isinstance(artifact.arrays, DecodedArrays) else DecodedArrays(stored)  # keeps what was decoded
        return CachedArtifact(Artifact(arrays, artifact.info), content_digest(files, artifact.info), full_meta)

    @staticmethod
    def _replace(temp: Path, target: Path) -> None:
        """Rename `temp` to `target`; an existing target is moved aside first, then deleted."""
        old = None
        if target.exists():
            old = target.with_name(f"{TEMP_PREFIX}{target.name}-old-{uuid.uuid4().hex}")
            os.rename(target, old)
        os.rename(temp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
