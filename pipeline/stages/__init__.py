"""The stages and their graph, declared explicitly: collect -> augment -> scale -> train, with
`pretrain` between scale and train for a network initialised by an autoencoder."""

from graphlib import TopologicalSorter

from pipeline.config import Config
from pipeline.stages.augment import AugmentStage
from pipeline.stages.base import RunContext, Stage
from pipeline.stages.collect import CollectStage
from pipeline.stages.pretrain import PretrainStage, pretrains
from pipeline.stages.scale import ScaleStage
from pipeline.stages.train import TrainStage


def default_stages(config: Config | None = None) -> list[Stage]:
    """The pipeline's stages for `config` in dependency order (without a configuration, those
    of every configuration); an unknown input or a cycle fails here."""
    pretraining = config is not None and pretrains(config)
    chosen = (CollectStage(), AugmentStage(), ScaleStage(), *([PretrainStage()] if pretraining else []), TrainStage(pretrained=pretraining))
    stages = {stage.name: stage for stage in chosen}
    for stage in stages.values():
        missing = [name for name in stage.inputs if name not in stages]
        if missing:
            raise ValueError(f"Stage {stage.name!r} reads unknown stage(s) {missing}.")
    order = TopologicalSorter({name: stage.inputs for name, stage in stages.items()}).static_order()
    return [stages[name] for name in order]


def stages_before_training(config: Config) -> list[Stage]:
    """What `train` reads, built before any training: the data stages and, where the
    configuration asks for it, the pretraining."""
    return default_stages(config)[:-1]


def training_stage(config: Config) -> Stage:
    return default_stages(config)[-1]


__all__ = [
    "AugmentStage", "CollectStage", "PretrainStage", "RunContext", "ScaleStage", "Stage", "TrainStage",
    "default_stages", "stages_before_training", "training_stage",
]
