"""One optimizer for a fused network whose K members each have their own hyperparameters.

Every parameter of a `FusedNet` keeps its members along dim 0, so `p.view(K, -1)` holds one
member per row; learning rate, momentum, Nesterov, weight decay are `(K, 1)` tensors broadcast
over those rows. The update rules are PyTorch's (SGD, Adam, AdamW, RMSprop with their default
betas, alpha and eps), so each member moves as `torch.optim` would move it alone. Given the same
gradients and a float32 learning rate (the training loop hands both kinds of array float32
rates), an Adam or AdamW step without weight decay is torch's bit for bit: the same elementwise
operations in the same order, the per-member step size and bias correction computed in float64
and rounded once to float32 as torch rounds its Python floats. SGD with Nesterov, RMSprop and
weight decay can differ in the last bit, where torch adds a term with a fused multiply-add.
A frozen member (early-stopped) keeps its weights and optimizer state untouched.

It is a `torch.optim.Optimizer` with one parameter group. Under fp16 it takes the gradient
scale from `GradScaler` and unscales itself, so a member whose own gradients overflow skips its
step while the others take theirs (the scaler then lowers the shared scale, as it does for one
network).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

from trainers.optim import OPTIMIZERS

ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8
RMSPROP_ALPHA, RMSPROP_EPS = 0.99, 1e-8
State = dict[str, torch.Tensor]
# In place: (member-major parameter, its gradient, its state, the group's (K, 1) hyperparameters
# and this step's per-member terms). Sums skipped for every member alike (no weight decay, no
# Nesterov) are exact zeros in torch.optim too.
Update = Callable[[torch.Tensor, torch.Tensor, State, Mapping[str, Any], Mapping[str, Any]], None]


def _decayed(param: torch.Tensor, grad: torch.Tensor, group: Mapping[str, Any], terms: Mapping[str, Any]) -> torch.Tensor:
    """The gradient with L2 weight decay added (`grad + wd * param`), as torch.optim does."""
    return grad + group["weight_decay"] * param if terms["decay"] else grad


def _sgd(param: torch.Tensor, grad: torch.Tensor, state: State, group: Mapping[str, Any], terms: Mapping[str, Any]) -> None:
    direction = _decayed(param, grad, group, terms)
    buffer = state.get("momentum_buffer")
    if buffer is None:
        buffer = state["momentum_buffer"] = direction.clone()
    else:
        buffer.mul_(group["momentum"]).add_(direction)
    if terms["nesterov"]:
        direction = torch.where(group["nesterov"], direction + group["momentum"] * buffer, buffer)
    else:
        direction = buffer
    param.sub_(group["lr"] * direction)


def _adam(param: torch.Tensor, grad: torch.Tensor, state: State, group: Mapping[str, Any], terms: Mapping[str, Any]) -> None:
    beta1, beta2 = ADAM_BETAS
    if group["name"] == "adamw":
        if terms["decay"]:
            param.mul_(1 - group["lr"] * group["weight_decay"])
    else:
        grad = _decayed(param, grad, group, terms)
    if "exp_avg" not in state:
        state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(param), torch.zeros_like(param)
    exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    denom = (exp_avg_sq.sqrt() / terms["bias_correction2_sqrt"]).add_(ADAM_EPS)
    param.addcdiv_(terms["step_size"] * exp_avg, denom, value=-1)


def _rmsprop(param: torch.Tensor, grad: torch.Tensor, state: State, group: Mapping[str, Any], terms: Mapping[str, Any]) -> None:
    grad = _decayed(param, grad, group, terms)
    if "square_avg" not in state:
        state["square_avg"], state["momentum_buffer"] = torch.zeros_like(param), torch.zeros_like(param)
    state["square_avg"].mul_(RMSPROP_ALPHA).addcmul_(grad, grad, value=1 - RMSPROP_ALPHA)
    average = state["square_avg"].sqrt().add_(RMSPROP_EPS)
    state["momentum_buffer"].mul_(group["momentum"]).addcdiv_(grad, average)
    param.sub_(group["lr"] * state["momentum_buffer"])


UPDATES: dict[str, Update] = {"sgd": _sgd, "adam": _adam, "adamw": _adam, "rmsprop": _rmsprop}
# What each rule keeps per parameter from its first step on.
STATE_KEYS = {"sgd": {"momentum_buffer"}, "adam": {"exp_avg", "exp_avg_sq"}, "adamw": {"exp_avg", "exp_avg_sq"}, "rmsprop": {"square_avg", "momentum_buffer"}}


def _unguarded(method: Callable[..., Any]) -> Callable[..., Any]:
    """`method` without `torch._disable_dynamo`'s wrapper, where it has one."""
    return getattr(method, "__wrapped__", method)


