"""One optimizer for a fused network whose K members each have their own hyperparameters.

Every parameter of a `FusedNet` keeps its members along dim 0, so `p.view(K, -1)` holds one
member per row; learning rate, momentum, Nesterov, weight decay are `(K, 1)` tensors broadcast
over those rows. The update rules are PyTorch's (SGD, Adam, AdamW, RMSprop with their default
betas, alpha and eps), so each member moves as `torch.optim` would move it alone, up to float
rounding. A frozen member (early-stopped) keeps its weights and optimizer state untouched.

It is a `torch.optim.Optimizer` with one parameter group, so `GradScaler` can unscale and step it.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

from trainers.optim import OPTIMIZERS

ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8
RMSPROP_ALPHA, RMSPROP_EPS = 0.99, 1e-8
State = dict[str, torch.Tensor]
# (member-major parameter, its gradient, its state, the hyperparameters) -> (new parameter, new state)
Update = Callable[[torch.Tensor, torch.Tensor, State, Mapping[str, torch.Tensor]], tuple[torch.Tensor, State]]


def _sgd(param: torch.Tensor, grad: torch.Tensor, state: dict[str, torch.Tensor], h: Mapping[str, torch.Tensor]):
    direction = grad + h["weight_decay"] * param
    buffer = state.get("momentum_buffer")
    buffer = direction.clone() if buffer is None else buffer * h["momentum"] + direction
    direction = torch.where(h["nesterov"], direction + h["momentum"] * buffer, buffer)
    return param - h["lr"] * direction, {"momentum_buffer": buffer}


def _adam(param: torch.Tensor, grad: torch.Tensor, state: dict[str, torch.Tensor], h: Mapping[str, torch.Tensor], decoupled: bool = False):
    beta1, beta2 = ADAM_BETAS
    steps = state.get("steps", torch.zeros_like(h["lr"])) + 1
    if decoupled:
        param = param * (1 - h["lr"] * h["weight_decay"])
    else:
        grad = grad + h["weight_decay"] * param
    exp_avg = state.get("exp_avg", torch.zeros_like(param)).lerp(grad, 1 - beta1)
    exp_avg_sq = state.get("exp_avg_sq", torch.zeros_like(param)) * beta2 + (1 - beta2) * grad * grad
    step_size = h["lr"] / (1 - beta1**steps)
    denom = exp_avg_sq.sqrt() / (1 - beta2**steps).sqrt() + ADAM_EPS
    return param - step_size * exp_avg / denom, {"steps": steps, "exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}


def _adamw(param: torch.Tensor, grad: torch.Tensor, state: dict[str, torch.Tensor], h: Mapping[str, torch.Tensor]):
    return _adam(param, grad, state, h, decoupled=True)


def _rmsprop(param: torch.Tensor, grad: torch.Tensor, state: dict[str, torch.Tensor], h: Mapping[str, torch.Tensor]):
    grad = grad + h["weight_decay"] * param
    square_avg = state.get("square_avg", torch.zeros_like(param)) * RMSPROP_ALPHA + (1 - RMSPROP_ALPHA) * grad * grad
    scaled = grad / (square_avg.sqrt() + RMSPROP_EPS)
    buffer = state.get("momentum_buffer", torch.zeros_like(param)) * h["momentum"] + scaled
    return param - h["lr"] * buffer, {"square_avg": square_avg, "momentum_buffer": buffer}


UPDATES: dict[str, Update] = {"sgd": _sgd, "adam": _adam, "adamw": _adamw, "rmsprop": _rmsprop}


class FusedOptimizer(torch.optim.Optimizer):
    """`name` is one of `trainers.optim.OPTIMIZERS` for every member; the other settings are
    one value per member (`momentum` applies to SGD and RMSprop, `nesterov` to SGD)."""

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        name: str,
        lr: Sequence[float],
        momentum: Sequence[float],
        nesterov: Sequence[bool],
        weight_decay: Sequence[float],
    ) -> None:
        if name not in UPDATES:
            raise ValueError(f"Unknown optimizer {name!r}. Known optimizers: {', '.join(OPTIMIZERS)}.")
        members = len(lr)
        if not (len(momentum) == len(nesterov) == len(weight_decay) == members):
            raise ValueError("FusedOptimizer needs one lr, momentum, nesterov and weight_decay per member.")
        if name == "sgd" and any(n and m <= 0 for n, m in zip(nesterov, momentum)):
            raise ValueError("optim.nesterov needs optim.momentum > 0.")
        params = list(params)
        device = params[0].device

        def column(values: Sequence[float | bool], dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.tensor(list(values), dtype=dtype, device=device).view(members, 1)

        # Adam, AdamW and RMSprop take no momentum here (Adam's betas are fixed): zero it, as torch.optim has none.
        momentum = momentum if name in ("sgd", "rmsprop") else [0.0] * members
        defaults = {
            "name": name,
            "lr": column(lr),
            "momentum": column(momentum),
            "nesterov": column(nesterov if name == "sgd" else [False] * members, torch.bool),
            "weight_decay": column(weight_decay),
            "active": column([True] * members, torch.bool),
        }
        super().__init__(params, defaults)
        self.members = members
        self._all_active = True

    @property
    def group(self) -> dict[str, Any]:
        return self.param_groups[0]

    def set_lr(self, rates: torch.Tensor) -> None:
        """Every member's learning rate for the next step, `(K,)`."""
        self.group["lr"].copy_(rates.view(self.members, 1))

    def freeze(self, member: int) -> None:
        """From now on, member `member`'s weights and optimizer state stay as they are."""
        self.group["active"][member] = False
        self._all_active = False

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        device = self.group["params"][0].device
        for key, value in self.group.items():  # a checkpoint read onto the CPU holds CPU hyperparameters
            if isinstance(value, torch.Tensor):
                self.group[key] = value.to(device)
        self._all_active = bool(self.group["active"].all())

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> None:  # type: ignore[override]
        if closure is not None:
            raise ValueError("FusedOptimizer.step takes no closure.")
        group = self.group
        update = UPDATES[group["name"]]
        active = group["active"]
        for p in group["params"]:
            if p.grad is None:
                continue
            param, grad = p.view(self.members, -1), p.grad.view(self.members, -1)
            old = self.state[p]
            new_param, new_state = update(param, grad, old, group)
            if not self._all_active:
                new_param = torch.where(active, new_param, param)
                new_state = {key: torch.where(active, value, old[key]) if key in old else value for key, value in new_state.items()}
            param.copy_(new_param)
            self.state[p] = new_state
