"""Pairing runs by sample identity: an effect compares its runs on the test samples they share,
never on whatever samples happen to sit at the same position.

Every run's test samples carry their identities (`id_test`: each sample's row in the collected
source, see `pipeline.stages.collect`), and the identities index one source (its name and the
content fingerprint `collect` records). An effect is a contrast of variants; at each seed, the
runs of the variants it compares are aligned on the samples all of them scored. Its pairing is
one of three, recorded with it (`Pairing.label`):

- "per sample": at every seed, the runs scored the same samples in the same order (no factor
  moved the split: the usual case). Paired sample by sample, on every test sample.
- "per sample, on the N shared test samples": the test sets differ (a variant's own
  `data.seed` or `data.test_fraction`), and at every seed at least `MIN_SHARED` samples are in
  all of them and, where each seed draws its own split (`ablation.vary` lists `split`), at least
  `MIN_SHARE` of the smallest test set. Paired sample by sample on those, in id order, each
  run's per-sample scores computed on them alone. The shared samples are a random part of each
  split, so the paired difference on them estimates the same effect.
- "per seed (different test samples)": otherwise. Each run counts by its score on its own test
  samples, per seed (as `stats.paired_effect` does for vectors of different shapes). Where the
  split is fixed, the spread over seeds then misses each test set's own draw: the label says so.

Why two thresholds. Where every seed scores the same test samples (the split is fixed), a
variant's test set is one draw shared by all its seeds: the spread of per-seed means cannot see
that draw's noise, while pairing on the shared samples, crossed with the seeds, does. So the
shared samples are paired whenever there are enough of them to pair (`MIN_SHARED`). Where each
seed draws its own split, both ways are valid and the choice is one of power: pairing on N of
n samples beats comparing means over n when the runs' results on a sample correlate more than
1 - N/n, which at `MIN_SHARE` = 1/2 is 0.5; variants of one network, which find the same
samples hard, usually correlate more.

The variants an effect compares are found by tracing, not by a second copy of the designs'
arithmetic: an effect is linear in its variants' per-seed scores, so scoring one variant 1 and
every other 0 gives a non-zero effect exactly when the effect reads that variant. Effects whose
runs span the same test sets share one alignment and are computed together.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import reduce
from typing import Any, Callable, Literal

import numpy as np

from pipeline.ablation.plan import TrainingResult
from pipeline.ablation.stats import Effect

MIN_SHARED = 30  # fewer shared test samples than this are not paired
MIN_SHARE = 0.5  # where each seed draws its own split: the share of the smallest test set they must be

Row = dict[str, Any]  # one training as `pipeline.ablation.effects` reads it: "variant", "settings", "seed", the metric, "per_sample"
Run = tuple[str, int]  # (variant, seed)
Compute = Callable[[list[Row]], list[Effect]]
Rescore = Callable[[Run, np.ndarray], np.ndarray]  # a run's per-sample scores on the test samples at these positions


@dataclass(frozen=True)
class SampleIds:
    """Which test samples a run scored: their identities, in the run's order, and what they index."""

    source: str
    ids: np.ndarray

    def same_as(self, other: SampleIds) -> bool:
        return self.source == other.source and np.array_equal(self.ids, other.ids)


def sample_ids(result: TrainingResult, size: int) -> SampleIds:
    """The run's test samples; a run without identities (older results) is identified by position."""
    ids = result.predictions.get("id_test")
    data = result.record.get("data", {}) if result.record else {}
    source = json.dumps([data.get("source"), data.get("provenance")], sort_keys=True, default=str)
    return SampleIds(source, np.asarray(ids, dtype=np.int64) if ids is not None else np.arange(size, dtype=np.int64))