class FusedOptimizer(torch.optim.Optimizer):
    """`name` is one of `trainers.optim.OPTIMIZERS` for every member; the other settings are
    one value per member (`momentum` applies to SGD and RMSprop, `nesterov` to SGD)."""

    # GradScaler.step hands over its scale (`grad_scale`, `found_inf`) instead of skipping every member.
    _step_supports_amp_scaling = True

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
            "steps": column([0.0] * members),  # updates each member has taken (Adam's bias correction)
        }
        super().__init__(params, defaults)
        self.members = members
        self._read_flags()

    # torch.optim guards these against torch.compile, and the guard imports torch._dynamo on its
    # first call: a costly import in every process (docs/performance.md), for a training that
    # compiles nothing.
    # This optimizer calls the unguarded methods (step never had the guard).
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        _unguarded(torch.optim.Optimizer.add_param_group)(self, param_group)

    def state_dict(self) -> dict[str, Any]:
        return _unguarded(torch.optim.Optimizer.state_dict)(self)

    def zero_grad(self, set_to_none: bool = True) -> None:
        _unguarded(torch.optim.Optimizer.zero_grad)(self, set_to_none)

    def _read_flags(self) -> None:
        """Host-side facts about the hyperparameters, read once so a step never waits on the device."""
        group = self.group
        self._all_active = bool(group["active"].all())
        self._decay, self._nesterov = bool(group["weight_decay"].any()), bool(group["nesterov"].any())

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
        """The state of this optimizer (the same rule, its state shaped as the parameters' rows);
        anything else is a `ValueError` saying what differs. (`checkpoints.check_optimizer_state`
        checks the settings' layout before.)"""
        name = self.group["name"]
        _unguarded(torch.optim.Optimizer.load_state_dict)(self, state_dict)
        if self.group.get("name") != name:
            raise ValueError(f"the optimizer is {self.group.get('name')!r}, not {name!r}")
        device = self.group["params"][0].device
        for key, value in self.group.items():  # a checkpoint read onto the CPU holds CPU hyperparameters
            if isinstance(value, torch.Tensor):
                self.group[key] = value.to(device)
        kept = STATE_KEYS[self.group["name"]] if bool((self.group["steps"] > 0).any()) else set()
        for index, param in enumerate(self.group["params"]):
            if self.state[param].keys() != kept:
                raise ValueError(f"parameter {index} has optimizer state {sorted(self.state[param])}, not {sorted(kept)}")
            rows = param.view(self.members, -1)  # state is kept member by member, as `step` updates it
            for key, value in self.state[param].items():
                if not isinstance(value, torch.Tensor) or value.shape != rows.shape or value.dtype != rows.dtype:
                    raise ValueError(f"parameter {index}'s optimizer state {key!r} does not match its {tuple(rows.shape)} {rows.dtype} rows")
        self._read_flags()

    def _terms(self, stepping: torch.Tensor) -> dict[str, Any]:
        """What every parameter's update shares this step: per-member bias corrections and which sums to skip."""
        group = self.group
        group["steps"] += stepping
        beta1, beta2 = ADAM_BETAS
        # In float64, rounded once to float32, as torch.optim computes them in Python floats: in
        # float32, 1 - 0.999 ** step loses five digits to cancellation (1.3e-5 relative at step 1),
        # which moved every Adam step by about 6e-6 of itself.
        steps = group["steps"].double()
        return {
            "decay": self._decay,
            "nesterov": self._nesterov,
            "step_size": (group["lr"].double() / (1 - beta1**steps)).to(group["lr"].dtype),
            "bias_correction2_sqrt": (1 - beta2**steps).sqrt().to(group["lr"].dtype),
        }

    def _unscale(self, params: list[torch.Tensor]) -> torch.Tensor | None:
        """Under GradScaler: divide the gradients by its scale and return which members' gradients
        are not finite, `(K, 1)`; None when no scaler is stepping this optimizer."""
        if getattr(self, "found_inf", None) is None:
            return None
        scale = getattr(self, "grad_scale", None)  # None: GradScaler.unscale_ already ran
        if scale is not None:
            torch._foreach_mul_([p.grad for p in params], scale.double().reciprocal().float())
        finite = torch.stack([p.grad.view(self.members, -1).isfinite().all(dim=1) for p in params]).all(dim=0)
        return ~finite.view(self.members, 1)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> None:  # type: ignore[override]
        if closure is not None:
            raise ValueError("FusedOptimizer.step takes no closure.")
        group = self.group
        update = UPDATES[group["name"]]
        params = [p for p in group["params"] if p.grad is not None]
        overflowed = self._unscale(params)
        held = None if self._all_active else ~group["active"]  # members whose rows must not move this step
        if overflowed is not None:
            held = overflowed if held is None else held | overflowed
        kept = None if held is None else [(p.detach().clone(), {k: v.clone() for k, v in self.state[p].items()}) for p in params]
        terms = self._terms(group["active"] if held is None else ~held)
        for p in params:
            update(p.view(self.members, -1), p.grad.view(self.members, -1), self.state[p], group, terms)
        if kept is not None:  # put the held members' rows back as they were
            for p, (old_param, old_state) in zip(params, kept):
                p.view(self.members, -1).copy_(torch.where(held, old_param.view(self.members, -1), p.view(self.members, -1)))
                for key, value in self.state[p].items():
                    # State this step created starts at zero for a held member, as each rule's first step assumes.
                    before = old_state[key] if key in old_state else torch.zeros_like(value)
                    value.copy_(torch.where(held, before, value))
