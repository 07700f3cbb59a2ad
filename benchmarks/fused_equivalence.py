"""How close a fused array's members stay to the same networks trained one at a time, beside
torch.func's ensembling (`stack_module_state` + `vmap` over `functional_call`) of the same
members, on the default network and data, on the CPU in fp32.

The network is the default configuration's (`python -m pipeline show-config`: a CNN with
channels 32, 64, a hidden layer of 128, batch norm; Adam at lr 0.002; batches of 64); the data
scikit-learn's digits, standardised, 80% to train on. Member k is initialised from its seed k
and reads its own shuffled batches. Three ways train the same K members on the same batches:

- plain: each network alone, `F.cross_entropy` and torch's own Adam (its lr the float32 value
  the training loop hands over, as `fit` does);
- fused: `trainers.arrays.fused_array` (grouped convolutions, batched matmuls, one BatchNorm
  over K*C channels, `FusedOptimizer`), one step for all, the members' losses summed;
- vmap: `stack_module_state` + `vmap(functional_call)`, torch's Adam over the stacked tensors;
- plain, other threads: the plain way again on 1 thread (on 2 where torch has only 1): how far
  the plain loop is from itself when PyTorch's kernels sum in another order.

Printed, each of the other three against plain:

- gradients of the first backward pass (before any step): per tensor, the largest difference
  over the tensor's largest entry, |g - g_plain|max / |g_plain|max; the largest over tensors
  and members, also in units u = 2**-24 (float32's unit roundoff);
- weights after each number of `--steps`: per tensor, ||w - w_plain|| / ||w_plain|| ("of the
  weights") and ||w - w_plain|| / ||w_plain - w_start|| ("of the distance trained", which also
  counts BatchNorm biases that start at 0); the median over members of each member's largest
  over tensors, and the largest;
- after `--epochs` epochs: each member's test accuracy the four ways, and the differences in
  test samples.

    python benchmarks/fused_equivalence.py [--members 5] [--steps 1 20] [--epochs 5] [--threads N]

(`ATEN_CPU_CAPABILITY=default` or `avx2` in the environment picks PyTorch's CPU kernels.)

A measurement, not a test: nothing here is asserted (tests/test_fused.py states what holds).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import platform
import statistics
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from pipeline.config import load_config
from trainers import build_model, build_optimizer
from trainers.arrays import fused_array
from trainers.fused import fused_cross_entropy

SHAPE, CLASSES = (1, 8, 8), 10
UNIT_ROUNDOFF = 2.0**-24
State = dict[str, torch.Tensor]


def default_settings() -> tuple[dict, dict, int]:
    """The default configuration's model and optim sections and batch size."""
    config = load_config()
    return config.model.model_dump(exclude={"sync_batch_norm"}), config.optim.model_dump(), config.train.batch_size


def digits(seed: int = 0, test_fraction: float = 0.2) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """scikit-learn's digits as `(N, 1, 8, 8)` images, standardised with the training part's mean and std."""
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(data.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    held = int(round(len(y) * test_fraction))
    train, test = order[held:], order[:held]
    x = (x - x[train].mean()) / x[train].std()
    return (x[train], y[train]), (x[test], y[test])


def batch_rows(samples: int, batch_size: int, steps: int, seed: int) -> torch.Tensor:
    """`(steps, batch_size)` rows of one member: full batches of a new shuffle each epoch."""
    per_epoch = samples // batch_size
    rows = []
    for epoch in range((steps + per_epoch - 1) // per_epoch):
        generator = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0]))
        rows.append(torch.randperm(samples, generator=generator)[: per_epoch * batch_size].view(per_epoch, batch_size))
    return torch.cat(rows)[:steps]


class Setup:
    """The K members, their batches and what each way of training them records."""

    def __init__(self, members: int, steps: int, seed_offset: int = 0) -> None:
        self.spec, self.optim, self.batch_size = default_settings()
        self.lr32 = float(torch.tensor(self.optim["lr"], dtype=torch.float32))
        (self.x, self.y), (self.test_x, self.test_y) = digits()
        self.seeds = [seed_offset + k for k in range(members)]
        self.rows = torch.stack([batch_rows(len(self.y), self.batch_size, steps, seed) for seed in self.seeds])  # (K, steps, B)

    def network(self, k: int) -> nn.Module:
        torch.manual_seed(self.seeds[k])
        return build_model(self.spec, SHAPE, CLASSES)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Every member's batch of this step, `(K, B, 1, 8, 8)` and `(K, B)`."""
        rows = self.rows[:, step]
        return self.x[rows], self.y[rows]


