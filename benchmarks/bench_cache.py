"""Cold, warm and model-side-change runs of the default pipeline, timed per stage.

Prints the seconds of every stage in each scenario; the last line is the warm/cold ratio
of the data stages (collect + augment + scale), which the cache is meant to make tiny.

    python benchmarks/bench_cache.py [key=value ...]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from pipeline.config import load_config
from pipeline.runner import run_pipeline

DATA_STAGES = ("collect", "augment", "scale")


def main(overrides: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {"cache_dir": Path(tmp) / "cache", "runs_dir": Path(tmp) / "runs"}
        scenarios = [("cold", overrides), ("warm", overrides), ("model.dropout=0.3", [*overrides, "model.dropout=0.3"])]
        seconds = {}
        print(f"{'scenario':<18} {'stage':<8} {'cache':<5} {'seconds':>8}")
        for name, extra in scenarios:
            result = run_pipeline(load_config(None, extra), **dirs, progress=False)
            seconds[name] = {o.name: o.seconds for o in result.stages}
            for o in result.stages:
                print(f"{name:<18} {o.name:<8} {o.cache:<5} {o.seconds:>8.4f}")
            print(f"{name:<18} {'total':<8} {'':<5} {sum(seconds[name].values()):>8.4f}")
    cold = sum(seconds["cold"][s] for s in DATA_STAGES)
    warm = sum(seconds["warm"][s] for s in DATA_STAGES)
    total_ratio = sum(seconds["warm"].values()) / sum(seconds["cold"].values())
    print(f"all stages warm/cold: {total_ratio:.4f}")
    print(f"data stages warm/cold: {warm:.4f}s / {cold:.4f}s = {warm / cold:.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