@dataclass(frozen=True)
class Pairing:
    """How an effect's runs were paired: "per sample" (same samples), "shared" (on the samples
    they share) or "per seed" (different test samples: each run by its own mean), and how many
    test samples were paired per seed (the fewest over the seeds; None per seed)."""

    kind: Literal["per sample", "shared", "per seed"]
    samples: int | None = None

    @property
    def label(self) -> str:
        if self.kind == "shared":
            return f"per sample, on the {self.samples} shared test samples"
        return "per seed (different test samples)" if self.kind == "per seed" else "per sample"

    def fields(self) -> dict[str, Any]:
        """What a summary's effect or flip count records of it: `pairing` (the label) and `paired_samples`."""
        return {"pairing": self.label, "paired_samples": self.samples}


def align(sets: list[SampleIds]) -> tuple[bool, list[np.ndarray]]:
    """Whether the sets are the same samples in the same order, and the positions, in each set,
    of the samples all of them hold (every position when the same, else in id order; none when
    they index different sources)."""
    if all(s.same_as(sets[0]) for s in sets[1:]):
        return True, [np.arange(len(s.ids)) for s in sets]
    if any(s.source != sets[0].source for s in sets[1:]):
        return False, [np.empty(0, dtype=np.int64) for _ in sets]
    common = reduce(np.intersect1d, [s.ids for s in sets])
    return False, [np.intersect1d(common, s.ids, assume_unique=True, return_indices=True)[2] for s in sets]


def decide(by_seed: dict[int, list[SampleIds]], crossed: bool) -> tuple[Pairing, dict[int, list[np.ndarray]] | None]:
    """The pairing of runs given per seed (see the module's rule; `crossed`: every seed scores the
    same test samples) and, unless per seed, each run's positions of the paired samples."""
    aligned = {seed: align(sets) for seed, sets in by_seed.items()}
    positions = {seed: found for seed, (_, found) in aligned.items()}
    shared = min(len(found[0]) for found in positions.values())
    if all(same for same, _ in aligned.values()):
        return Pairing("per sample", shared), positions
    enough = all(
        len(positions[seed][0]) >= MIN_SHARED and (crossed or len(positions[seed][0]) >= MIN_SHARE * min(len(s.ids) for s in sets))
        for seed, sets in by_seed.items()
    )
    return (Pairing("shared", shared), positions) if enough else (Pairing("per seed"), None)


