"""Mixed precision as one small object: autocast on CUDA (bf16 or fp16) and, for fp16, a GradScaler."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast for bf16 or fp16 on CUDA; nothing at all (not even a disabled autocast) otherwise."""
    dtype = DTYPES.get(precision) if device.type == "cuda" else None
    return contextlib.nullcontext() if dtype is None else torch.autocast(device_type="cuda", dtype=dtype)


class Precision:
    """`fp32` everywhere; `bf16` or `fp16` autocast on CUDA only (the CPU trains in fp32)."""

    def __init__(self, device: torch.device, precision: str = "fp32") -> None:
        self.device, self.precision = device, precision
        self.scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda" and precision == "fp16")

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.precision)

    def backward_and_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Backpropagate `loss` and step `optimizer`, through the GradScaler when it is on."""
        if self.scaler.is_enabled():
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            loss.backward()
            optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        """The GradScaler's state, for a checkpoint: empty unless fp16 scales the loss."""
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue with the GradScaler state a checkpoint holds (nothing to do when it is off)."""
        self.scaler.load_state_dict(state)
