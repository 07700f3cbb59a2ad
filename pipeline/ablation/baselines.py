"""An ablation's scikit-learn baselines, fitted once per scaled data and kept in the stage cache
under `baselines/<key>` (the models as a list, since the manifest's keys are sorted): the key chains on the scale entry's output digest, the baselines' code
and scikit-learn's version, so a repeated ablation reads the scores instead of fitting again."""

from __future__ import annotations

import functools
import importlib.metadata
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

import trainers.baselines
from pipeline.cache import Artifact, CacheStore
from pipeline.keys import cache_key, code_fingerprint

if TYPE_CHECKING:
    from pipeline.ablation.plan import TrainingResult

STAGE = "baselines"  # the cache folder of the entries
VERSION = "1"
SEED = 0


def baselines_key(scale_digest: str) -> str:
    """The cache key of the baselines fitted on the scale entry whose output digest is `scale_digest`."""
    params = {"seed": SEED, "scikit-learn": importlib.metadata.version("scikit-learn")}
    return cache_key(STAGE, VERSION, code_fingerprint([trainers.baselines]), params, {"scale": scale_digest})


def baseline_scores(store: CacheStore, scale_digest: str, arrays: Callable[[], Mapping[str, np.ndarray]], label: str) -> tuple[dict[str, Any], str]:
    """Each baseline's test accuracy and fit seconds on the scaled data `arrays()` returns, and
    whether they came from the cache ("hit") or were fitted now ("miss"). A cache this process
    cannot write is read, and what is fitted is not kept."""
    if not scale_digest:  # a record without its scale output's digest: nothing to key on
        return _fit(arrays()), "miss"
    key = baselines_key(scale_digest)
    with store.guard(STAGE, key) as writable:
        cached = store.load(STAGE, key)
        if cached is not None:
            return dict(cached.artifact.info["models"]), "hit"
        scores = _fit(arrays())
        if writable:
            store.save(STAGE, key, Artifact({}, {"models": list(scores.items())}), {"label": f"scikit-learn baselines on {label}", "scale": scale_digest})
    return scores, "miss"


def _fit(arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    return trainers.baselines.sklearn_baselines(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], seed=SEED)


def ablation_baselines(results: list[TrainingResult], arrays_of: Callable[[dict[str, Any]], Mapping[str, np.ndarray]], variant_names: list[str], store: CacheStore) -> list[dict[str, Any]]:
    """The baselines on the scaled data of each named variant (the baseline's and the best one's),
    once per distinct data; `arrays_of` reads a run record's scaled arrays."""
    done: dict[str, dict[str, Any]] = {}
    folded = any(r.folds for r in results)  # k-fold: the first fold's split stands for the data
    for variant in variant_names:
        record = next(r.record for r in results if r.variant == variant)
        scale = next(stage for stage in record["stages"] if stage["name"] == "scale")
        if scale["key"] not in done:
            data_of = f"{variant}, fold 0" if folded else variant
            scores, cache = baseline_scores(store, scale.get("output_sha256", ""), functools.partial(arrays_of, record), f"the data of '{data_of}'")
            done[scale["key"]] = {"data_of_variant": data_of, "models": scores, "cache": cache}
    return list(done.values())
