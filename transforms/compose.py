"""Composition (`Compose`, `OneOf`) and recipes: transform lists as plain data, YAML included."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
import yaml

from transforms.base import Params, Transform, check_probability, coin, from_dict, generator_for, register, slice_params
from transforms.geometric import RandomCrop, RandomHorizontalFlip

RECIPE_FORMAT = "gainsplit.transforms/1"


def _transforms(transforms: Iterable[Transform], owner: str) -> list[Transform]:
    """`transforms` as a list, each one a `Transform` (a string or a spec is named, not iterated)."""
    if isinstance(transforms, (str, bytes, dict)) or not isinstance(transforms, Iterable):
        raise TypeError(f"{owner} takes a list of transforms; got {transforms!r}.")
    listed = list(transforms)
    wrong = next((t for t in listed if not isinstance(t, Transform)), None)
    if wrong is not None:
        raise TypeError(f"{owner} takes a list of transforms; got {wrong!r} among them (build specs with from_dict).")
    return listed


@register
class Compose(Transform):
    """Apply transforms in order; the params are the list of the children's params."""

    def __init__(self, transforms: Iterable[Transform]) -> None:
        self.transforms = _transforms(transforms, "Compose")

    def get_params(self) -> dict[str, Any]:
        return {"transforms": [t.to_dict() for t in self.transforms]}

    def sample_params(self, batch: torch.Tensor, generator: torch.Generator) -> Params:
        # A child may change the shape the next one sees, so children are applied as they are sampled.
        return self._run(batch, generator)[1]

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        for transform, child_params in zip(self.transforms, params["children"], strict=True):
            x = transform.apply(x, child_params)
        return x

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if isinstance(x, np.ndarray) or x.ndim == 3:
            return super().__call__(x, generator)
        return self._run(x, generator_for(x, generator))[0]

    def _run(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, Params]:
        children: list[Params] = []
        transforms = self.transforms
        step = 0
        while step < len(transforms):
            transform = transforms[step]
            params = transform.sample_params(x, generator)
            following = transforms[step + 1] if step + 1 < len(transforms) else None
            if _crop_then_mirror(transform, following) and x.device.type == "cpu":
                flip = following.sample_params(x, generator)  # reads only the batch size, which the crop keeps
                x = transform.apply_mirrored(x, params, flip["flip"])
                children += [params, flip]
                step += 2
                continue
            x = transform.apply(x, params)
            children.append(params)
            step += 1
        return x, {"children": children}

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


def _crop_then_mirror(first: Transform, second: Transform | None) -> bool:
    """A `RandomCrop` followed by a `RandomHorizontalFlip`: on the CPU both are one copy
    (`RandomCrop.apply_mirrored`), drawn in the same order, so `apply` replays them exactly."""
    return type(first) is RandomCrop and type(second) is RandomHorizontalFlip


@register
class OneOf(Transform):
    """With probability `p`, apply one of `transforms` to each sample, chosen per sample by `weights`.

    Every child must keep the image shape. Each child runs once on the samples that chose it.
    """

    def __init__(self, transforms: Iterable[Transform], weights: Sequence[float] | None = None, p: float = 1.0) -> None:
        self.transforms = _transforms(transforms, "OneOf")
        if not self.transforms:
            raise ValueError("OneOf needs at least one transform.")
        weights = [1.0] * len(self.transforms) if weights is None else [float(w) for w in weights]
        if len(weights) != len(self.transforms) or not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(
                f"The 'weights' parameter of OneOf must hold one non-negative weight per transform. Got {weights!r} instead."
            )
        self.weights = weights
        self.p = check_probability(type(self).__name__, p)

    def get_params(self) -> dict[str, Any]:
        return {"transforms": [t.to_dict() for t in self.transforms], "weights": self.weights, "p": self.p}

    def sample_params(self, batch: torch.Tensor, generator: torch.Generator) -> Params:
        n = batch.shape[0]
        weights = torch.tensor(self.weights, dtype=torch.float64, device=generator.device)
        choice = torch.multinomial(weights, n, replacement=True, generator=generator) if n else torch.zeros(0, dtype=torch.long, device=generator.device)
        choice = torch.where(coin(n, self.p, generator), choice, -1)
        return {"choice": choice, "children": [t.sample_params(batch, generator) for t in self.transforms]}

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        out = x.clone()
        choice = params["choice"].to(x.device)
        for index, transform in enumerate(self.transforms):
            chosen = torch.nonzero(choice == index).flatten()
            if chosen.numel():
                result = transform.apply(x[chosen], slice_params(params["children"][index], chosen))
                if result.shape[1:] != x.shape[1:]:
                    raise ValueError(f"OneOf needs shape-preserving transforms; {transform!r} changed {tuple(x.shape[1:])} to {tuple(result.shape[1:])}.")
                out[chosen] = result.to(out.dtype)
        return out

    def __repr__(self) -> str:
        return f"OneOf({self.transforms!r}, weights={self.weights!r}, p={self.p!r})"


def build_recipe(specs: Iterable[dict[str, Any]]) -> Compose:
    """A `Compose` from a recipe: a list of transform specs, as held in the pipeline config."""
    return Compose(from_dict(spec) for spec in specs)


def dump_recipe(transform: Transform) -> str:
    """The YAML form of a recipe, stamped with its format version."""
    specs = transform.get_params()["transforms"] if isinstance(transform, Compose) else [transform.to_dict()]
    return yaml.safe_dump({"format": RECIPE_FORMAT, "recipe": specs}, sort_keys=False)


def load_recipe(source: str | Path) -> Compose:
    """Read a recipe written by `dump_recipe`, or a bare YAML list of specs, from text or a file path."""
    text = Path(source).read_text(encoding="utf-8") if isinstance(source, Path) else source
    data = yaml.safe_load(text)
    if isinstance(data, dict):
        if data.get("format") != RECIPE_FORMAT:
            raise ValueError(f"Unsupported recipe format {data.get('format')!r}; expected {RECIPE_FORMAT!r}.")
        data = data.get("recipe")
    if not isinstance(data, list):
        raise ValueError("A recipe must be a list of transform specs, each a mapping with a 'name'.")
    return build_recipe(data)
