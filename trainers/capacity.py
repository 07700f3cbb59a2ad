"""How many members of a fused array fit on a device: an estimate from the network's parameter
count and activation sizes, read from the network built on the meta device (and, for networks
`fuse` does not take, a pass over shapes there), so nothing is allocated to find out."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.modules.utils import _pair

from datasets.base import host_memory_bytes
from trainers.fused import fusible
from trainers.models import build_model

# Per parameter: weights, gradient, up to two optimizer moments, the best epoch's copy and a
# stopped member's copy. Per activation: the forward value autograd keeps, its gradient and
# room for the kernels' temporaries.
PARAMETER_COPIES, ACTIVATION_COPIES = 6, 3
MEMORY_SHARE = 0.4  # of the device's free memory before the data is placed (which takes at most half)


def member_bytes(spec: Mapping[str, Any], input_shape: Sequence[int], n_classes: int, batch_size: int) -> int:
    """Bytes one member of an array of `spec` networks needs while training on batches of `batch_size`."""
    with torch.device("meta"):
        model = build_model(spec, input_shape, n_classes)
    parameters = sum(parameter.numel() for parameter in model.parameters())
    per_sample = layer_outputs(model, input_shape)
    if per_sample is None:
        outputs = []
        hooks = [
            module.register_forward_hook(lambda _module, _inputs, output: outputs.append(output.numel()))
            for module in model.modules()
            if not list(module.children())
        ]
        with torch.device("meta"):
            model(torch.empty(batch_size, *input_shape))
        for hook in hooks:
            hook.remove()
        activations = sum(outputs)
    else:
        activations = batch_size * sum(per_sample)
    return 4 * (PARAMETER_COPIES * parameters + ACTIVATION_COPIES * activations)


def layer_outputs(model: nn.Module, input_shape: Sequence[int]) -> list[int] | None:
    """The elements each layer of a network that `fuse` takes puts out per sample, from the
    layers' shape rules (PyTorch's documented ones); None for any other network, whose sizes
    a pass over shapes on the meta device reads instead. No tensor operation runs: on the meta
    device the first one imports torch._dynamo for its Python shape rules (a costly import in
    every process, see docs/performance.md), which a training of a fused network never needs
    otherwise."""
    if not fusible(model):
        return None
    shape, sizes = tuple(input_shape), []
    for layer in model.net:
        if isinstance(layer, nn.Conv2d):
            shape = (layer.out_channels, *_conv_size(layer, shape[1:]))
        elif isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
            shape = (shape[0], *_pool_size(layer, shape[1:]))
        elif isinstance(layer, nn.Linear):
            shape = (*shape[:-1], layer.out_features)
        elif isinstance(layer, nn.Flatten):
            shape = (math.prod(shape),)
        sizes.append(math.prod(shape))  # batch norm, activations and dropout keep the shape
    return sizes


def _conv_size(conv: nn.Conv2d, size: Sequence[int]) -> list[int]:
    if conv.padding == "same":
        return list(size)
    padding = (0, 0) if conv.padding == "valid" else conv.padding
    return [
        (n + 2 * p - d * (k - 1) - 1) // s + 1
        for n, k, s, p, d in zip(size, conv.kernel_size, conv.stride, padding, conv.dilation)
    ]


def _pool_size(pool: nn.MaxPool2d | nn.AvgPool2d, size: Sequence[int]) -> list[int]:
    """PyTorch's pooling_output_shape: with ceil_mode the last window must start inside the input or its left padding."""
    kernel, padding = _pair(pool.kernel_size), _pair(pool.padding)
    stride = _pair(pool.stride if pool.stride is not None else pool.kernel_size)
    dilation = _pair(getattr(pool, "dilation", 1))
    out = []
    for n, k, s, p, d in zip(size, kernel, stride, padding, dilation):
        span = n + 2 * p - d * (k - 1) - 1
        length = (span + (s - 1 if pool.ceil_mode else 0)) // s + 1
        if pool.ceil_mode and (length - 1) * s >= n + p:
            length -= 1
        out.append(length)
    return out


def device_memory(device: torch.device) -> int | None:
    """All the memory of `device` in bytes (a CUDA device's, or the host's physical memory), or
    None where the platform does not say."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[1]
    return host_memory_bytes()


def check_fits(spec: Mapping[str, Any], input_shape: Sequence[int], n_classes: int, batch_size: int, device: torch.device) -> None:
    """Refuse a network whose training could not fit in all of `device`'s memory, before anything
    is allocated: a typo such as `model.hidden=[1000000000000]` is a message, not a failed
    allocation of a petabyte."""
    total = device_memory(device)
    needed = member_bytes(spec, input_shape, n_classes, batch_size)
    if total is None or needed <= total:
        return
    with torch.device("meta"):
        parameters = sum(p.numel() for p in build_model(spec, input_shape, n_classes).parameters())
    where = "model.hidden or model.channels" if spec.get("type", "auto") in ("auto", "mlp", "cnn") else "model.options"
    raise ValueError(
        f"the network ({parameters:,} parameters) needs about {needed / 2**30:,.1f} GiB to train at train.batch_size={batch_size} "
        f"(weights, gradients, optimizer state, activations) and the {device.type} has {total / 2**30:,.1f} GiB in all; "
        f"choose smaller layers ({where}) or a smaller train.batch_size"
    )


def members_that_fit(
    spec: Mapping[str, Any], input_shape: Sequence[int], n_classes: int, batch_size: int, device: torch.device, most: int
) -> int:
    """At most `most` members, fewer where a CUDA device's free memory would not hold them (at least one)."""
    if device.type != "cuda":
        return most
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, min(most, int(MEMORY_SHARE * free // member_bytes(spec, input_shape, n_classes, batch_size))))


def split_evenly(items: list[Any], capacity: int) -> list[list[Any]]:
    """`items` in as few near-equal consecutive pieces of at most `capacity` as there can be."""
    count = -(-len(items) // capacity)
    size = -(-len(items) // count)
    return [items[start : start + size] for start in range(0, len(items), size)]
