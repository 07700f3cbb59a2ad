"""The default ablation fused and one training at a time, in one process.

Both start from an empty cache of their own (the data stages, a fraction of a second, are
built by each), run the same 50 trainings (10 variants x 5 seeds on digits) and write their
reports. A round runs both, in turns (one at a time first in odd rounds, fused first in even
ones), so that drift in the machine's speed hits both alike: on the shared 2-core CPU the
same ablation has taken anywhere from 114 s to 133 s. Prints each round's wall times and
ratio, the largest difference in a variant's mean test accuracy between the two modes, and
last `fused_speedup=<median over rounds of one at a time / fused>`.

    python benchmarks/bench_ablation.py [--device auto] [--rounds 3]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch

from pipeline.ablation.default import DEFAULT_ABLATION
from pipeline.ablation.design import AblationConfig
from pipeline.ablation.execute import run_ablation
from trainers import resolve_device


def timed(fuse: bool, device: str, tmp: Path) -> tuple[float, dict]:
    tree = copy.deepcopy(DEFAULT_ABLATION)
    design = AblationConfig(**tree.pop("ablation"))
    name = "fused" if fuse else "alone"
    started = time.perf_counter()
    summary = run_ablation(tree, [f"train.device={device}"], design, tmp / name, tmp / f"cache-{name}", progress=False, fuse=fuse)
    return time.perf_counter() - started, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    device = str(resolve_device(args.device))
    ratios, gaps = [], []
    print(f"device: {device}, threads {torch.get_num_threads()}")
    for round_number in range(1, args.rounds + 1):
        order = (False, True) if round_number % 2 else (True, False)
        with tempfile.TemporaryDirectory() as tmp:
            runs = {fuse: timed(fuse, device, Path(tmp)) for fuse in order}
        (alone_seconds, alone), (fused_seconds, fused) = runs[False], runs[True]
        gaps.append(
            max(abs(a["test_accuracy"]["mean"] - b["test_accuracy"]["mean"]) for a, b in zip(alone["variants"], fused["variants"], strict=True))
        )
        ratios.append(alone_seconds / fused_seconds)
        trainings = sum(alone["stages"]["train"].values())
        print(f"round {round_number}: {trainings} trainings, one at a time {alone_seconds:.1f} s, fused {fused_seconds:.1f} s, ratio {ratios[-1]:.2f}", flush=True)
    print(f"largest difference in a variant's mean test accuracy: {max(gaps) * 100:.2f} points")
    print(f"ratio over rounds: min {min(ratios):.2f}, max {max(ratios):.2f}")
    print(f"fused_speedup={statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
