"""Geometric augmentations: flips, pad + random crop (translation), random affine."""

from __future__ import annotations

from typing import Any

import torch

from transforms import functional as TF
from transforms.base import Params, Transform, check_probability, check_range, coin, register, uniform


@register
class RandomHorizontalFlip(Transform):
    """Mirror each image left-right with probability `p`."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = check_probability(type(self).__name__, p)

    def get_params(self) -> dict[str, Any]:
        return {"p": self.p}

    def sample_params(self, batch: torch.Tensor, generator: torch.Generator) -> Params:
        return {"flip": coin(batch.shape[0], self.p, generator)}

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

    `size=None` crops back to the input's own size. Applied to each sample with probability
    `p`; samples left alone get the centre window, so every output has the same shape.
    """

    def __init__(self, size: int | tuple[int, int] | None = None, padding: int = 0, fill: float = 0, p: float = 1.0) -> None:
        if size is not None:
            height, width = (size, size) if isinstance(size, int) else tuple(size)
            if height < 1 or width < 1:
                raise ValueError(f"The 'size' parameter of RandomCrop must be positive. Got {size!r} instead.")
            size = (int(height), int(width))
        if padding < 0:
            raise ValueError(f"The 'padding' parameter of RandomCrop must be >= 0. Got {padding!r} instead.")
        self.size = size
        self.padding = int(padding)
        self.fill = fill
        self.p = check_probability(type(self).__name__, p)

    def get_params(self) -> dict[str, Any]:
        size = list(self.size) if self.size else None
        return {"size": size, "padding": self.padding, "fill": self.fill, "p": self.p}

    def _output_size(self, x: torch.Tensor) -> tuple[int, int]:
        return self.size or (x.shape[-2], x.shape[-1])

    def sample_params(self, batch: torch.Tensor, generator: torch.Generator) -> Params:
        n, _, height, width = batch.shape
        size = self._output_size(batch)
        room_y = height + 2 * self.padding - size[0]
        room_x = width + 2 * self.padding - size[1]
        if room_y < 0 or room_x < 0:
            raise ValueError(
                f"RandomCrop size {size} is larger than the padded image "
                f"({height + 2 * self.padding}, {width + 2 * self.padding})."
            )
        device = generator.device
        top = torch.randint(0, room_y + 1, (n,), generator=generator, device=device)
        left = torch.randint(0, room_x + 1, (n,), generator=generator, device=device)
        keep = ~coin(n, self.p, generator)
        return {"top": torch.where(keep, room_y // 2, top), "left": torch.where(keep, room_x // 2, left)}

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        return TF.pad_crop(x, params["top"], params["left"], self._output_size(x), self.padding, self.fill)

    def apply_mirrored(self, x: torch.Tensor, params: Params, mirror: torch.Tensor) -> torch.Tensor:
        """`apply`, then mirror left-right the samples where `mirror` is true, in one copy (what
        `Compose` does for this crop followed by a `RandomHorizontalFlip`)."""
        return TF.pad_crop(x, params["top"], params["left"], self._output_size(x), self.padding, self.fill, mirror)


@register
class RandomAffine(Transform):
    """Rotate by U(degrees), scale by U(scale) and shift by U(translate) x image size, per sample.

    Built on `affine_grid` / `grid_sample`; positive angles turn counter-clockwise. Uncovered
    pixels get `fill`. Samples not chosen (probability `1 - p`) get the identity.
    """

    def __init__(
        self,
        degrees: float | tuple[float, float] = 0.0,
        translate: tuple[float, float] = (0.0, 0.0),
        scale: tuple[float, float] = (1.0, 1.0),
        fill: float = 0.0,
        interpolation: str = "bilinear",
        p: float = 1.0,
    ) -> None:
        name = type(self).__name__
        self.degrees = check_range(name, "degrees", degrees)
        self.translate = check_range(name, "translate", translate, 0.0, 1.0)
        self.scale = check_range(name, "scale", scale, 1e-3)
        if interpolation not in ("bilinear", "nearest"):
            raise ValueError(f"The 'interpolation' parameter of {name} must be 'bilinear' or 'nearest'. Got {interpolation!r} instead.")
        self.fill = fill
        self.interpolation = interpolation
        self.p = check_probability(name, p)

    def get_params(self) -> dict[str, Any]:
        return {
            "degrees": list(self.degrees),
            "translate": list(self.translate),
            "scale": list(self.scale),
            "fill": self.fill,
            "interpolation": self.interpolation,
            "p": self.p,
        }

    def sample_params(self, batch: torch.Tensor, generator: torch.Generator) -> Params:
        n, _, height, width = batch.shape
        fraction_x = uniform(n, (-self.translate[0], self.translate[0]), generator)
        fraction_y = uniform(n, (-self.translate[1], self.translate[1]), generator)
        chosen = coin(n, self.p, generator)
        return {
            "angle": torch.where(chosen, uniform(n, self.degrees, generator), 0.0),
            "translate": torch.stack([fraction_x * width, fraction_y * height], dim=1) * chosen[:, None],
            "scale": torch.where(chosen, uniform(n, self.scale, generator), 1.0),
        }

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        return TF.affine(x, params["angle"], params["translate"], params["scale"], self.fill, self.interpolation)
