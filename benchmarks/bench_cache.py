"""The data stages (collect, augment, scale) on MNIST-sized image sets, cold and warm, per stage.

Builds two npz files of 28x28 uint8 digits: the MNIST test set (10,000) and 60,000 made of it
and five copies shifted by 1 to 5 pixels (so no two samples are equal). Each round runs the
default data stages into a fresh cache (cold), then again from it (warm); the median of the
rounds is printed per stage, with the bytes each stage's entry holds per byte of the source
file. The last line is `scale_over_augment=<cold scale / cold augment at 60,000>`.

    python benchmarks/bench_cache.py [--mnist ../shared/data/mnist-t10k] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np

from datasets.idx import read_idx
from pipeline.cache import CacheStore
from pipeline.config import load_config
from pipeline.runner import run_stages
from pipeline.stages import RunContext, default_stages

DATA_STAGES = ("collect", "augment", "scale")
SIZES = (10_000, 60_000)


def make_source(mnist: Path, samples: int, folder: Path) -> Path:
    """An npz of `samples` digits: the MNIST test set, then copies of it shifted right by 1, 2, ... pixels."""
    images = read_idx(mnist / "t10k-images-idx3-ubyte.gz")[:, None]
    labels = read_idx(mnist / "t10k-labels-idx1-ubyte.gz")
    copies = -(-samples // len(images))
    x = np.concatenate([np.roll(images, shift, axis=3) for shift in range(copies)])[:samples]
    y = np.tile(labels, copies)[:samples]
    path = folder / f"digits-{samples}.npz"
    np.savez(path, x=x, y=y)
    return path


def timed_stages(source: Path, cache: Path) -> dict[str, tuple[float, int]]:
    """Seconds and entry bytes of each data stage, run from `cache` (cold when it is empty)."""
    config = load_config(None, [f"data.source=npz:{source}", "train.device=cpu"])
    stages = [stage for stage in default_stages(config) if stage.name in DATA_STAGES]
    outcomes, _ = run_stages(config, CacheStore(cache), context=RunContext(progress=False), stages=stages)
    return {o.name: (o.seconds, sum(p.stat().st_size for p in (cache / o.name / o.key).iterdir())) for o in outcomes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-t10k")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[tuple[int, str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sources = {samples: make_source(args.mnist, samples, work) for samples in SIZES}
        timed_stages(sources[SIZES[0]], work / "warm-up")  # imports and first-use costs, not counted
        entry_bytes: dict[tuple[int, str], int] = {}
        for round_number in range(args.rounds):
            for samples, source in sources.items():
                cache = work / f"cache-{samples}-{round_number}"
                for state in ("cold", "warm"):
                    for stage, (seconds, size) in timed_stages(source, cache).items():
                        results.setdefault((samples, stage, state), []).append(seconds)
                        entry_bytes[samples, stage] = size
        print(f"{'samples':>8} {'stage':<8} {'cold s':>8} {'warm s':>8} {'entry MB':>9} {'per source byte':>16}")
        for samples, source in sources.items():
            source_bytes = source.stat().st_size
            for stage in DATA_STAGES:
                cold, warm = (statistics.median(results[samples, stage, state]) for state in ("cold", "warm"))
                size = entry_bytes[samples, stage]
                print(f"{samples:>8} {stage:<8} {cold:>8.3f} {warm:>8.3f} {size / 1e6:>9.1f} {size / source_bytes:>16.2f}")
            total = sum(entry_bytes[samples, stage] for stage in DATA_STAGES)
            warm_total = sum(statistics.median(results[samples, stage, "warm"]) for stage in DATA_STAGES)
            print(f"{samples:>8} {'all':<8} {'':>8} {warm_total:>8.3f} {total / 1e6:>9.1f} {total / source_bytes:>16.2f}")
    biggest = SIZES[-1]
    ratio = statistics.median(results[biggest, "scale", "cold"]) / statistics.median(results[biggest, "augment", "cold"])
    print(f"scale_over_augment={ratio:.2f}")


if __name__ == "__main__":
    main()
