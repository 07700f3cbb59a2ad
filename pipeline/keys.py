"""Cache keys: SHA-256 over a canonical encoding of everything that produced a stage's output.

The recipe follows DVC's run cache: code identity, parameters and the digests of the inputs'
outputs (so byte-identical upstream output, from whatever file, gives the same key), nothing
cosmetic. A golden test pins one key so an accidental change of the recipe fails loudly.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import json
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

    Remembered per source text: planning an ablation's runs parses each module once, not once a run."""
    tree = _strip_docstrings(ast.parse(source))
    return sha256_text(ast.dump(tree, annotate_fields=True, include_attributes=False))


def code_fingerprint(modules: Iterable[ModuleType]) -> str:
    """Combined fingerprint of the modules that compute a stage, in a stable order."""
    parts = {module.__name__: source_fingerprint(inspect.getsource(module)) for module in modules}
    return sha256_text(canonical_json(parts))


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
