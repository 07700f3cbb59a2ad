"""An ablation fused and one training at a time, in one process; and what its five seeds
fused cost against the three seeds it ran one at a time before fusion.

The workload is the default ablation as it was until 2026-12-04 (`WORKLOAD`: 50 trainings, 10
variants x 5 seeds, 20 epochs on all of digits), kept fixed so that its figures stay comparable
(the default now teaches on a smaller training set; see `pipeline.ablation.default`).
Each run starts from an empty cache of its own (the data stages, a fraction of a second, are
built by each) and writes its report. A round runs three: the 50 trainings one at a time, the
same 50 fused, and the 30 trainings of the default before fusion (seeds 0, 1, 2, one at a time). Rounds take turns at which goes first,
so that drift in the machine's speed hits all alike: on the shared 2-core CPU the same
ablation has taken anywhere from 114 s to 133 s. Prints each round's wall times and ratios,
the largest difference in a variant's mean test accuracy between fused and one at a time,
`five_seeds_fused_over_three_alone=<median over rounds>` (at most 1: the extra seeds cost no
wall time), and last `fused_speedup=<median over rounds of one at a time / fused>`.

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

from pipeline.ablation.design import AblationConfig
from pipeline.ablation.execute import run_ablation
from trainers import resolve_device


WORKLOAD = {
    "train": {"epochs": 20},
    "ablation": {
        "design": "one_at_a_time",
        "seeds": [0, 1, 2, 3, 4],
        "vary": ["train", "split", "augment"],
        "remove_one": False,
        "factors": {
            "augment.mode": {"side": "data", "values": ["none", "offline"]},
            "scale.method": {"side": "data", "values": ["none", "standard"]},
            "model.batch_norm": {"side": "model", "values": [False, True]},
            "model.dropout": {"side": "model", "values": [0.0, 0.3]},
            "early_stop.enabled": {"side": "model", "values": [False, True]},
            "schedule.type": {"side": "model", "values": ["none", "cosine"]},
        },
    },
}

RUNS = {  # name: (fused, seeds); None keeps the workload's seeds
    "alone": (False, None),
    "fused": (True, None),
    "three alone": (False, [0, 1, 2]),  # the default before fusion
}


def timed(name: str, device: str, tmp: Path) -> tuple[float, dict]:
    fuse, seeds = RUNS[name]
    tree = copy.deepcopy(WORKLOAD)
    design = AblationConfig(**{**tree.pop("ablation"), **({"seeds": seeds} if seeds else {})})
    folder = name.replace(" ", "-")
    started = time.perf_counter()
    summary = run_ablation(tree, [f"train.device={device}"], design, tmp / folder, tmp / f"cache-{folder}", progress=False, fuse=fuse)
    return time.perf_counter() - started, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    device = str(resolve_device(args.device))
    ratios, seed_costs, gaps = [], [], []
    print(f"device: {device}, threads {torch.get_num_threads()}")
    names = list(RUNS)
    for round_number in range(1, args.rounds + 1):
        shift = (round_number - 1) % len(names)
        with tempfile.TemporaryDirectory() as tmp:
            runs = {name: timed(name, device, Path(tmp)) for name in names[shift:] + names[:shift]}
        (alone_seconds, alone), (fused_seconds, fused), (three_seconds, _) = (runs[name] for name in RUNS)
        gaps.append(
            max(abs(a["test_accuracy"]["mean"] - b["test_accuracy"]["mean"]) for a, b in zip(alone["variants"], fused["variants"], strict=True))
        )
        ratios.append(alone_seconds / fused_seconds)
        seed_costs.append(fused_seconds / three_seconds)
        trainings = sum(alone["stages"]["train"].values())
        print(
            f"round {round_number}: {trainings} trainings one at a time {alone_seconds:.1f} s, fused {fused_seconds:.1f} s "
            f"(ratio {ratios[-1]:.2f}); 3 seeds one at a time {three_seconds:.1f} s (fused 5 seeds / that: {seed_costs[-1]:.2f})",
            flush=True,
        )
    print(f"largest difference in a variant's mean test accuracy: {max(gaps) * 100:.2f} points")
    print(f"ratio over rounds: min {min(ratios):.2f}, max {max(ratios):.2f}")
    print(f"five_seeds_fused_over_three_alone={statistics.median(seed_costs):.2f}")
    print(f"fused_speedup={statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
