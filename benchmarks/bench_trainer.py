"""Epoch time of `trainers.fit` against a minimal hand-written PyTorch loop, in one process.

Same model (the default CNN), data (scikit-learn's digits, standardized, already on the
device), batch size, optimizer and seed; both evaluate on the validation split after each
epoch. Rounds alternate between the two so drift in machine speed hits both alike.

    python benchmarks/bench_trainer.py [--epochs 5] [--rounds 5] [--device auto]

Last line: `overhead_ratio=<median trainer epoch / median plain epoch>`.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from trainers import Split, build_model, build_optimizer, evaluate, fit, resolve_device

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
    trainer, plain = [], []
    for _ in range(args.rounds):
        trainer.append(trainer_epochs(train, val, args.epochs, device))
        plain.append(plain_epochs(train, val, args.epochs, device))
    print(f"device: {device}, {train.x.shape[0]} training samples, batch size {BATCH_SIZE}, threads {torch.get_num_threads()}")
    print(f"trainer epoch seconds (median of {args.rounds}): {statistics.median(trainer):.4f}")
    print(f"plain loop epoch seconds (median of {args.rounds}): {statistics.median(plain):.4f}")
    print(f"overhead_ratio={statistics.median(trainer) / statistics.median(plain):.3f}")


if __name__ == "__main__":
    main()
