"""Epoch time of the training loop against a minimal hand-written PyTorch loop, in one process.

The loop is timed as `pipeline run` uses it (`fit_array` on a fused array of one member) and
as a library caller uses it (`fit` on a plain network and torch optimizer). Same model (the
default CNN), data (scikit-learn's digits, standardized, already on the device), batch size,
optimizer and seed; all evaluate on the validation split after each epoch. Rounds alternate
between them so drift in machine speed hits all alike.

    python benchmarks/bench_trainer.py [--epochs 5] [--rounds 5] [--device auto]

Last line: `overhead_ratio=<median pipeline-loop epoch / median plain epoch>`.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from trainers import Split, build_model, build_optimizer, evaluate, fit, resolve_device
from trainers.arrays import fused_array
from trainers.loop import Member, fit_array

BATCH_SIZE, LR, SEED = 64, 2e-3, 0


def data(device: torch.device) -> tuple[Split, Split]:
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1)
    x = (x - x.mean()) / x.std()
    y = torch.tensor(digits.target)
    return Split(x[:1400].to(device), y[:1400].to(device)), Split(x[1400:].to(device), y[1400:].to(device))


def fresh_model(device: torch.device) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(SEED)
    model = build_model({"type": "cnn"}, (1, 8, 8), 10).to(device)
    return model, build_optimizer(model.parameters(), {"name": "adam", "lr": LR})


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def trainer_epochs(train: Split, val: Split, epochs: int, device: torch.device) -> float:
    model, optimizer = fresh_model(device)
    sync(device)
    started = time.perf_counter()
    fit(model, train, val, optimizer, epochs=epochs, batch_size=BATCH_SIZE, device=device, seed=SEED, progress=False)
    sync(device)
    return (time.perf_counter() - started) / epochs


def pipeline_epochs(train: Split, val: Split, epochs: int, device: torch.device) -> float:
    torch.manual_seed(SEED)
    array = fused_array([{"type": "cnn"}], [{"name": "adam", "lr": LR}], [SEED], (1, 8, 8), 10, device)
    sync(device)
    started = time.perf_counter()
    fit_array(array, [Member(train, val, epochs, seed=SEED)], batch_size=BATCH_SIZE, device=device, progress=False)
    sync(device)
    return (time.perf_counter() - started) / epochs


def plain_epochs(train: Split, val: Split, epochs: int, device: torch.device) -> float:
    model, optimizer = fresh_model(device)
    generator = torch.Generator().manual_seed(SEED)
    n = train.x.shape[0]
    sync(device)
    started = time.perf_counter()
    for _ in range(epochs):
        model.train()
        order = torch.randperm(n, generator=generator).to(device)
        for start in range(0, n, BATCH_SIZE):
            rows = order[start : start + BATCH_SIZE]
            loss = F.cross_entropy(model(train.x[rows]), train.y[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        evaluate(model, val)
    sync(device)
    return (time.perf_counter() - started) / epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    train, val = data(device)
    plain_epochs(train, val, 1, device)  # warm-up: allocator, kernels
    pipeline, library, plain = [], [], []
    for _ in range(args.rounds):
        pipeline.append(pipeline_epochs(train, val, args.epochs, device))
        library.append(trainer_epochs(train, val, args.epochs, device))
        plain.append(plain_epochs(train, val, args.epochs, device))
    median = statistics.median
    print(f"device: {device}, {train.x.shape[0]} training samples, batch size {BATCH_SIZE}, threads {torch.get_num_threads()}")
    print(f"plain loop epoch seconds (median of {args.rounds}): {median(plain):.4f}")
    print(f"fit (plain network, torch optimizer) epoch seconds: {median(library):.4f}, ratio {median(library) / median(plain):.3f}")
    print(f"fit_array (fused array of one, as pipeline run trains) epoch seconds: {median(pipeline):.4f}")
    print(f"overhead_ratio={median(pipeline) / median(plain):.3f}")


if __name__ == "__main__":
    main()
