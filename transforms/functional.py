"""Pure, batched augmentation kernels over `(N, C, H, W)` tensors.

Each kernel takes already-drawn per-sample parameters and makes no random draws, so
another project can call it directly and a recorded augmentation replays exactly. Work is
vectorised over the batch (no per-sample Python loop) and runs on any device. Integer
images (uint8) come back as integers: arithmetic is done in float32, then rounded and
clamped to the dtype's range. Float images are not clamped: they may already be scaled.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from numpy.lib.stride_tricks import as_strided

_NUMPY_DTYPES = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.float16, torch.float32, torch.float64)


def _per_sample(values: torch.Tensor, x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A `(N,)` parameter shaped `(N, 1, 1, 1)` on `x`'s device, to broadcast over images."""
    return values.to(device=x.device, dtype=dtype or values.dtype).reshape(-1, 1, 1, 1)


def _working_float(x: torch.Tensor) -> torch.Tensor:
    return x if x.is_floating_point() else x.to(torch.float32)


def _back_to(out: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`out` in `like`'s dtype; integer results are rounded and clamped to the dtype's range."""
    if like.is_floating_point():
        return out.to(like.dtype)
    info = torch.iinfo(like.dtype)
    return out.round().clamp_(info.min, info.max).to(like.dtype)


def max_value(x: torch.Tensor) -> float:
    """The nominal maximum of an image dtype: 255 for uint8, 1.0 for floats in [0, 1]."""
    return float(torch.iinfo(x.dtype).max) if not x.is_floating_point() else 1.0


def _flip_where(x: torch.Tensor, flip: torch.Tensor, dim: int) -> torch.Tensor:
    """Mirror along `dim` the samples where `flip` is true. On the CPU only those samples are
    read and mirrored (twice the speed of a blend); elsewhere every sample is mirrored and
    blended, which asks the device nothing (selecting the samples would wait for it)."""
    if x.device.type == "cpu":
        chosen = flip.to(torch.bool).nonzero().squeeze(1)
        return x.index_copy(0, chosen, x.index_select(0, chosen).flip(dim))
    return torch.where(_per_sample(flip, x, torch.bool), x.flip(dim), x)


def hflip(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the samples where `flip` (shape `(N,)`) is true."""
    return _flip_where(x, flip, -1)


def vflip(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror top-bottom the samples where `flip` (shape `(N,)`) is true."""
    return _flip_where(x, flip, -2)


def pad_crop(
    x: torch.Tensor,
    top: torch.Tensor,
    left: torch.Tensor,
    size: tuple[int, int],
    padding: int = 0,
    fill: float = 0,
    mirror: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pad every side by `padding` with `fill`, then cut a `size` window at `(top, left)` per sample;
    the samples where `mirror` is true come out mirrored left-right (`hflip` of the crop).

    `top` and `left` (shape `(N,)`) index the padded image, as torchvision's RandomCrop does.
    The batch is padded once; one strided view holds a window starting at every element, and
    `index_select` copies each sample's window out of it: only the output is written, in
    whole rows (twice the speed of indexing an `unfold` view). On the CPU a mirrored window is
    read through a second view whose rows run right to left (numpy allows the negative stride
    torch does not), so crop and flip together copy about half what they copy one after the other.
    """
    height, width = size
    try:
        padded = (F.pad(x, (padding, padding, padding, padding), value=fill) if padding else x).contiguous()
    except RuntimeError as exc:  # padding=100000 asks for terabytes
        if "alloc" not in str(exc).lower():
            raise
        grown = (x.shape[-2] + 2 * padding) * (x.shape[-1] + 2 * padding) * x.shape[0] * x.shape[1] * x.element_size()
        raise ValueError(f"padding={padding} grows a batch of {x.shape[0]} images to {grown / 2**30:,.1f} GiB, more than this device can allocate; lower it.") from None
    batch_stride, channel_stride, row_stride, column_stride = padded.stride()
    channels = padded.shape[1]
    if padded.shape[0] == 0:
        return padded.new_empty((0, channels, height, width))
    extent = (channels - 1) * channel_stride + (height - 1) * row_stride + (width - 1) * column_stride + 1
    windows = padded.as_strided((padded.numel() - extent + 1, channels, height, width), (1, channel_stride, row_stride, column_stride))
    starts = torch.arange(x.shape[0], device=x.device) * batch_stride + top.to(x.device, torch.long) * row_stride + left.to(x.device, torch.long) * column_stride
    if mirror is None:
        return windows.index_select(0, starts)
    if padded.device.type != "cpu" or padded.requires_grad or padded.dtype not in _NUMPY_DTYPES:
        return hflip(windows.index_select(0, starts), mirror)
    flat = padded.numpy().reshape(-1)
    count, byte = flat.size - extent + 1, flat.itemsize
    strides = (byte, channel_stride * byte, row_stride * byte)
    forward = as_strided(flat, (count, channels, height, width), (*strides, byte), writeable=False)
    backward = as_strided(flat[width - 1 :], (count, channels, height, width), (*strides, -byte), writeable=False)  # each row read right to left
    chosen, at = mirror.to("cpu", torch.bool).numpy(), starts.numpy()
    out = np.empty((x.shape[0], channels, height, width), flat.dtype)
    out[~chosen] = forward[at[~chosen]]
    out[chosen] = backward[at[chosen]]
    return torch.from_numpy(out)


def affine_matrices(
    angle: torch.Tensor, translate: torch.Tensor, scale: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """`(N, 2, 3)` matrices for `affine_grid` (align_corners=False) that rotate by `angle` degrees
    counter-clockwise about the centre, scale by `scale` and then shift by `translate` pixels `(dx, dy)`."""
    radians = angle.to(torch.float64) * (math.pi / 180.0)
    cos, sin = torch.cos(radians), torch.sin(radians)
    inv_scale = 1.0 / scale.to(torch.float64)
    # Inverse of the forward map, in pixel units about the centre (y points down).
    m00, m01 = cos * inv_scale, -sin * inv_scale
    m10, m11 = sin * inv_scale, cos * inv_scale
    dx, dy = translate[:, 0].to(torch.float64), translate[:, 1].to(torch.float64)
    theta = torch.stack(
        [
            torch.stack([m00, m01 * height / width, -(2.0 / width) * (m00 * dx + m01 * dy)], dim=1),
            torch.stack([m10 * width / height, m11, -(2.0 / height) * (m10 * dx + m11 * dy)], dim=1),
        ],
        dim=1,
    )
    return theta


def affine(
    x: torch.Tensor,
    angle: torch.Tensor,
    translate: torch.Tensor,
    scale: torch.Tensor,
    fill: float = 0.0,
    interpolation: str = "bilinear",
) -> torch.Tensor:
    """Rotate (degrees, counter-clockwise), scale and shift (pixels) every sample by its own amount."""
    n, _, height, width = x.shape
    if n == 0:
        return x.clone()
    work = _working_float(x)
    theta = affine_matrices(angle, translate, scale, height, width).to(device=x.device, dtype=work.dtype)
    grid = F.affine_grid(theta, [n, 1, height, width], align_corners=False)
    out = F.grid_sample(work, grid, mode=interpolation, padding_mode="zeros", align_corners=False)
    if fill:
        coverage = F.grid_sample(torch.ones_like(work[:, :1]), grid, mode=interpolation, align_corners=False)
        out = out + fill * (1.0 - coverage)
    return _back_to(out, x)


def erase(
    x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, height: torch.Tensor, width: torch.Tensor, value: float = 0
) -> torch.Tensor:
    """Set a `height` x `width` rectangle at `(top, left)` of each sample to `value` (height 0: untouched)."""
    rows = torch.arange(x.shape[-2], device=x.device).reshape(1, 1, -1, 1)
    cols = torch.arange(x.shape[-1], device=x.device).reshape(1, 1, 1, -1)
    top, left = _per_sample(top, x, torch.long), _per_sample(left, x, torch.long)
    height, width = _per_sample(height, x, torch.long), _per_sample(width, x, torch.long)
    inside = (rows >= top) & (rows < top + height) & (cols >= left) & (cols < left + width)
    return torch.where(inside, torch.as_tensor(value, dtype=x.dtype, device=x.device), x)


def add_noise(x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """`x + noise`, kept in `x`'s dtype (integers rounded and clamped)."""
    return _back_to(_working_float(x) + noise.to(x.device), x)


def brightness_contrast(x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Per sample: scale contrast by `alpha` around the image's mean, then add `beta` times the dtype's maximum."""
    work = _working_float(x)
    mean = work.mean(dim=(1, 2, 3), keepdim=True)
    alpha = _per_sample(alpha, x, work.dtype)
    beta = _per_sample(beta, x, work.dtype)
    return _back_to((work - mean) * alpha + mean + beta * max_value(x), x)


def normalize(
    x: torch.Tensor, mean: Sequence[float], std: Sequence[float], max_pixel_value: float | None = None
) -> torch.Tensor:
    """`(x / max_pixel_value - mean) / std` per channel, as float32 (float64 kept); the max defaults to the dtype's."""
    scale = max_value(x) if max_pixel_value is None else max_pixel_value
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    mean_t, std_t = _channel_statistics(tuple(mean), tuple(std), scale, dtype, x.device)
    values = x.to(dtype) if x.dtype == torch.bool else x  # torch subtracts no truth values
    return torch.sub(values, mean_t).div_(std_t)  # the subtraction converts x exactly as x.to(dtype) would; the division reuses its output


@functools.lru_cache(maxsize=64)
def _channel_statistics(mean: tuple[float, ...], std: tuple[float, ...], scale: float, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """`mean` and `std` times `scale`, shaped to broadcast over `(N, C, H, W)`: made once per
    recipe step, dtype and device instead of once a batch. Callers only read them."""
    shaped = [torch.as_tensor(values, dtype=dtype, device=device).reshape(1, -1, 1, 1) * scale for values in (mean, std)]
    return shaped[0], shaped[1]
