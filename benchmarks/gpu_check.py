"""The same runs on the CPU and on CUDA: the default pipeline and the MNIST test set (80/10/10).

Prints, per device and dataset, seconds per epoch, training images per second and test
accuracy. Without CUDA it runs the CPU half and says so. Each device trains from its own
fresh train-stage entry; the data stages are built once and shared.

    python benchmarks/gpu_check.py [--data DIR] [--mnist-epochs 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--mnist-epochs", type=int, default=5)
    args = parser.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if len(devices) == 1:
        print("No CUDA device here: running the CPU half only.")
    else:
        print(f"CUDA device: {torch.cuda.get_device_name(0)}")
    print(f"{'run':<22} {'device':<6} {'s/epoch':>8} {'images/s':>10} {'test acc':>8} {'wall s':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, overrides in scenarios(args.data, args.mnist_epochs).items():
            for device in devices:
                config = load_config(None, [*overrides, f"train.device={device}"])
                started = time.perf_counter()
                result = run_pipeline(config, Path(tmp) / "cache", Path(tmp) / "runs", progress=False)
                wall = time.perf_counter() - started
                per_epoch = statistics.median(row["seconds"] for row in result.history)
                train_size = result.record["train_samples"]
                print(
                    f"{name:<22} {device:<6} {per_epoch:>8.3f} {train_size / per_epoch:>10,.0f} "
                    f"{result.metrics['test_accuracy']:>8.4f} {wall:>7.1f}"
                )


if __name__ == "__main__":
    main()
