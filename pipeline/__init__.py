"""The staged, cached pipeline: configuration, stages, cache, runner, ablations and CLI.

The Python API: `run` (one training through the cached stages), `ablate` (an ablation, as an
`Ablation` with DataFrames) and `load_ablation` (one read back from its folder)."""

from pipeline.api import ablate, load_ablation, run

__all__ = ["ablate", "load_ablation", "run"]
