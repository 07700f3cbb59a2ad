"""The default ablation fused and one training at a time, in one process.

Both start from an empty cache of their own (the data stages, a fraction of a second, are
built by each), run the same 50 trainings (10 variants x 5 seeds on digits) and write their
reports. Prints both wall times, the largest difference in a variant's mean test accuracy
between the two, and last `fused_speedup=<one at a time / fused>`.

    python benchmarks/bench_ablation.py [--device auto]
"""

from __future__ import annotations

import argparse
import copy
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
    args = parser.parse_args()
    device = str(resolve_device(args.device))
    with tempfile.TemporaryDirectory() as tmp:
        alone_seconds, alone = timed(False, device, Path(tmp))
        fused_seconds, fused = timed(True, device, Path(tmp))
    trainings = sum(alone["stages"]["train"].values())
    gap = max(
        abs(a["test_accuracy"]["mean"] - b["test_accuracy"]["mean"]) for a, b in zip(alone["variants"], fused["variants"], strict=True)
    )
    print(f"device: {device}, threads {torch.get_num_threads()}, {trainings} trainings")
    print(f"one at a time: {alone_seconds:.1f} s")
    print(f"fused:         {fused_seconds:.1f} s")
    print(f"largest difference in a variant's mean test accuracy: {gap * 100:.2f} points")
    print(f"fused_speedup={alone_seconds / fused_seconds:.2f}")


if __name__ == "__main__":
    main()
