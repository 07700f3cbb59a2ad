"""One notion of device identity: a resolved CUDA device always carries its index, and every
"is this tensor already where it should be" question goes through `same_device`.

`torch.device("cuda") != torch.device("cuda", 0)`, while a tensor's `.device` always carries
the index; comparing the two with `==` once sent data already on the GPU through the host
DataLoader, which then tried to pin CUDA tensors.
"""

from __future__ import annotations

import torch


def canonical_device(device: torch.device | str) -> torch.device:
    """`device` with the index a tensor placed there would report: bare `cuda` becomes the
    current CUDA device (`cuda:0` unless `torch.cuda.set_device` said otherwise); the CPU is one
    device, whatever index it is given."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        # Before CUDA starts in this process the current device is 0 (set_device starts it), and
        # asking torch.cuda.current_device() would start CUDA on it: not what a torchrun rank
        # that has yet to pick its own GPU wants.
        return torch.device("cuda", torch.cuda.current_device() if torch.cuda.is_initialized() else 0)
    if device.type == "cpu":
        return torch.device("cpu")
    return device


def same_device(a: torch.device | str, b: torch.device | str) -> bool:
    """Whether `a` and `b` name the same device once both are canonical."""
    return canonical_device(a) == canonical_device(b)


def resolve_device(name: str) -> torch.device:
    """The device `train.device` names, canonical: `auto` is the current CUDA device when CUDA is
    present, else the CPU; an explicit CUDA device must exist."""
    if name == "auto":
        return canonical_device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"train.device is {name!r}, which is not a device: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device is {name!r} but CUDA is not available on this machine.")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(
            f"train.device is {name!r} but this machine has {torch.cuda.device_count()} CUDA device(s)"
            f" (cuda:0 to cuda:{torch.cuda.device_count() - 1}, as CUDA_VISIBLE_DEVICES shows them)."
        )
    return canonical_device(device)
