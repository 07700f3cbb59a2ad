"""The training step replayed from CUDA graphs: one launch per step instead of hundreds.

A fused array's step (forward, backward and the per-member optimizer update) is a few hundred
small kernels; on a GPU their launches, not their arithmetic, take the time. `StepGraphs` keeps
one graph per kind of step (the shapes of its inputs, so the short last batch has its own, and
a host-side `variant`, such as which members still learn). Each kind first runs eagerly a
couple of times (creating the optimizer's state and the libraries' handles), is then captured,
and from then on each batch is copied into the graph's static inputs and the graph replayed.
A replay launches the kernels the eager step launches, in the same order.

Only a step that never waits on the host can be captured: a fused array's (`FusedOptimizer`
keeps its hyperparameters and step counts on the device) in fp32, outside DDP. Where a capture
fails anyway, training goes on eagerly with a warning.
"""

from __future__ import annotations

import logging
from typing import Callable, Hashable

import torch

log = logging.getLogger(__name__)
Step = Callable[..., tuple[torch.Tensor, ...]]


def can_capture(device: torch.device, precision: str, distributed: bool, capturable: bool) -> bool:
    """Whether a training step on `device` may run as a CUDA graph: CUDA, fp32 (autocast caches
    casts between steps; fp16's GradScaler reads its overflow check on the host), one process,
    and an array whose optimizer keeps everything on the device."""
    return device.type == "cuda" and precision == "fp32" and not distributed and capturable


class _Captured:
    """One captured step: its static inputs and outputs and the graph that links them."""

    def __init__(self, step: Step, inputs: tuple[torch.Tensor, ...]) -> None:
        self.inputs = tuple(tensor.clone() for tensor in inputs)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.outputs = step(*self.inputs)

    def replay(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        for static, tensor in zip(self.inputs, inputs):
            static.copy_(tensor)
        self.graph.replay()
        return tuple(output.clone() for output in self.outputs)  # the next replay overwrites the static outputs


class StepGraphs:
    """Run `step(*inputs)` from CUDA graphs, one per `(variant, input shapes)`, each captured after
    that kind of step ran eagerly `warmup` times. A new variant drops the old one's graphs."""

    def __init__(self, device: torch.device, warmup: int = 2) -> None:
        self.device, self.warmup = device, warmup
        self.graphs: dict[Hashable, _Captured] = {}
        self.eager_runs: dict[Hashable, int] = {}
        self.variant: Hashable = None
        self.replays = 0
        self.failed: str | None = None  # why capturing failed; steps run eagerly from then on

    def __call__(self, step: Step, variant: Hashable, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if variant != self.variant:
            self.graphs.clear()
            self.eager_runs.clear()
            self.variant = variant
        if self.failed is not None:
            return step(*inputs)
        key = tuple((tuple(t.shape), t.dtype) for t in inputs)
        captured = self.graphs.get(key)
        if captured is None:
            if self.eager_runs.get(key, 0) < self.warmup:
                self.eager_runs[key] = self.eager_runs.get(key, 0) + 1
                return self._eager(step, inputs)
            try:
                captured = self.graphs[key] = _Captured(step, inputs)
            except RuntimeError as exc:  # an operation that cannot be captured: train on without graphs
                self.failed = f"{exc.__class__.__name__}: {str(exc).splitlines()[0]}"
                log.warning("The training step could not be captured as a CUDA graph (%s); training goes on without.", self.failed)
                torch.cuda.synchronize(self.device)
                return step(*inputs)
        self.replays += 1
        return captured.replay(inputs)

    def _eager(self, step: Step, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """A warm-up step: eager, on a side stream, as capture wants (lazily made state and
        handles then belong to no stream the graph captures)."""
        current = torch.cuda.current_stream(self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(current)
        with torch.cuda.stream(side):
            outputs = step(*inputs)
        current.wait_stream(side)
        return outputs


def eager(step: Step, variant: Hashable, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The plain step, as `StepGraphs` is called: for the CPU and whatever cannot be captured."""
    return step(*inputs)
