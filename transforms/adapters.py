"""Adapters that run albumentations 2.x and torchvision.transforms.v2 transforms inside a recipe.

Both run per sample on the CPU side of the library, so they are for the offline `augment`
stage and for `Dataset` transforms rather than the GPU hot path. Each sample gets its own
seed in `sample_params`, so an adapter is as replayable as the batched transforms. The
libraries are imported on first use, so `import transforms` stays light.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import importlib.metadata
import os
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from transforms.base import Params, Transform, register

_SEED_LIMIT = 2**31 - 1


class AGPLAlbumentationsWarning(UserWarning):
    """The installed `albumentations` module comes from the AGPL-licensed AlbumentationsX fork."""


def _draw_seeds(batch: torch.Tensor, generator: torch.Generator) -> Params:
    return {"seed": torch.randint(0, _SEED_LIMIT, (batch.shape[0],), generator=generator, device=generator.device)}


def _lookup(module: Any, name: str, backend: str) -> Any:
    if not hasattr(module, name):
        close = difflib.get_close_matches(name, [n for n in dir(module) if n[:1].isupper()], n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"{backend} has no transform {name!r}.{hint}")
    return getattr(module, name)


@functools.cache
def _albumentations() -> Any:
    """Import albumentations once, without its online update check, warning if it is the AGPL fork."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    try:
        import albumentations
    except ImportError as exc:
        raise ImportError(
            "The Albumentations adapter needs albumentations 2.0.x: pip install 'gainsplit[albumentations]'"
        ) from exc
    providers = importlib.metadata.packages_distributions().get("albumentations", [])
    if any(name.lower() == "albumentationsx" for name in providers):
        warnings.warn(
            "The installed 'albumentations' module is AlbumentationsX, which is AGPL-licensed; "
            "install albumentations 2.0.x for the MIT-licensed line.",
            AGPLAlbumentationsWarning,
            stacklevel=3,
        )
    return albumentations


@contextlib.contextmanager
def _library_failure(adapter: Transform, shape: tuple[int, ...]) -> Iterator[None]:
    """A library transform that fails on an image (its arguments do not fit it, say) as a
    `ValueError` naming the transform, not the library's own exception from deep inside it."""
    try:
        yield
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [""])[-1]
        raise ValueError(f"{adapter!r} failed on an image of shape {shape}: {exc.__class__.__name__}: {reason}") from exc


@register
class Albumentations(Transform):
    """Any albumentations 2.x transform, by name with keyword `args`, or an object (an `A.Compose` too).

    Recipe form: `{name: Albumentations, transform: Affine, args: {rotate: [-10, 10]}}`.
    Images go in as `(C, H, W)` tensors and are handed to albumentations as `(H, W, C)` arrays.
    """

    def __init__(self, transform: Any, args: dict[str, Any] | None = None) -> None:
        A = _albumentations()
        self.args = dict(args or {})
        if isinstance(transform, str):
            self.transform = _lookup(A, transform, "albumentations")(**self.args)
            self._spec: Any = transform
        elif isinstance(transform, dict):
            self.transform = A.from_dict(transform)
            self._spec = transform
        else:
            if self.args:
                raise ValueError("Albumentations takes 'args' only with a transform given by name.")
            self.transform = transform
            self._spec = None

    def get_params(self) -> dict[str, Any]:
        if isinstance(self._spec, str):
            return {"transform": self._spec, "args": self.args}
        return {"transform": self._spec if self._spec is not None else _albumentations().to_dict(self.transform)}

    def sample_params(self, batch: torch.Tensor, generator: torch.Generator) -> Params:
        return _draw_seeds(batch, generator)

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        images = x.detach().cpu().permute(0, 2, 3, 1).numpy()
        outputs = []
        for image, seed in zip(images, params["seed"].tolist()):
            self.transform.set_random_seed(seed)
            with _library_failure(self, image.shape):
                out = self.transform(image=np.ascontiguousarray(image))["image"]
            outputs.append(out[:, :, None] if out.ndim == 2 else out)
        if not outputs:
            return x.clone()
        return torch.from_numpy(np.stack(outputs)).permute(0, 3, 1, 2).contiguous().to(x.device)


@register
class TorchvisionV2(Transform):
    """A torchvision.transforms.v2 transform, by name with keyword `args`, or an object.

    torchvision draws from the global torch RNG; here each sample runs under its own seed
    inside `torch.random.fork_rng`, so the caller's global RNG state is left as it was.
    """

    def __init__(self, transform: Any, args: dict[str, Any] | None = None) -> None:
        from torchvision.transforms import v2

        self.args = dict(args or {})
        if isinstance(transform, str):
            self.transform = _lookup(v2, transform, "torchvision.transforms.v2")(**self.args)
            self._name: str | None = transform
        else:
            if self.args:
                raise ValueError("TorchvisionV2 takes 'args' only with a transform given by name.")
            self.transform = transform
            self._name = None

    def get_params(self) -> dict[str, Any]:
        if self._name is None:
            raise ValueError(
                f"TorchvisionV2({self.transform!r}) was built from an object and cannot be serialized; "
                "build it by name with args instead."
            )
        return {"transform": self._name, "args": self.args}

    def __repr__(self) -> str:
        return f"TorchvisionV2({self.transform!r})"

    def sample_params(self, batch: torch.Tensor, generator: torch.Generator) -> Params:
        return _draw_seeds(batch, generator)

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        devices = [x.device.index or 0] if x.device.type == "cuda" else []
        outputs = []
        with torch.random.fork_rng(devices=devices):
            for image, seed in zip(x, params["seed"].tolist()):
                torch.manual_seed(seed)
                with _library_failure(self, tuple(image.shape)):
                    outputs.append(self.transform(image))
        return torch.stack(outputs) if outputs else x.clone()
