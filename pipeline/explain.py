"""`python -m pipeline explain`: for each stage, would it hit, and if not, what changed?

A miss is explained against the cached entry of the same stage that differs least: which
parameters changed (old -> new), which upstream key changed, whether the stage's version or
the fingerprint of its code changed.
"""

from __future__ import annotations

import json
from typing import Any

from pipeline.cache import META_FILE, CacheStore
from pipeline.config import Config
from pipeline.runner import PlannedStage, plan_stages


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict) and tree:
        flat = {}
        for key, value in tree.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): tree}


def differences(step: PlannedStage, meta: dict[str, Any]) -> list[str]:
    """What separates the planned stage from a cached entry's manifest, in words."""
    changes = []
    if meta.get("version") != step.stage.version:
        changes.append(f"stage version {meta.get('version')!r} -> {step.stage.version!r}")
    if "code" not in meta:
        changes.append("the entry does not record its code fingerprint (written by an older gainsplit)")
    elif meta["code"] != step.code:
        changes.append("the code that computes the stage changed")
    old, new = _flatten(meta.get("params", {})), _flatten(step.params)
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            changes.append(f"parameter {key}: {json.dumps(old.get(key))} -> {json.dumps(new.get(key))}")
    for name, key in step.input_keys.items():
        if meta.get("inputs", {}).get(name) != key:
            changes.append(f"upstream {name} changed ({str(meta.get('inputs', {}).get(name))[:12]} -> {key[:12]})")
    return changes


def explain(config: Config, store: CacheStore) -> list[str]:
    """One line per stage: hit, or miss and why."""
    lines = []
    entries = store.entries()
    for step in plan_stages(config):
        name, key = step.stage.name, step.key
        exists = store.entry_dir(name, key).exists()
        problem = store.verify(name, key) if exists else None
        if exists and problem is None:
            lines.append(f"{name:<8} hit   {key[:12]}")
            continue
        candidates = []
        for entry in (e for e in entries if e.stage == name):
            try:
                meta = json.loads((entry.path / META_FILE).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            changes = differences(step, meta)
            candidates.append((len(changes), -entry.last_used, entry.key, changes))
        if exists:
            reason = f"the cached entry is corrupt ({problem}) and will be rebuilt"
        elif not candidates:
            reason = "nothing cached for this stage yet"
        else:
            _, _, closest, changes = min(candidates)
            reason = f"closest cached entry {closest[:12]}: " + "; ".join(changes)
        lines.append(f"{name:<8} miss  {key[:12]}  {reason}")
    return lines
