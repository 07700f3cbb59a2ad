"""Coverage of the report's 95% intervals and its family-wise false-positive rate, by simulation
against effects whose true size is known. Not a timed test: run it after changing
`pipeline/ablation/stats.py`, `effects.py` or `sequential.py`.

    python benchmarks/coverage.py [--simulations 1000]

Each scenario calls the functions the report calls (`paired_effect`, `summarize_runs`,
`adjust_together`, `Looks`). Variants score test samples through a latent model: sample i is
right when its difficulty plus the variant's skill plus the seed's luck plus noise is positive,
so the true difference in accuracy over seeds and samples is exact. Prints one line per
scenario; the last line is the summary over the scenarios that promise 95% and 5%:
`coverage_min=<lowest> coverage_max=<highest> fwer_max=<highest false-positive rate>`.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the simulation the tests check k-fold with

from pipeline.ablation.effects import adjust_together
from pipeline.ablation.sequential import Looks
from pipeline.ablation.stats import DIFFERENCE_RANGE, Effect, paired_effect
from simulations import kfold_coverage

SAMPLES, SEED_SPREAD, NOISE, SKILL = 360, 0.3, 0.3, 2.0


def truth(effect: float) -> float:
    """The expected difference in accuracy between skills SKILL + effect and SKILL."""
    spread = math.sqrt(1 + SEED_SPREAD**2 + NOISE**2)
    return float(stats.norm.cdf((SKILL + effect) / spread) - stats.norm.cdf(SKILL / spread))


def scores(rng: np.random.Generator, difficulty: np.ndarray, skill: float) -> np.ndarray:
    """One seed's per-sample correctness on the test samples of `difficulty`."""
    return (difficulty + skill + rng.normal(0, SEED_SPREAD) + rng.normal(0, NOISE, difficulty.size) > 0).astype(float)


def ablation(rng: np.random.Generator, effects: list[float], seeds: int, shared: bool) -> list[dict[int, np.ndarray]]:
    """Per-seed scores of a reference and one variant per effect; every seed scores the same test
    samples (`shared`), or each seed draws its own (the split varies with the seed)."""
    fixed = rng.normal(size=SAMPLES)
    arms: list[dict[int, np.ndarray]] = [{} for _ in range(len(effects) + 1)]
    for seed in range(seeds):
        difficulty = fixed if shared else rng.normal(size=SAMPLES)
        for arm, effect in zip(arms, [0.0, *effects]):
            arm[seed] = scores(rng, difficulty, SKILL + effect)
    return arms


def family(arms: list[dict[int, np.ndarray]], seeds: int, shared: bool) -> list[Effect]:
    """Each variant against the reference on the first `seeds` seeds."""
    first = [{seed: arm[seed] for seed in range(seeds)} for arm in arms]
    return [paired_effect(f"v{i}", "model", arm, first[0], shared, DIFFERENCE_RANGE) for i, arm in enumerate(first[1:], 1)]


def fixed_design(rng: np.random.Generator, effects: list[float], seeds: int, shared: bool) -> list[Effect]:
    [adjusted] = adjust_together(family(ablation(rng, effects, seeds, shared), seeds, shared))
    return adjusted


def until_decided(
    rng: np.random.Generator, effects: list[float], counts: tuple[int, ...], shared: bool, resolution: float, boundary: str | None
) -> tuple[list[Effect], int]:
    """Add seeds look by look until every effect is decided or its adjusted interval is narrower
    than `resolution`; `boundary=None` reads each look alone (what the sequential rule prevents)."""
    arms = ablation(rng, effects, counts[-1], shared)
    for taken, count in enumerate(counts, 1):
        looks = Looks(counts, taken, boundary) if boundary else None
        [adjusted] = adjust_together(family(arms, count, shared), looks=looks)
        if all(e.decided or e.adjusted_high - e.adjusted_low < resolution for e in adjusted):
            break
    return adjusted, taken


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--simulations", type=int, default=1000)
    runs = parser.parse_args().simulations
    rng = np.random.default_rng(0)
    coverage: dict[str, float] = {}
    fwer: dict[str, float] = {}
    started = time.perf_counter()

    for shared, name in ((True, "crossed (seeds share the test samples)"), (False, "each seed its own split")):
        hits = sum(e.summary.low <= truth(0.2) <= e.summary.high for _ in range(runs) for e in fixed_design(rng, [0.2], 5, shared))
        coverage[f"fixed, 5 seeds, {name}"] = hits / runs
        false = sum(any(e.decided for e in fixed_design(rng, [0.0] * 4, 5, shared)) for _ in range(runs))
        fwer[f"fixed, 5 seeds, 4 null effects, {name}"] = false / runs

    counts = (3, 6, 9, 12)
    for shared, resolution in ((True, 0.02), (False, 0.03)):
        where = "crossed" if shared else "own splits"
        for boundary in ("pocock", "obrien_fleming", None):
            label = f"repeated ({boundary})" if boundary else "each look read alone"
            hits, looks = 0, []
            for _ in range(runs):
                [effect], taken = until_decided(rng, [0.12], counts, shared, resolution, boundary)
                hits += effect.summary.low <= truth(0.12) <= effect.summary.high
                looks.append(taken)
            (coverage if boundary else {})[f"until decided, {where}, {label}"] = hits / runs
            print(f"coverage  until decided at {counts} seeds, {where}, {label}: {hits / runs:.3f} (mean looks {np.mean(looks):.2f})")
            false = sum(any(e.decided for e in until_decided(rng, [0.0] * 4, counts, shared, resolution, boundary)[0]) for _ in range(runs))
            (fwer if boundary else {})[f"until decided, {where}, 4 null effects, {label}"] = false / runs
            print(f"fwer      until decided at {counts} seeds, {where}, 4 null effects, {label}: {false / runs:.3f}")

    kfold = kfold_coverage(rng, max(100, runs // 3), truth_draws=4000)
    print(f"coverage  5-fold x 3 seeds, Nadeau and Bengio (conservative by design, not held to 93-97%): {kfold:.3f}")

    for name, value in coverage.items():
        print(f"coverage  {name}: {value:.3f}")
    for name, value in fwer.items():
        print(f"fwer      {name}: {value:.3f}")
    print(f"seconds={time.perf_counter() - started:.0f}")
    print(f"coverage_min={min(coverage.values()):.3f} coverage_max={max(coverage.values()):.3f} fwer_max={max(fwer.values()):.3f}")


if __name__ == "__main__":
    main()
