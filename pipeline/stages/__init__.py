"""The four stages and their graph, declared explicitly: collect -> augment -> scale -> train."""

from graphlib import TopologicalSorter

from pipeline.stages.augment import AugmentStage
from pipeline.stages.base import RunContext, Stage
from pipeline.stages.collect import CollectStage
from pipeline.stages.scale import ScaleStage
from pipeline.stages.train import TrainStage


def default_stages() -> list[Stage]:
    """The pipeline's stages in dependency order; an unknown input or a cycle fails here."""
    stages = {stage.name: stage for stage in (CollectStage(), AugmentStage(), ScaleStage(), TrainStage())}
    for stage in stages.values():
        missing = [name for name in stage.inputs if name not in stages]
        if missing:
            raise ValueError(f"Stage {stage.name!r} reads unknown stage(s) {missing}.")
    order = TopologicalSorter({name: stage.inputs for name, stage in stages.items()}).static_order()
    return [stages[name] for name in order]


__all__ = ["AugmentStage", "CollectStage", "RunContext", "ScaleStage", "Stage", "TrainStage", "default_stages"]
