"""Writing files so that a failure names the file and an interrupted write leaves the old one."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def naming(path: Path | str) -> Iterator[None]:
    """Re-raise an `OSError` that names no file (a write to a full disk) as one naming `path`."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file beside it, so `path` is whole or as before."""
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with naming(path):
            temp.write_text(text, encoding="utf-8")
            os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
