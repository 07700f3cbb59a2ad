"""Augmentation throughput: this project's batched transforms against albumentations and torchvision v2.

Recipe: pad 2 + random crop 28, horizontal flip, normalize, on the MNIST test set (10,000
28x28 digits). albumentations and torchvision run per image, as they do in a Dataset;
ours runs on batches. All three run in this process, one after the other.

    python benchmarks/bench_augment.py [--data DIR] [--batch-size 512] [--repeats 3]

Prints images/second for each; ours at one thread against the bound of copying the uint8
images once into new memory at one thread (`share_of_copy_bound=`: what share of the memory bandwidth the
recipe reaches); and, last, `ratio_vs_albumentations=<ours / albumentations>`.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from datasets.idx import read_idx
from transforms import Compose, Normalize, RandomCrop, RandomHorizontalFlip

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist-t10k"
MEAN, STD = 0.1307, 0.3081


def best_seconds(work: Callable[[], None], repeats: int) -> float:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return min(timings)


def ours(images: torch.Tensor, batch_size: int, device: torch.device) -> Callable[[], None]:
    recipe = Compose([RandomCrop(28, padding=2), RandomHorizontalFlip(), Normalize([MEAN], [STD])])
    data = images.to(device)
    generator = torch.Generator(device=device).manual_seed(0)

    def work() -> None:
        for start in range(0, data.shape[0], batch_size):
            recipe(data[start : start + batch_size], generator)
        if device.type == "cuda":
            torch.cuda.synchronize()

    return work


def copy_once(images: torch.Tensor) -> Callable[[], None]:
    """The bandwidth bound: the uint8 images copied once into new memory (each copy is kept, so
    every repeat writes fresh pages, as a recipe writes fresh outputs), nothing computed."""
    kept = []

    def work() -> None:
        kept.append(images.clone())

    return work


def at_one_thread(work: Callable[[], None], repeats: int) -> float:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return best_seconds(work, repeats)
    finally:
        torch.set_num_threads(threads)


def albumentations_per_image(images: np.ndarray) -> Callable[[], None]:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations as A

    recipe = A.Compose(
        [A.Pad(padding=2, fill=0), A.RandomCrop(28, 28), A.HorizontalFlip(p=0.5), A.Normalize(mean=MEAN, std=STD)],
        seed=0,
    )

    def work() -> None:
        for image in images:
            recipe(image=image)

    return work


def torchvision_per_image(images: torch.Tensor) -> Callable[[], None]:
    from torchvision.transforms import v2

    recipe = v2.Compose(
        [
            v2.RandomCrop(28, padding=2),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize([MEAN], [STD]),
        ]
    )

    def work() -> None:
        for image in images:
            recipe(image)

    return work


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with t10k-images-idx3-ubyte(.gz)")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    path = next((p for p in (args.data / "t10k-images-idx3-ubyte.gz", args.data / "t10k-images-idx3-ubyte") if p.exists()), None)
    if path is None:
        raise SystemExit(f"No t10k-images-idx3-ubyte(.gz) in {args.data}; pass --data DIR.")
    images = read_idx(path)
    n = images.shape[0]
    batched = torch.from_numpy(images).unsqueeze(1)
    print(f"{n} images of {images.shape[1]}x{images.shape[2]} from {path}; torch threads: {torch.get_num_threads()}")

    rates = {
        "gainsplit batched (cpu)": n / best_seconds(ours(batched, args.batch_size, torch.device("cpu")), args.repeats),
        "albumentations per image": n / best_seconds(albumentations_per_image(images), args.repeats),
        "torchvision v2 per image": n / best_seconds(torchvision_per_image(batched), args.repeats),
    }
    if torch.cuda.is_available():
        work = ours(batched, args.batch_size, torch.device("cuda"))
        work()  # warm-up: CUDA context and kernels
        rates["gainsplit batched (cuda)"] = n / best_seconds(work, args.repeats)
    ours_one = n / at_one_thread(ours(batched, args.batch_size, torch.device("cpu")), args.repeats)
    bound_one = n / at_one_thread(copy_once(batched), args.repeats)
    for name, rate in rates.items():
        print(f"{name:<26} {rate:>12,.0f} images/s")
    print(f"{'gainsplit, 1 thread':<26} {ours_one:>12,.0f} images/s")
    print(f"{'uint8 copy, 1 thread':<26} {bound_one:>12,.0f} images/s")
    print(f"share_of_copy_bound={ours_one / bound_one:.2f}")
    ratio = rates["gainsplit batched (cpu)"] / rates["albumentations per image"]
    print(f"ratio_vs_torchvision={rates['gainsplit batched (cpu)'] / rates['torchvision v2 per image']:.1f}")
    print(f"ratio_vs_albumentations={ratio:.1f}")


if __name__ == "__main__":
    main()
