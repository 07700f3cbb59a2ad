"""Batched, replayable augmentations: random parameters are drawn apart from their application.

`t.sample_params(batch, generator)` makes every random draw (one per sample, never one for
the whole batch); `t.apply(x, params)` is pure. Calling `t(x, generator)` does both, so the
same generator seed gives the same output, and `apply` with recorded params replays it
exactly. Transforms never touch the global torch RNG and never modify their input.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import Any, Callable, Iterable

import torch

from transforms import functional as TF

Params = dict[str, Any]
TRANSFORMS: dict[str, type["Transform"]] = {}


def register(cls: type["Transform"]) -> type["Transform"]:
    """Make a transform buildable by name from a recipe (`{"name": "RandomCrop", ...}`)."""
    TRANSFORMS[cls.__name__] = cls
    return cls


def _generator_for(x: torch.Tensor, generator: torch.Generator | None) -> torch.Generator:
    """The caller's generator, or a fresh nondeterministically seeded one (never the global RNG)."""
    if generator is not None:
        return generator
    fresh = torch.Generator(device=x.device)
    fresh.seed()
    return fresh


def _check_probability(name: str, p: float) -> float:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"The 'p' parameter of {name} must be in [0, 1]. Got {p!r} instead.")
    return float(p)


class Transform(ABC):
    """A batched augmentation over `(N, C, H, W)` tensors."""

    @abstractmethod
    def sample_params(self, batch: torch.Tensor, generator: torch.Generator) -> Params:
        """Draw this transform's random parameters for every sample of `batch` (only its shape is read)."""

    @abstractmethod
    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        """Apply previously drawn parameters; pure and deterministic."""

    @abstractmethod
    def get_params(self) -> dict[str, Any]:
        """The constructor's arguments, as given."""

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.apply(x, self.sample_params(x, _generator_for(x, generator)))

    def to_dict(self) -> dict[str, Any]:
        return {"name": type(self).__name__, **self.get_params()}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


def _coin(batch: torch.Tensor, generator: torch.Generator, p: float) -> torch.Tensor:
    return torch.rand(batch.shape[0], generator=generator, device=generator.device) < p


@register
class RandomHorizontalFlip(Transform):
    """Mirror each image left-right with probability `p`."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = _check_probability(type(self).__name__, p)

    def get_params(self) -> dict[str, Any]:
        return {"p": self.p}

    def sample_params(self, batch: torch.Tensor, generator: torch.Generator) -> Params:
        return {"flip": _coin(batch, generator, self.p)}

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        return TF.hflip(x, params["flip"])


@register
class RandomVerticalFlip(RandomHorizontalFlip):
    """Mirror each image top-bottom with probability `p`."""

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        return TF.vflip(x, params["flip"])


@register
class RandomCrop(Transform):
    """Pad by `padding` (with `fill`), then crop a random `size` window: a random translation.

    Applied to each sample with probability `p`; samples left alone keep their centre crop,
    so the output shape is the same for every sample.
    """

    def __init__(self, size: int | tuple[int, int], padding: int = 0, fill: float = 0, p: float = 1.0) -> None:
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        if height < 1 or width < 1:
            raise ValueError(f"The 'size' parameter of RandomCrop must be positive. Got {size!r} instead.")
        if padding < 0:
            raise ValueError(f"The 'padding' parameter of RandomCrop must be >= 0. Got {padding!r} instead.")
        self.size = (int(height), int(width))
        self.padding = int(padding)
        self.fill = fill
        self.p = _check_probability(type(self).__name__, p)

    def get_params(self) -> dict[str, Any]:
        return {"size": list(self.size), "padding": self.padding, "fill": self.fill, "p": self.p}

    def sample_params(self, batch: torch.Tensor, generator: torch.Generator) -> Params:
        n, _, height, width = batch.shape
        room_y = height + 2 * self.padding - self.size[0]
        room_x = width + 2 * self.padding - self.size[1]
        if room_y < 0 or room_x < 0:
            raise ValueError(
                f"RandomCrop size {self.size} is larger than the padded image ({height + 2 * self.padding}, "
                f"{width + 2 * self.padding})."
            )
        device = generator.device
        top = torch.randint(0, room_y + 1, (n,), generator=generator, device=device)
        left = torch.randint(0, room_x + 1, (n,), generator=generator, device=device)
        keep = ~_coin(batch, generator, self.p)
        top = torch.where(keep, room_y // 2, top)
        left = torch.where(keep, room_x // 2, left)
        return {"top": top, "left": left}

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        return TF.pad_crop(x, params["top"], params["left"], self.size, self.padding, self.fill)


@register
class Compose(Transform):
    """Apply transforms in order; its params are the list of its children's params."""

    def __init__(self, transforms: Iterable[Transform]) -> None:
        self.transforms = list(transforms)

    def get_params(self) -> dict[str, Any]:
        return {"transforms": [t.to_dict() for t in self.transforms]}

    def sample_params(self, batch: torch.Tensor, generator: torch.Generator) -> Params:
        # A child may change the shape the next one sees, so children are applied as they are sampled.
        return self._run(batch, generator)[1]

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        for transform, child_params in zip(self.transforms, params["children"]):
            x = transform.apply(x, child_params)
        return x

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self._run(x, _generator_for(x, generator))[0]

    def _run(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, Params]:
        children = []
        for transform in self.transforms:
            params = transform.sample_params(x, generator)
            x = transform.apply(x, params)
            children.append(params)
        return x, {"children": children}

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


def from_dict(spec: dict[str, Any]) -> Transform:
    """Build a transform from its `to_dict()` form, naming the culprit when the spec is wrong."""
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(f"A transform spec must be a mapping with a 'name' key. Got {spec!r} instead.")
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    name = spec["name"]
    cls = TRANSFORMS.get(name)
    if cls is None:
        raise ValueError(f"Unknown transform {name!r}. Known transforms: {', '.join(sorted(TRANSFORMS))}.")
    if cls is Compose:
        kwargs["transforms"] = [from_dict(child) for child in kwargs.get("transforms", [])]
    allowed = _parameter_names(cls)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"{name} got unknown parameter(s) {unknown}. Allowed: {allowed}.")
    return cls(**kwargs)


def _parameter_names(cls: Callable[..., Any]) -> list[str]:
    return [name for name in inspect.signature(cls).parameters if name != "self"]


def build_recipe(specs: Iterable[dict[str, Any]]) -> Compose:
    """A `Compose` from a recipe: a list of transform specs, as held in the pipeline config."""
    return Compose(from_dict(spec) for spec in specs)