Recorder = Callable[[int, Callable[[], list[State]]], None]


def train_plain(setup: Setup, steps: int, record: Recorder) -> list[State]:
    """Each member alone with torch's Adam; returns the first backward's gradients per member."""
    grads: list[State] = []
    models, optimizers = [], []
    for k in range(len(setup.seeds)):
        model = setup.network(k).train()
        models.append(model)
        optimizers.append(build_optimizer(model.parameters(), {**setup.optim, "lr": setup.lr32}))
    for step in range(steps):
        x, y = setup.batch(step)
        for k, (model, optimizer) in enumerate(zip(models, optimizers)):
            optimizer.zero_grad()
            F.cross_entropy(model(x[k]), y[k]).backward()
            if step == 0:
                grads.append({name: p.grad.clone() for name, p in model.named_parameters()})
            optimizer.step()
        record(step + 1, lambda: [{n: t.detach().clone() for n, t in m.state_dict().items()} for m in models])
    return grads


def train_fused(setup: Setup, steps: int, record: Recorder) -> list[State]:
    """The members as one fused array with its FusedOptimizer, stepped as `fit_array` steps it."""
    members = len(setup.seeds)
    array = fused_array([setup.spec] * members, [setup.optim] * members, setup.seeds, SHAPE, CLASSES, torch.device("cpu"))
    net, optimizer = array.module.train(), array.optimizer
    grads: list[State] = []
    for step in range(steps):
        x, y = setup.batch(step)
        optimizer.zero_grad(set_to_none=True)
        fused_cross_entropy(net(x), y).sum().backward()
        if step == 0:
            holder = copy.deepcopy(net)  # the gradients in the parameters' places, read member by member
            with torch.no_grad():
                for slot, p in zip(holder.parameters(), net.parameters()):
                    slot.copy_(p.grad)
            names = {name for name, _ in setup.network(0).named_parameters()}
            grads = [{n: t for n, t in holder.member_state_dict(k).items() if n in names} for k in range(members)]
        optimizer.step()
        record(step + 1, lambda: [array.member_state_dict(k) for k in range(members)])
    return grads


def train_vmap(setup: Setup, steps: int, record: Recorder) -> list[State]:
    """torch.func's model ensembling: stacked parameters, vmap over functional_call, torch's Adam."""
    members = len(setup.seeds)
    models = [setup.network(k).train() for k in range(members)]
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    optimizer = build_optimizer(list(params.values()), {**setup.optim, "lr": setup.lr32})

    def loss(p: State, b: State, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(base, (p, b), (x,)), y)

    grads: list[State] = []
    for step in range(steps):
        x, y = setup.batch(step)
        optimizer.zero_grad()
        vmap(loss)(params, buffers, x, y).sum().backward()
        if step == 0:
            grads = [{n: p.grad[k].clone() for n, p in params.items()} for k in range(members)]
        optimizer.step()
        record(step + 1, lambda: [{**{n: p[k].detach().clone() for n, p in params.items()}, **{n: b[k].clone() for n, b in buffers.items()}} for k in range(members)])
    return grads


def gradient_difference(got: list[State], expected: list[State]) -> tuple[float, str]:
    """The largest over members and tensors of |g - g_plain|max / |g_plain|max, and where."""
    worst, where = 0.0, ""
    for k, (member, reference) in enumerate(zip(got, expected)):
        for name, tensor in reference.items():
            relative = float((member[name] - tensor).abs().max() / tensor.abs().max())
            if relative > worst:
                worst, where = relative, f"member {k} {name}"
    return worst, where


def weight_difference(got: list[State], expected: list[State], start: list[State]) -> dict[str, tuple[float, float, str]]:
    """Per measure, the median over members of each member's largest relative difference over
    its float tensors, the largest, and where it is."""
    measures: dict[str, list[tuple[float, str]]] = {"of the weights": [], "of the distance trained": []}
    for k, (member, reference, initial) in enumerate(zip(got, expected, start)):
        rows = {key: [] for key in measures}
        for name, tensor in reference.items():
            if not tensor.is_floating_point():
                continue
            gap = float((member[name] - tensor).norm())
            rows["of the weights"].append((gap / max(float(tensor.norm()), 1e-30), f"member {k} {name}"))
            rows["of the distance trained"].append((gap / max(float((tensor - initial[name]).norm()), 1e-30), f"member {k} {name}"))
        for key in measures:
            measures[key].append(max(rows[key]))
    return {key: (statistics.median(v for v, _ in values), *max(values)) for key, values in measures.items()}


