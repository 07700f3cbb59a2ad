"""`python -m pipeline cache ls | verify | gc`: inspect, check and prune the stage cache.

Nothing here removes an entry whose lock another process holds (it is being looked up or
built); temporary folders are removed only when no writer holds their key's lock.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from filelock import Timeout

from pipeline.cache import TEMP_PREFIX, CacheStore, EntryInfo
from pipeline.keys import FINGERPRINTS_FILE

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)B?\s*$", re.IGNORECASE)
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_AGE_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_size(text: str) -> int:
    """Bytes in `500MB`, `2GB`, `1.5G` or `1024` (powers of 1024)."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"--max-size must look like 500MB or 2GB, got {text!r}.")
    number, unit = float(match.group(1)), match.group(2).upper()
    return int(number * 1024 ** " KMGT".index(unit or " "))


def parse_age(text: str) -> float:
    """Seconds in `30d`, `12h`, `45m`, `2w` or `90s`."""
    match = _AGE.match(text)
    if not match:
        raise ValueError(f"--older-than must look like 30d, 12h or 45m, got {text!r}.")
    return float(match.group(1)) * _AGE_SECONDS[match.group(2)]


def human_size(size: float) -> str:
    if size < 1024:
        return f"{size:.0f} B"
    for unit in ("KB", "MB"):
        size /= 1024
        if size < 1024:
            return f"{size:.1f} {unit}"
    return f"{size / 1024:.1f} GB"


def human_age(seconds: float) -> str:
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length:
            return f"{seconds / length:.0f}{unit}"
    return f"{seconds:.0f}s"


def list_entries(store: CacheStore, stage: str | None = None) -> str:
    """A table of every entry (stage, key, size, age, last used, what it holds), then the
    checkpoints of unfinished trainings; `stage` keeps only that stage's."""
    now = time.time()
    entries = [e for e in store.entries() if stage in (None, e.stage)]
    checkpoints = [c for c in store.checkpoints() if stage in (None, c.stage)]
    width = max([8, *(len(e.stage) for e in entries)])
    lines = [f"{'stage':<{width}} {'key':<12} {'size':>9} {'age':>6} {'last used':>9}  holds"]
    for entry in entries:
        lines.append(
            f"{entry.stage:<{width}} {entry.key[:12]:<12} {human_size(entry.bytes):>9} {human_age(now - entry.created):>6} "
            f"{human_age(now - entry.last_used):>9}  {entry.label or '-'}"
        )
    where = f" in {store.root}" + (f" (stage {stage})" if stage else "")
    lines.append(f"{len(entries)} entries, {human_size(sum(e.bytes for e in entries))}{where}")
    if checkpoints:
        lines += ["", f"{'checkpoint':<8} {'of':<30} {'size':>9} {'age':>6}  state"]
        for checkpoint in checkpoints:
            state = "in use" if _held(store, checkpoint) else "left by a training that did not finish (cache gc removes it)"
            lines.append(
                f"{checkpoint.stage:<10} {checkpoint.key[:28]:<30} {human_size(checkpoint.bytes):>9} "
                f"{human_age(now - checkpoint.created):>6}  {state}"
            )
        lines.append(f"{len(checkpoints)} checkpoints, {human_size(sum(c.bytes for c in checkpoints))}")
    return "\n".join(lines)


def _held(store: CacheStore, item: EntryInfo) -> bool:
    with _unless_held(store, item.stage, item.key) as free:
        return not free


@contextlib.contextmanager
def _unless_held(store: CacheStore, stage: str, key: str) -> Iterator[bool]:
    """Hold the key's lock for the block if no other process holds it; say whether it is held here."""
    lock = store.lock(stage, key)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


@dataclass
class VerifyReport:
    checked: int = 0
    corrupt: list[str] = field(default_factory=list)
    temp_removed: list[str] = field(default_factory=list)
    skipped_busy: list[str] = field(default_factory=list)