class Pairer:
    """Effects computed with each effect's runs aligned on the test samples they share.

    `samples`: each run's test samples; `crossed`: every seed scores the same test samples (the
    split is fixed), as `analysis` tells `stats`."""

    def __init__(self, samples: dict[Run, SampleIds], crossed: bool) -> None:
        self.samples, self.crossed = samples, crossed
        # Each run's test samples as an index into the distinct sets of its seed: effects whose
        # runs span the same sets share one alignment, so they are computed together.
        self._distinct: dict[int, list[SampleIds]] = {}
        self._set_of: dict[Run, int] = {}
        for run, found in samples.items():
            sets = self._distinct.setdefault(run[1], [])
            index = next((i for i, known in enumerate(sets) if known.same_as(found)), None)
            if index is None:
                sets.append(found)
                index = len(sets) - 1
            self._set_of[run] = index
        self.uniform = all(len(sets) == 1 for sets in self._distinct.values())  # the usual case: nothing to align
        self._traced: dict[str, list[frozenset[str]]] = {}

    def _spanned(self, variants: frozenset[str]) -> tuple[tuple[int, frozenset[int]], ...]:
        """Per seed, which of its distinct test sets the runs of `variants` scored."""
        spans: dict[int, set[int]] = {}
        for run, index in self._set_of.items():
            if run[0] in variants:
                spans.setdefault(run[1], set()).add(index)
        return tuple(sorted((seed, frozenset(found)) for seed, found in spans.items()))

    def _pair(self, spanned: tuple[tuple[int, frozenset[int]], ...]) -> tuple[Pairing, dict[Run, np.ndarray] | None, dict[int, int]]:
        """The pairing of runs on these test sets (per seed), the positions of the paired samples
        in every run that scored one of them, and per seed how many samples are paired."""
        by_seed = {seed: sorted(indices) for seed, indices in spanned}
        pairing, found = decide({seed: [self._distinct[seed][i] for i in indices] for seed, indices in by_seed.items()}, self.crossed)
        if found is None:
            return pairing, None, {}
        at = {(seed, index): position for seed, indices in by_seed.items() for index, position in zip(indices, found[seed])}
        positions = {run: at[(run[1], index)] for run, index in self._set_of.items() if (run[1], index) in at}
        return pairing, positions, {seed: len(found[seed][0]) for seed in by_seed}

    def effects(self, key: str, compute: Compute, rows: list[Row], metric: str, rescore: Rescore) -> list[tuple[Effect, Pairing]]:
        """`compute(rows)`'s effects, each computed on its runs' shared test samples, with its
        pairing. `key` names what `compute` computes, so which variants each of its effects reads
        is traced once per ablation (it is the same in every metric); `rescore` gives a run's
        per-sample scores on a subset of its test samples."""
        if self.uniform:
            everywhere = Pairing("per sample", min(len(s.ids) for s in self.samples.values()))
            return [(effect, everywhere) for effect in compute(rows)]
        if key not in self._traced:
            self._traced[key] = trace(compute, rows, metric)
        involved = self._traced[key]
        by_span: dict[tuple, list[int]] = {}
        for index, variants in enumerate(involved):
            by_span.setdefault(self._spanned(variants), []).append(index)
        found: list[tuple[Effect, Pairing] | None] = [None] * len(involved)
        for spanned, indices in by_span.items():
            pairing, positions, sizes = self._pair(spanned)
            effects = compute(_aligned(rows, metric, positions, sizes, rescore if pairing.kind == "shared" else None))
            if len(effects) != len(involved):
                raise RuntimeError(f"{key}: {len(effects)} effects on aligned runs, {len(involved)} traced")
            for index in indices:
                found[index] = (effects[index], pairing)
        return [item for item in found if item is not None]


def _without_samples(row: Row) -> Row:
    return {name: value for name, value in row.items() if name != "per_sample"}


def trace(compute: Compute, rows: list[Row], metric: str) -> list[frozenset[str]]:
    """For each effect `compute` gives, the variants it reads: scored 1 alone (every other 0, one
    number per run), a variant moves exactly the effects that read it. One seed shows it (the
    design is the same at every seed) and costs no interval."""
    seed = rows[0]["seed"] if rows else None
    rows = [_without_samples(row) for row in rows if row["seed"] == seed]
    variants = list(dict.fromkeys(row["variant"] for row in rows))
    reads: list[set[str]] | None = None
    for variant in variants:
        effects = compute([{**row, metric: float(row["variant"] == variant)} for row in rows])
        reads = reads or [set() for _ in effects]
        for effect, found in zip(effects, reads):
            if abs(effect.summary.mean) > 1e-9:
                found.add(variant)
    return [frozenset(found) for found in reads or []]


def _aligned(
    rows: list[Row], metric: str, positions: dict[Run, np.ndarray] | None, sizes: dict[int, int], rescore: Rescore | None
) -> list[Row]:
    """`rows` for the effects on one alignment: the runs with `positions` as their per-sample
    scores on the paired samples (`rescore`d on that part of their test samples, or as they are
    where it is all of them); every other run a stand-in of the same shape, read by no effect
    of this alignment. Without positions (per seed), every run by its own score alone."""
    if positions is None:
        return [_without_samples(row) for row in rows]
    aligned = []
    for row in rows:
        run = (row["variant"], row["seed"])
        if run not in positions:
            vector = np.zeros(sizes[row["seed"]])
        elif rescore is None:
            vector = row["per_sample"][metric]
        else:
            vector = rescore(run, positions[run])
        aligned.append({**row, "per_sample": {**row.get("per_sample", {}), metric: vector}})
    return aligned
