"""Pure, batched augmentation kernels over `(N, C, H, W)` tensors.

Each kernel takes the already-drawn per-sample parameters and does no random draws,
so another project can call it directly and a recorded augmentation replays exactly.
All work is vectorised over the batch: no per-sample Python loop, any device, any dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _check_batch(x: torch.Tensor) -> None:
    if x.ndim != 4:
        raise ValueError(f"Expected a batch of images of shape (N, C, H, W), got shape {tuple(x.shape)}.")


def _per_sample(mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return mask.to(device=x.device, dtype=torch.bool).reshape(-1, 1, 1, 1)


def hflip(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the samples where `flip` (shape `(N,)`) is true."""
    _check_batch(x)
    return torch.where(_per_sample(flip, x), x.flip(-1), x)


def vflip(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror top-bottom the samples where `flip` (shape `(N,)`) is true."""
    _check_batch(x)
    return torch.where(_per_sample(flip, x), x.flip(-2), x)


def pad_crop(
    x: torch.Tensor,
    top: torch.Tensor,
    left: torch.Tensor,
    size: tuple[int, int],
    padding: int = 0,
    fill: float = 0,
) -> torch.Tensor:
    """Pad every side by `padding` with `fill`, then cut a `size` window at `(top, left)` per sample.

    `top` and `left` (shape `(N,)`) index the padded image, as torchvision's RandomCrop does.
    """
    _check_batch(x)
    height, width = size
    padded = F.pad(x, (padding, padding, padding, padding), value=fill) if padding else x
    top = top.to(device=x.device, dtype=torch.long)
    left = left.to(device=x.device, dtype=torch.long)
    rows = (top[:, None] + torch.arange(height, device=x.device))[:, :, None]  # (N, h, 1)
    cols = (left[:, None] + torch.arange(width, device=x.device))[:, None, :]  # (N, 1, w)
    batch = torch.arange(x.shape[0], device=x.device)[:, None, None]
    # Advanced indexing on dims 0, 2, 3 puts the channel dimension last: (N, h, w, C).
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()
