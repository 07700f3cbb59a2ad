"""Pixel-level augmentations: random erasing (cutout), Gaussian noise, brightness/contrast, and Normalize."""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from transforms import functional as TF
from transforms.base import Params, Transform, check_probability, check_range, coin, register, uniform


@register
class RandomErasing(Transform):
    """With probability `p`, set a random rectangle to `value` (cutout).

    Its area is U(scale) of the image and its aspect ratio is log-uniform in `ratio`, as in
    torchvision; a rectangle that does not fit is clipped to the image.
    """

    def __init__(
        self,
        scale: tuple[float, float] = (0.02, 0.33),
        ratio: tuple[float, float] = (0.3, 3.3),
        value: float = 0.0,
        p: float = 0.5,
    ) -> None:
        name = type(self).__name__
        self.scale = check_range(name, "scale", scale, 0.0, 1.0)
        self.ratio = check_range(name, "ratio", ratio, 1e-3)
        self.value = value
        self.p = check_probability(name, p)

    def get_params(self) -> dict[str, Any]:
        return {"scale": list(self.scale), "ratio": list(self.ratio), "value": self.value, "p": self.p}

    def sample_params(self, batch: torch.Tensor, generator: torch.Generator) -> Params:
        n, _, height, width = batch.shape
        area = uniform(n, self.scale, generator) * height * width
        aspect = torch.exp(uniform(n, (math.log(self.ratio[0]), math.log(self.ratio[1])), generator))
        rect_h = torch.sqrt(area * aspect).round().clamp(0, height).long()
        rect_w = torch.sqrt(area / aspect).round().clamp(0, width).long()
        top = (uniform(n, (0.0, 1.0), generator) * (height - rect_h + 1)).floor().long()
        left = (uniform(n, (0.0, 1.0), generator) * (width - rect_w + 1)).floor().long()
        chosen = coin(n, self.p, generator)
        return {"top": top, "left": left, "height": rect_h * chosen, "width": rect_w * chosen}

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        return TF.erase(x, params["top"], params["left"], params["height"], params["width"], self.value)


@register
class GaussianNoise(Transform):
    """Add zero-mean Gaussian noise whose std is U(std) per sample, in units of the dtype's maximum
    (255 for uint8, 1 for floats). The drawn noise is part of the params, so replay is exact."""

    def __init__(self, std: float | tuple[float, float] = (0.0, 0.1), p: float = 1.0) -> None:
        bounds = (0.0, std) if isinstance(std, (int, float)) else std
        self.std = check_range(type(self).__name__, "std", bounds, 0.0)
        self.p = check_probability(type(self).__name__, p)

    def get_params(self) -> dict[str, Any]:
        return {"std": list(self.std), "p": self.p}

    def sample_params(self, batch: torch.Tensor, generator: torch.Generator) -> Params:
        n = batch.shape[0]
        sigma = uniform(n, self.std, generator) * coin(n, self.p, generator) * TF.max_value(batch)
        noise = torch.randn(tuple(batch.shape), generator=generator, device=generator.device)
        return {"noise": noise * sigma.reshape(-1, 1, 1, 1)}

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        return TF.add_noise(x, params["noise"])


@register
class BrightnessContrast(Transform):
    """Per sample, contrast x U(1 - contrast, 1 + contrast) around the image mean, then brightness
    + U(-brightness, brightness) x the dtype's maximum. uint8 results are clamped to [0, 255]."""

    def __init__(self, brightness: float = 0.2, contrast: float = 0.2, p: float = 1.0) -> None:
        name = type(self).__name__
        for label, value in (("brightness", brightness), ("contrast", contrast)):
            if not 0 <= value <= 1:
                raise ValueError(f"The '{label}' parameter of {name} must be in [0, 1]. Got {value!r} instead.")
        self.brightness = float(brightness)
        self.contrast = float(contrast)
        self.p = check_probability(name, p)

    def get_params(self) -> dict[str, Any]:
        return {"brightness": self.brightness, "contrast": self.contrast, "p": self.p}

    def sample_params(self, batch: torch.Tensor, generator: torch.Generator) -> Params:
        n = batch.shape[0]
        alpha = uniform(n, (1 - self.contrast, 1 + self.contrast), generator)
        beta = uniform(n, (-self.brightness, self.brightness), generator)
        chosen = coin(n, self.p, generator)
        return {"alpha": torch.where(chosen, alpha, 1.0), "beta": torch.where(chosen, beta, 0.0)}

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        return TF.brightness_contrast(x, params["alpha"], params["beta"])


@register
class Normalize(Transform):
    """`(x / max_pixel_value - mean) / std` per channel, as albumentations' Normalize; not random.

    `max_pixel_value` defaults to the dtype's maximum (255 for uint8, 1 for floats).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], max_pixel_value: float | None = None) -> None:
        self.mean = [float(m) for m in (mean if isinstance(mean, Sequence) else [mean])]
        self.std = [float(s) for s in (std if isinstance(std, Sequence) else [std])]
        if len(self.mean) != len(self.std) or any(s <= 0 for s in self.std):
            raise ValueError(
                f"Normalize needs one positive std per mean. Got mean={mean!r}, std={std!r} instead."
            )
        self.max_pixel_value = max_pixel_value

    def get_params(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "max_pixel_value": self.max_pixel_value}

    def sample_params(self, batch: torch.Tensor, generator: torch.Generator) -> Params:
        return {}

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        if len(self.mean) not in (1, x.shape[1]):
            raise ValueError(f"Normalize has {len(self.mean)} channel statistics but the images have {x.shape[1]} channels.")
        return TF.normalize(x, self.mean, self.std, self.max_pixel_value)
