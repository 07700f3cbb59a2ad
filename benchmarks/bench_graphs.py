"""Epoch time of fused arrays on CUDA with the step replayed from CUDA graphs against the same
step launched kernel by kernel, in one process.

Arrays of 1, 5 and 25 members of the default CNN with dropout 0.3 (the ablation's largest
array has 25), Adam, digits standardized and kept on the device, each member its own seed and
rate. Rounds alternate between the two modes so drift in the machine hits both alike.

    python benchmarks/bench_graphs.py [--epochs 3] [--rounds 3] [--members 1 5 25]

Last line: `graph_speedup=<median eager epoch / median graphed epoch>` for the largest array.
Needs a CUDA device; without one it says so and exits.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from bench_trainer import data
from trainers.arrays import fused_array
from trainers.loop import Member, fit_array

BATCH_SIZE = 64


def epoch_seconds(members: int, train, val, epochs: int, graphs: bool) -> tuple[float, int]:
    """Seconds per epoch of one fused training, and how many steps were replayed from graphs."""
    device = train.x.device
    torch.manual_seed(0)
    specs = [{"type": "cnn", "dropout": 0.3}] * members
    optims = [{"name": "adam", "lr": 1e-3 * (1 + k % 3)} for k in range(members)]
    array = fused_array(specs, optims, list(range(members)), (1, 8, 8), 10, device)
    torch.cuda.synchronize(device)
    started = time.perf_counter()
    results = fit_array(
        array, [Member(train, val, epochs, seed=k) for k in range(members)], batch_size=BATCH_SIZE, cuda_graphs=graphs, progress=False
    )
    torch.cuda.synchronize(device)
    return (time.perf_counter() - started) / epochs, results[0].graph_replays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--members", type=int, nargs="+", default=[1, 5, 25])
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_graphs needs a CUDA device; there is none here.")
    device = torch.device("cuda", torch.cuda.current_device())
    train, val = data(device)
    epoch_seconds(1, train, val, 1, graphs=True)  # warm-up: CUDA context, cuDNN, allocator
    print(f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, {train.x.shape[0]} samples per member, batch {BATCH_SIZE}")
    print(f"{'members':>7} {'eager s/epoch':>13} {'graphs s/epoch':>14} {'replayed':>8} {'speedup':>7}")
    speedup = 0.0
    for members in args.members:
        eager, graphed, replayed = [], [], 0
        for _ in range(args.rounds):
            eager.append(epoch_seconds(members, train, val, args.epochs, graphs=False)[0])
            seconds, replayed = epoch_seconds(members, train, val, args.epochs, graphs=True)
            graphed.append(seconds)
        speedup = statistics.median(eager) / statistics.median(graphed)
        print(f"{members:>7} {statistics.median(eager):>13.4f} {statistics.median(graphed):>14.4f} {replayed:>8} {speedup:>7.2f}", flush=True)
    print(f"graph_speedup={speedup:.2f}")


if __name__ == "__main__":
    main()
