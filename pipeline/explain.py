"""`python -m pipeline explain`: for each stage, would it hit, and if not, what changed?

A miss is explained against the cached entry of the same stage that differs least, looking
first among entries made from the same data source: which parameters changed (old -> new),
whether an upstream output changed, whether the stage's version or its code changed. A
stage after a miss is keyed on the output still to be built, so it may hit after all: when
the rebuilt output is byte-identical to what a cached entry was made from (early cutoff).
"""

from __future__ import annotations

import json
from typing import Any

from pipeline.cache import CacheStore, CorruptEntry, EntryInfo, output_digest
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
    """What separates the planned stage from a cached entry's manifest, in words; an input whose
    output is not built yet (`step.inputs` None) is not compared."""
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
    recorded = meta.get("inputs") or {}
    for name, digest in (step.inputs or {}).items():
        if recorded.get(name) != digest:
            changes.append(f"upstream {name}'s output changed ({str(recorded.get(name))[:12]} -> {digest[:12]})")
    return changes


def _closest(step: PlannedStage, entries: list[EntryInfo], store: CacheStore, source: str) -> tuple[str, list[str]] | None:
    """The cached entry of this stage that differs least (same data source first), and how."""
    candidates = []
    for entry in (e for e in entries if e.stage == step.stage.name):
        meta = store.manifest(entry.stage, entry.key)
        if meta is None:
            continue
        changes = differences(step, meta)
        candidates.append((meta.get("source") != source, len(changes), -entry.last_used, entry.key, changes))
    if not candidates:
        return None
    *_, key, changes = min(candidates)
    return key, changes


def explain(config: Config, store: CacheStore) -> list[str]:
    """One line per stage: hit, miss and why, or maybe (keyed on an output still to be built)."""
    lines = []
    entries = store.entries()
    digests: dict[str, str] = {}
    for planned in plan_stages(config):
        name = planned.stage.name
        waiting = [upstream for upstream in planned.stage.inputs if upstream not in digests]
        if waiting:
            closest = _closest(planned, entries, store, config.data.source)
            rebuilt = f"upstream {' and '.join(waiting)} {'is' if len(waiting) == 1 else 'are'} rebuilt first"
            if closest is None:
                lines.append(f"{name:<8} miss   {'-':<12}  nothing cached for this stage yet")
            elif closest[1]:
                lines.append(f"{name:<8} miss   {'-':<12}  closest cached entry {closest[0][:12]}: {'; '.join(closest[1])}; {rebuilt}")
            else:
                lines.append(
                    f"{name:<8} maybe  {'-':<12}  {rebuilt}; a hit if its output comes out byte-identical to what entry "
                    f"{closest[0][:12]} was made from (early cutoff)"
                )
            continue
        step = planned.keyed({upstream: digests[upstream] for upstream in planned.stage.inputs})
        problem = None
        if store.entry_dir(name, step.key).exists():
            try:
                digests[name] = output_digest(store.read(name, step.key))  # read once: verified, and its digest
                lines.append(f"{name:<8} hit    {step.key[:12]}")
                continue
            except CorruptEntry as exc:
                problem = str(exc)
        closest = _closest(step, entries, store, config.data.source)
        if problem:
            reason = f"the cached entry is corrupt ({problem}) and will be rebuilt"
        elif closest is None:
            reason = "nothing cached for this stage yet"
        else:
            reason = f"closest cached entry {closest[0][:12]}: " + "; ".join(closest[1])
        lines.append(f"{name:<8} miss   {step.key[:12]}  {reason}")
    return lines
