"""What a stage is: a name, a version, its inputs, the code that computes it, its parameters, `run`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from pipeline.cache import Artifact
from pipeline.config import Config
from trainers.distributed import SINGLE, Distributed


@dataclass(frozen=True)
class RunContext:
    """Things that change how a stage runs or reports, never what it computes (so not in any key).

    `checkpoint` is where the stage may keep resumable state for the entry it is building;
    with `resume`, it continues from what it finds there. `params` are the stage's own
    parameters as planned (and keyed), so `run` need not compute them again.
    """

    progress: bool = True
    resume: bool = False
    checkpoint: Path | None = None
    params: dict[str, Any] | None = None
    distributed: Distributed = SINGLE


class Stage(ABC):
    """One step of the pipeline. The runner, not the stage, does caching, timing and logging."""

    name: str
    version: str
    inputs: tuple[str, ...] = ()
    # A collective stage runs on every rank of a torchrun job together; the others run on rank 0.
    collective: bool = False

    @abstractmethod
    def code(self, config: Config) -> tuple[ModuleType, ...]:
        """The modules whose source computes this stage; their fingerprint is part of the key."""

    @abstractmethod
    def params(self, config: Config) -> dict[str, Any]:
        """The slice of the configuration (and any other identity) this stage's output depends on."""

    @abstractmethod
    def describe(self, config: Config) -> str:
        """A few words that tell this stage's entry apart to a person (`cache ls`): not part of the key."""

    @abstractmethod
    def run(self, inputs: dict[str, Artifact], config: Config, context: RunContext) -> Artifact:
        """Compute the stage's artifact from its inputs' artifacts."""