def verify(store: CacheStore) -> VerifyReport:
    """Re-hash every entry; remove the corrupt ones and orphaned temporary folders."""
    report = VerifyReport()
    for entry in store.entries():
        with _unless_held(store, entry.stage, entry.key) as free:
            if not free:
                report.skipped_busy.append(f"{entry.stage}/{entry.key[:12]}")
                continue
            report.checked += 1
            problem = store.verify(entry.stage, entry.key)
            if problem:
                store.remove(entry.stage, entry.key)
                report.corrupt.append(f"{entry.stage}/{entry.key[:12]}: {problem}")
    for temp in store.temp_folders():
        key = temp.name[len(TEMP_PREFIX) :][:64]
        with _unless_held(store, temp.parent.name, key) as free:
            if not free:
                continue
            shutil.rmtree(temp, ignore_errors=True)
            report.temp_removed.append(str(temp.relative_to(store.root)))
    for temp in sorted(store.root.glob(f".{FINGERPRINTS_FILE}.*.tmp")):  # a writer killed mid-write; a live one passes over its loss
        temp.unlink(missing_ok=True)
        report.temp_removed.append(temp.name)
    return report


def select_for_gc(
    entries: list[EntryInfo], max_size: int | None, older_than: float | None, keep_last: int | None, now: float
) -> list[EntryInfo]:
    """Entries and checkpoints the policies remove: used (or written) longer ago than
    `older_than`, entries and checkpoints beyond the `keep_last` most recently used of each
    stage (each kind counted apart), then least recently used until `max_size` is met."""
    doomed: dict[Path, EntryInfo] = {}
    if older_than is not None:
        doomed.update({e.path: e for e in entries if now - e.last_used > older_than})
    if keep_last is not None:
        for stage, kind in {(e.stage, e.kind) for e in entries}:
            newest_first = sorted((e for e in entries if e.stage == stage and e.kind == kind), key=lambda e: e.last_used, reverse=True)
            doomed.update({e.path: e for e in newest_first[keep_last:]})
    if max_size is not None:
        remaining = sum(e.bytes for e in entries if e.path not in doomed)
        for entry in sorted(entries, key=lambda e: e.last_used):
            if remaining <= max_size:
                break
            if entry.path not in doomed:
                doomed[entry.path] = entry
                remaining -= entry.bytes
    return sorted(doomed.values(), key=lambda e: e.last_used)


@dataclass
class GcReport:
    removed: list[EntryInfo] = field(default_factory=list)  # entries and checkpoints
    busy: list[EntryInfo] = field(default_factory=list)  # selected, but another process holds them
    locks_removed: int = 0


def collect_garbage(
    store: CacheStore, max_size: int | str | None = None, older_than: float | str | None = None, keep_last: int | None = None
) -> GcReport:
    """Remove the entries and checkpoints the policies select, then the lock files that no
    longer guard anything (no entry, no checkpoint, no holder; with `older_than`, only those
    older than that when this gc began, or whose entry or checkpoint it removed: taking a lock
    may touch its file, so this gc's own locking must not make a lock look new). A process
    that was waiting on a removed lock file notices and takes a new one (filelock >= 4), so
    removing them never lets two processes build one key.

    `max_size` in bytes or as text (`2GB`), `older_than` in seconds or as text (`30d`); at
    least one policy must be given, and a `ValueError` names a bad one."""
    if max_size is None and older_than is None and keep_last is None:
        raise ValueError("cache gc needs --max-size, --older-than or --keep-last.")
    if keep_last is not None and keep_last < 0:
        raise ValueError(f"--keep-last must be >= 0, got {keep_last}.")
    max_size = parse_size(max_size) if isinstance(max_size, str) else max_size
    older_than = parse_age(older_than) if isinstance(older_than, str) else older_than
    report = GcReport()
    now = time.time()
    lock_ages = {path: now - path.stat().st_mtime for path in store.lock_files()} if older_than is not None else {}
    for item in select_for_gc(store.entries() + store.checkpoints(), max_size, older_than, keep_last, now):
        with _unless_held(store, item.stage, item.key) as free:
            if not free:
                report.busy.append(item)
                continue
            if item.kind == "entry":
                store.remove(item.stage, item.key)
            else:
                item.path.unlink(missing_ok=True)
            report.removed.append(item)
    guarded = {(e.stage, e.key) for e in store.entries() + store.checkpoints()}
    emptied = {(item.stage, item.key) for item in report.removed}
    for path in store.lock_files():
        stage, key = path.parent.name, path.name.removesuffix(".lock")
        recent = older_than is not None and lock_ages.get(path, 0.0) <= older_than  # a lock file new since gc began: age 0
        if (stage, key) in guarded or (recent and (stage, key) not in emptied):
            continue
        with _unless_held(store, stage, key) as free:
            if free:
                path.unlink(missing_ok=True)
                report.locks_removed += 1
    return report