def test_accuracy(setup: Setup, state: State) -> int:
    """Correct test samples of one member's weights, evaluated by the plain network (so only the weights differ)."""
    model = setup.network(0)
    model.load_state_dict(state)
    with torch.no_grad():
        return int((model.eval()(setup.test_x).argmax(dim=1) == setup.test_y).sum())


def train_plain_other_threads(setup: Setup, steps: int, record: Recorder) -> list[State]:
    """The plain way on 1 thread (2 where torch runs on 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2 if threads == 1 else 1)
    try:
        return train_plain(setup, steps, record)
    finally:
        torch.set_num_threads(threads)


WAYS = {"plain": train_plain, "fused": train_fused, "vmap": train_vmap, "plain, other threads": train_plain_other_threads}
COMPARED = [way for way in WAYS if way != "plain"]
WIDTH = max(map(len, WAYS))


def run(setup: Setup, steps: int, checkpoints: Sequence[int]) -> tuple[dict[str, list[State]], dict[str, dict[int, list[State]]]]:
    """Every way's first gradients and its members' states after each step in `checkpoints`."""
    grads, weights = {}, {}
    for name, train in WAYS.items():
        kept: dict[int, list[State]] = {}

        def record(step: int, states: Callable[[], list[State]], kept: dict[int, list[State]] = kept) -> None:
            if step in checkpoints:
                kept[step] = states()

        grads[name] = train(setup, steps, record)
        weights[name] = kept
    return grads, weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 20])
    parser.add_argument("--epochs", type=int, default=5, help="then compare test accuracy (0: skip)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{datetime.date.today()}  torch {torch.__version__}  {platform.machine()}  kernels {torch.backends.cpu.get_cpu_capability()}  threads {torch.get_num_threads()}")
    setup = Setup(args.members, max(args.steps))
    start = [{n: t.clone() for n, t in setup.network(k).state_dict().items()} for k in range(args.members)]
    spec = ", ".join(f"{key} {setup.spec[key]}" for key in ("channels", "hidden", "batch_norm"))
    print(f"default network: cnn ({spec}); {setup.optim['name']} lr {setup.optim['lr']}; batch {setup.batch_size}; {args.members} members")

    grads, weights = run(setup, max(args.steps), set(args.steps))
    print("first backward pass, |g - g_plain|max / |g_plain|max per tensor, largest over tensors and members:")
    for way in COMPARED:
        worst, where = gradient_difference(grads[way], grads["plain"])
        print(f"  {way:{WIDTH}}  {worst:.1e} = {worst / UNIT_ROUNDOFF:.0f} u  ({where})")
    for steps in args.steps:
        print(f"after {steps} step{'s' * (steps != 1)}, ||w - w_plain|| over ... per tensor, each member's largest (median over members / largest):")
        for way in COMPARED:
            measures = weight_difference(weights[way][steps], weights["plain"][steps], start)
            text = "; ".join(f"{key} {median:.1e} / {largest:.1e} ({where})" for key, (median, largest, where) in measures.items())
            print(f"  {way:{WIDTH}}  {text}")

    if args.epochs:
        per_epoch = len(setup.y) // setup.batch_size
        long = Setup(args.members, args.epochs * per_epoch)
        _, final = run(long, args.epochs * per_epoch, {args.epochs * per_epoch})
        correct = {way: [test_accuracy(long, state) for state in states[args.epochs * per_epoch]] for way, states in final.items()}
        print(f"after {args.epochs} epochs ({args.epochs * per_epoch} steps), correct of {len(long.test_y)} test samples per member:")
        for way in WAYS:
            print(f"  {way:{WIDTH}}  {correct[way]}")
        for way in COMPARED:
            gaps = [a - b for a, b in zip(correct[way], correct["plain"])]
            print(f"  {way} - plain: {gaps}, largest {max(map(abs, gaps))} samples")


if __name__ == "__main__":
    main()
