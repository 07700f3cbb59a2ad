"""What the training loop trains: an array of K members behind one module and one optimizer.

`FusedArray` is K networks fused into one (`trainers.fused`), with per-member hyperparameters
(`trainers.fused_optim`). `SoloArray` is any network with any torch optimizer as an array of
one, for models that do not fuse. The loop sees only this interface, so a solo run and a fused
ablation run through the same code.
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol, Sequence

import torch
from torch import nn

from trainers.fused import FusedNet, fusible, fuse
from trainers.fused_optim import FusedOptimizer
from trainers.models import build_model


class TrainingArray(Protocol):
    """K members trained together: `module` maps `(K, B, *shape)` to `(K, B, classes)`."""

    members: int
    module: nn.Module
    optimizer: torch.optim.Optimizer
    base_lrs: list[float]
    rate_device: torch.device  # where the loop keeps the epoch's table of rates
    capturable: bool  # whether a step never waits on the host, so CUDA graphs can replay it

    def use_rates(self, rates: torch.Tensor) -> None:
        """Each member's learning rate for the next step, `(K,)` on `rate_device`."""

    def freeze(self, member: int) -> None:
        """Stop updating `member` (it stopped early) while the others go on."""

    def member_state_dict(self, member: int) -> dict[str, torch.Tensor]:
        """A copy of `member`'s weights under its own network's names."""

    def load_member_state_dict(self, member: int, state: dict[str, torch.Tensor]) -> None:
        """Put `member`'s weights back (its best epoch's, at the end)."""


class OneMember(nn.Module):
    """A plain network seen as an array of one: `(1, B, ...)` -> `(1, B, classes)`."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x[0]).unsqueeze(0)


class SoloArray:
    """A network and its torch optimizer as an array of one member; trains the network in place."""

    members = 1
    rate_device = torch.device("cpu")  # torch.optim takes a Python float
    capturable = False  # torch.optim's step counts live on the host

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.model, self.optimizer = model, optimizer
        self.module = OneMember(model)
        first = optimizer.param_groups[0]
        self.base_lrs = [first.get("initial_lr", first["lr"])]
        for group in optimizer.param_groups:
            group["initial_lr"] = self.base_lrs[0]

    def use_rates(self, rates: torch.Tensor) -> None:
        rate = float(rates[0])
        for group in self.optimizer.param_groups:
            group["lr"] = rate

    def freeze(self, member: int) -> None:
        """An array of one is done when its member stops: nothing to freeze."""

    def member_state_dict(self, member: int) -> dict[str, torch.Tensor]:
        return {name: tensor.detach().clone() for name, tensor in self.model.state_dict().items()}

    def load_member_state_dict(self, member: int, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)


class FusedArray:
    """K fused networks and their fused optimizer."""

    capturable = True

    def __init__(self, net: FusedNet, optimizer: FusedOptimizer) -> None:
        self.module, self.optimizer = net, optimizer
        self.members = net.members
        self.base_lrs = optimizer.group["lr"].view(-1).tolist()
        self.rate_device = optimizer.group["lr"].device  # rates stay on the device: no host sync per step

    def use_rates(self, rates: torch.Tensor) -> None:
        self.optimizer.set_lr(rates)

    def freeze(self, member: int) -> None:
        self.optimizer.freeze(member)

    def member_state_dict(self, member: int) -> dict[str, torch.Tensor]:
        return self.module.member_state_dict(member)

    def load_member_state_dict(self, member: int, state: dict[str, torch.Tensor]) -> None:
        self.module.load_member_state_dict(member, state)


def model_fuses(spec: Mapping[str, Any], input_shape: Sequence[int], n_classes: int) -> bool:
    """Whether networks of `spec` train as a fused array (see `trainers.fused.fusible`); asked of
    a network built on the meta device, so nothing is allocated."""
    with torch.device("meta"):
        return fusible(build_model(spec, input_shape, n_classes))


def fused_array(
    model_specs: Sequence[Mapping[str, Any]],
    optim_specs: Sequence[Mapping[str, Any]],
    seeds: Sequence[int],
    input_shape: Sequence[int],
    n_classes: int,
    device: torch.device,
) -> FusedArray:
    """K members from their `model` and `optim` config sections and `train.seed`s: member k is
    initialised as a solo run with seed k would be (`torch.manual_seed(seed)`, then `build_model`)."""
    names = {spec["name"] for spec in optim_specs}
    if len(names) > 1:
        raise ValueError(f"Cannot train as one array: the members use different optimizers ({', '.join(sorted(names))}).")
    models = []
    for spec, seed in zip(model_specs, seeds):
        torch.manual_seed(seed)
        models.append(build_model(spec, input_shape, n_classes))
    net = fuse(models, seeds).to(device)
    optimizer = FusedOptimizer(
        net.parameters(),
        names.pop(),
        lr=[spec["lr"] for spec in optim_specs],
        momentum=[spec.get("momentum", 0.0) for spec in optim_specs],
        nesterov=[spec.get("nesterov", False) for spec in optim_specs],
        weight_decay=[spec.get("weight_decay", 0.0) for spec in optim_specs],
    )
    return FusedArray(net, optimizer)
