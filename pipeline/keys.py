"""Cache keys: SHA-256 over a canonical encoding of everything that produced a stage's output.

The recipe follows DVC's run cache: code identity, parameters and the digests of the inputs'
outputs (so byte-identical upstream output, from whatever file, gives the same key), nothing
cosmetic. A golden test pins one key so an accidental change of the recipe fails loudly.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import hashlib
import inspect
import json
import linecache
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable, Mapping

KEY_RECIPE_VERSION = 3  # 3: inputs are the digests of upstream outputs, not upstream keys
_EXACT_INTEGERS = 2**53


def _canonical(value: Any) -> Any:
    """Integral floats as ints (`1.0` and `1` mean the same setting), tuples as lists, recursively."""
    if isinstance(value, float) and value.is_integer() and abs(value) < _EXACT_INTEGERS:
        return int(value)
    if isinstance(value, dict):
        return {str(key): _canonical(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(item) for item in value]
    return value


def canonical_json(value: Any) -> str:
    """JSON with sorted keys, no whitespace, integral floats written as ints and other floats in
    Python's shortest round-trip text. NaN and infinities are refused: they have no stable
    meaning as cache inputs."""
    return json.dumps(_canonical(value), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                if isinstance(body[0].value.value, str):
                    node.body = body[1:]
    return tree


@functools.lru_cache(maxsize=512)
def source_fingerprint(source: str) -> str:
    """Hash of the code's syntax tree: comments, blank lines, formatting and docstrings do not count.

    Remembered per source text: planning an ablation's runs parses each module once, not once a
    run; and across processes in `remembered_fingerprints`."""
    text_digest = sha256_text(source)
    if text_digest not in _REMEMBERED:
        tree = _strip_docstrings(ast.parse(source))
        _REMEMBERED[text_digest] = sha256_text(ast.dump(tree, annotate_fields=True, include_attributes=False))
    return _REMEMBERED[text_digest]


FINGERPRINTS_FILE = ".fingerprints.json"
_REMEMBERED: dict[str, str] = {}  # sha256 of a module's source -> its fingerprint


def _fingerprint_recipe() -> str:
    """What a remembered fingerprint was computed with: this module's code and Python's version
    (`ast.dump` differs between versions); remembered ones of another recipe are not used."""
    return sha256_text(f"{sys.version_info[:2]}\n{inspect.getsource(sys.modules[__name__])}")


@contextlib.contextmanager
def remembered_fingerprints(folder: Path) -> Iterator[None]:
    """Within the block, fingerprints come from `folder/.fingerprints.json` where it holds them
    (a cached run would otherwise parse every stage's modules, its largest cost after imports);
    new ones are added to it after. A file unreadable, of another recipe, or not writable is
    passed over: fingerprints are then computed, as they always can be."""
    path = folder / FINGERPRINTS_FILE
    recipe = _fingerprint_recipe()
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(stored, dict) and stored.get("recipe") == recipe and isinstance(stored.get("fingerprints"), dict):
            _REMEMBERED.update({str(k): str(v) for k, v in stored["fingerprints"].items()})
    except (OSError, ValueError, RecursionError):
        stored = None
    known = len(_REMEMBERED)
    yield
    if len(_REMEMBERED) == known and stored is not None:
        return
    entries = dict(list(_REMEMBERED.items())[-MAX_REMEMBERED:])
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        temp.write_text(json.dumps({"recipe": recipe, "fingerprints": entries}), encoding="utf-8")
        os.replace(temp, path)
    except OSError:  # a read-only or full cache: the next process parses again
        temp.unlink(missing_ok=True)


MAX_REMEMBERED = 1000  # modules' versions kept: old code's fingerprints go first


def code_fingerprint(modules: Iterable[ModuleType]) -> str:
    """Combined fingerprint of the modules that compute a stage, in a stable order."""
    parts = {module.__name__: module_fingerprint(module) for module in modules}
    return sha256_text(canonical_json(parts))


_SETTLED_NS = 2_000_000_000  # a file modified this long ago would show a later time if modified again
_BY_FILE: dict[tuple[str, str], tuple[tuple[int, int, int], str]] = {}


def module_fingerprint(module: ModuleType) -> str:
    """`source_fingerprint` of the module's source file as it is now on disk. Remembered per
    file while its size, inode and modification time stay the same: planning an ablation
    fingerprints the same modules for every run. Otherwise the file is read from disk, past
    `linecache`'s copy; one modified in the last two seconds is read each time, since a second
    change within the clock's resolution would leave its modification time as it was."""
    try:
        path = inspect.getsourcefile(module)
        status = os.stat(path) if path else None
    except (TypeError, OSError):  # built in, or no source file: inspect.getsource says why below
        path, status = None, None
    stamp = (status.st_mtime_ns, status.st_size, status.st_ino) if status else None
    settled = stamp is not None and time.time_ns() - stamp[0] > _SETTLED_NS
    remembered = _BY_FILE.get((module.__name__, path or ""))
    if settled and remembered is not None and remembered[0] == stamp:
        return remembered[1]
    if path:  # linecache compares float seconds: a change of under a microsecond would pass it
        linecache.updatecache(path, module.__dict__)
    fingerprint = source_fingerprint(inspect.getsource(module))
    if settled:
        _BY_FILE[(module.__name__, path)] = (stamp, fingerprint)
    return fingerprint


def cache_key(
    stage: str,
    version: str,
    code: str,
    params: Mapping[str, Any],
    inputs: Mapping[str, str],
) -> str:
    """The content address of a stage output; `inputs` maps each upstream stage to its output's digest."""
    payload = {
        "recipe": KEY_RECIPE_VERSION,
        "stage": stage,
        "version": version,
        "code": code,
        "params": params,
        "inputs": dict(inputs),
    }
    return sha256_text(canonical_json(payload))
