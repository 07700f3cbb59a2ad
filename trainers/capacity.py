"""How many members of a fused array fit on a device: an estimate from the network's parameter
count and activation sizes, both read from a pass over shapes alone (the meta device), so
nothing is allocated to find out."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch

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
        outputs = []
        hooks = [
            module.register_forward_hook(lambda _module, _inputs, output: outputs.append(output.numel()))
            for module in model.modules()
            if not list(module.children())
        ]
        model(torch.empty(batch_size, *input_shape))
    for hook in hooks:
        hook.remove()
    parameters = sum(parameter.numel() for parameter in model.parameters())
    return 4 * (PARAMETER_COPIES * parameters + ACTIVATION_COPIES * sum(outputs))


def device_memory(device: torch.device) -> int | None:
    """All the memory of `device` in bytes (a CUDA device's, or the host's physical memory), or
    None where the platform does not say."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[1]
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


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
