"""The same work on the CPU and on CUDA: the default run, the MNIST test set (80/10/10) and the
default ablation.

Prints, per device: seconds per epoch, training images per second and test accuracy for the
default run and MNIST, then the default ablation's wall time (every training, fused).
Without CUDA it runs the CPU half and says so. Each device trains from fresh train-stage
entries; the data stages of the single runs are built once and shared.

    python benchmarks/gpu_check.py [--data DIR] [--mnist-epochs 5] [--no-ablation]
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
from pipeline.config import load_config
from pipeline.runner import run_pipeline

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist-t10k"


def scenarios(data: Path, mnist_epochs: int) -> dict[str, list[str]]:
    mnist = [
        f"data.source=idx:{data}",
        "data.val_fraction=0.1",
        "data.test_fraction=0.1",
        "augment.mode=online",
        "augment.recipe=[{name: RandomCrop, padding: 2}]",
        f"train.epochs={mnist_epochs}",
        "early_stop.enabled=false",
    ]
    return {"digits (default)": [], "MNIST t10k 80/10/10": mnist}


def single_runs(devices: list[str], data: Path, mnist_epochs: int, tmp: Path) -> None:
    print(f"{'run':<22} {'device':<6} {'s/epoch':>8} {'images/s':>10} {'test acc':>8} {'wall s':>7}")
    for name, overrides in scenarios(data, mnist_epochs).items():
        for device in devices:
            config = load_config(None, [*overrides, f"train.device={device}"])
            started = time.perf_counter()
            result = run_pipeline(config, tmp / "cache", tmp / "runs", progress=False)
            wall = time.perf_counter() - started
            per_epoch = float(result.history["seconds"].median())
            train_size = result.record["train_samples"]
            print(
                f"{name:<22} {result.record['device']:<6} {per_epoch:>8.3f} {train_size / per_epoch:>10,.0f} "
                f"{result.metrics['test_accuracy']:>8.4f} {wall:>7.1f}",
                flush=True,
            )


def ablation_wall_time(devices: list[str], tmp: Path) -> None:
    tree = copy.deepcopy(DEFAULT_ABLATION)
    design = AblationConfig(**tree.pop("ablation"))
    for device in devices:
        started = time.perf_counter()
        out, cache = tmp / f"ablation-{device}", tmp / f"cache-{device}"
        summary = run_ablation(tree, [f"train.device={device}"], design, out, cache, progress=False)
        wall = time.perf_counter() - started
        trainings = sum(summary["stages"]["train"].values())
        print(f"default ablation       {device:<6} {trainings} trainings in {wall:.1f} s ({wall / trainings:.2f} s each)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--mnist-epochs", type=int, default=5)
    parser.add_argument("--no-ablation", action="store_true", help="skip the default ablation's wall time")
    args = parser.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if len(devices) == 1:
        print(f"No CUDA device here: running the CPU half only (torch {torch.__version__}, {torch.get_num_threads()} threads).")
    else:
        print(f"CUDA device: {torch.cuda.get_device_name(0)} (torch {torch.__version__}, {torch.get_num_threads()} CPU threads)")
    with tempfile.TemporaryDirectory() as tmp:
        single_runs(devices, args.data, args.mnist_epochs, Path(tmp))
        if not args.no_ablation:
            ablation_wall_time(devices[::-1], Path(tmp))  # CUDA first: the figure this check is for


if __name__ == "__main__":
    main()
