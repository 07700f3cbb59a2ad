"""The augmentation contract: random parameters are drawn apart from their application.

`t.sample_params(batch, generator)` makes every random draw (one per sample, never one for
the whole batch) and returns a mapping whose tensors all have the batch size as their first
dimension; `t.apply(x, params)` is pure. Calling `t(x, generator)` does both, so the same
generator seed gives the same output, and `apply` with recorded params replays it exactly.
Transforms never touch the global torch RNG and never modify their input.
"""

from __future__ import annotations

import functools
import inspect
from abc import ABC, abstractmethod
from typing import Any, Callable

import numpy as np
import torch

Params = dict[str, Any]
TRANSFORMS: dict[str, type["Transform"]] = {}


def register(cls: type["Transform"]) -> type["Transform"]:
    """Make a transform buildable by name from a recipe (`{"name": "RandomCrop", ...}`)."""
    if not (isinstance(cls, type) and issubclass(cls, Transform)):
        raise TypeError(f"register takes a subclass of transforms.Transform; got {cls!r}.")
    TRANSFORMS[cls.__name__] = cls
    return cls


def generator_for(x: torch.Tensor, generator: torch.Generator | None) -> torch.Generator:
    """The caller's generator, or a fresh nondeterministically seeded one (never the global RNG)."""
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"A transform draws from a torch.Generator (torch.Generator().manual_seed(seed)); got {generator!r}.")
        return generator
    fresh = torch.Generator(device=x.device)
    fresh.seed()
    return fresh


def check_probability(owner: str, p: float) -> float:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"The 'p' parameter of {owner} must be in [0, 1]. Got {p!r} instead.")
    return float(p)


def check_range(owner: str, name: str, value: Any, low: float = -float("inf"), high: float = float("inf")) -> tuple[float, float]:
    """A `(min, max)` pair inside `[low, high]`; a single number `v` means `(-v, v)` for symmetric ranges."""
    pair = (-float(value), float(value)) if isinstance(value, (int, float)) else tuple(float(v) for v in value)
    if len(pair) != 2 or not (low <= pair[0] <= pair[1] <= high):
        raise ValueError(
            f"The '{name}' parameter of {owner} must be a number or a (min, max) pair within [{low}, {high}]. "
            f"Got {value!r} instead."
        )
    return pair


def uniform(n: int, bounds: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    """`n` draws from U(bounds) on the generator's device."""
    low, high = bounds
    return low + (high - low) * torch.rand(n, generator=generator, device=generator.device)


def coin(n: int, p: float, generator: torch.Generator) -> torch.Tensor:
    """`n` independent booleans, each true with probability `p`."""
    return torch.rand(n, generator=generator, device=generator.device) < p


def slice_params(params: Any, index: torch.Tensor | slice) -> Any:
    """The params of the samples at `index` (every tensor in params is indexed on its first dimension)."""
    if isinstance(params, dict):
        return {key: slice_params(value, index) for key, value in params.items()}
    if isinstance(params, list):
        return [slice_params(value, index) for value in params]
    if isinstance(params, torch.Tensor):
        return params[index.to(params.device) if isinstance(index, torch.Tensor) else index]
    return params


def _params_sizes(params: Any) -> set[int]:
    """The first dimensions of every tensor in `params` (nested dicts and lists too)."""
    if isinstance(params, dict):
        return set().union(*(_params_sizes(value) for value in params.values()))
    if isinstance(params, list):
        return set().union(*(_params_sizes(value) for value in params))
    if isinstance(params, torch.Tensor) and params.ndim:
        return {params.shape[0]}
    return set()


def _checked_apply(apply: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """`apply`, refusing params drawn for another batch (each sample has its own draw) or that
    are not params at all, with a message instead of a broadcast or a KeyError from inside."""

    @functools.wraps(apply)
    def checked(self: "Transform", x: torch.Tensor, params: Params) -> torch.Tensor:
        owner = type(self).__name__
        if not isinstance(params, dict):
            raise TypeError(f"{owner}.apply takes the params that sample_params drew (a dict); got {type(params).__name__}.")
        check_batch(x, owner)
        wrong = sorted(_params_sizes(params) - {x.shape[0]})
        if wrong:
            raise ValueError(f"{owner}: params drawn for a batch of {wrong[0]} applied to a batch of {x.shape[0]}; draw them for this batch with sample_params(x, generator).")
        try:
            return apply(self, x, params)
        except KeyError as exc:
            raise ValueError(f"{owner}: params lack {exc}; pass what {owner}.sample_params returned.") from None

    return checked


def check_batch(x: torch.Tensor, owner: str) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
        raise ValueError(f"{owner} expects a batch of images (N, C, H, W) or one image (C, H, W); got {shape}.")


class Transform(ABC):
    """A batched augmentation over `(N, C, H, W)` tensors of any dtype, on any device."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "apply" in cls.__dict__ and not getattr(cls.__dict__["apply"], "__isabstractmethod__", False):
            cls.apply = _checked_apply(cls.__dict__["apply"])  # type: ignore[method-assign]

    @abstractmethod
    def sample_params(self, batch: torch.Tensor, generator: torch.Generator) -> Params:
        """Draw this transform's random parameters for every sample of `batch` (only its shape is read)."""

    @abstractmethod
    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        """Apply previously drawn parameters; pure and deterministic."""

    @abstractmethod
    def get_params(self) -> dict[str, Any]:
        """The constructor's arguments, as given, in a JSON/YAML-friendly form."""

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment a batch `(N, C, H, W)`, or one image `(C, H, W)` (as a `Dataset` transform); a
        NumPy array comes back as one, as the scalers take and give them."""
        if isinstance(x, np.ndarray):
            return self(torch.from_numpy(np.ascontiguousarray(x)), generator).numpy()
        single = isinstance(x, torch.Tensor) and x.ndim == 3
        batch = x.unsqueeze(0) if single else x
        check_batch(batch, type(self).__name__)
        out = self.apply(batch, self.sample_params(batch, generator_for(batch, generator)))
        return out.squeeze(0) if single else out

    def to_dict(self) -> dict[str, Any]:
        return {"name": type(self).__name__, **self.get_params()}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


def parameter_names(cls: Callable[..., Any]) -> list[str]:
    return [name for name in inspect.signature(cls).parameters if name != "self"]


def from_dict(spec: dict[str, Any]) -> Transform:
    """Build a transform from its `to_dict()` form, naming the culprit when the spec is wrong."""
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(f"A transform spec must be a mapping with a 'name' key. Got {spec!r} instead.")
    name = spec["name"]
    if not isinstance(name, str):
        raise ValueError(f"A transform's 'name' is a string, such as 'RandomCrop'. Got {name!r} instead.")
    cls = TRANSFORMS.get(name)
    if cls is None:
        raise ValueError(f"Unknown transform {name!r}. Known transforms: {', '.join(sorted(TRANSFORMS))}.")
    kwargs = {key: value for key, value in spec.items() if key != "name"}
    allowed = parameter_names(cls)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"{name} got unknown parameter(s) {unknown}. Allowed: {allowed}.")
    if "transforms" in kwargs:
        if not isinstance(kwargs["transforms"], list):
            raise ValueError(f"{name}'s 'transforms' must be a list of transform specs. Got {kwargs['transforms']!r} instead.")
        kwargs["transforms"] = [from_dict(child) for child in kwargs["transforms"]]
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a missing parameter, or one of the wrong type (padding: abc)
        raise ValueError(f"{name} cannot be built from {kwargs!r}: {exc}. Parameters: {allowed}.") from None
