"""pretrain: with `model.init: autoencoder`, train a denoising autoencoder whose encoder is the
network's trunk on the training split's scaled samples, with those `data.train_fraction` left
out of training (no labels; never the validation or test split), and hand the trunk's weights to `train` as its initialization (`trainers.pretrain`).

The stage is in the graph only for such a configuration: a run with any other init has no
`pretrain` stage, and its training reads neither the stage nor `model.pretrain`."""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

import numpy as np

import trainers.devices
import trainers.models
import trainers.pretrain
from pipeline.cache import Artifact
from pipeline.config import Config
from pipeline.stages.base import RunContext, Stage
from pipeline.stages.train import weights_to_arrays


def pretrains(config: Config) -> bool:
    """Whether this configuration's training starts from a pretrained trunk."""
    return config.model.init == "autoencoder"


def pretrain_seed(config: Config) -> int:
    """`model.pretrain.seed`, or the training's own seed when it is unset."""
    seed = config.model.pretrain.seed
    return config.train.seed if seed is None else seed


class PretrainStage(Stage):
    name = "pretrain"
    version = "1"
    inputs = ("collect", "scale")

    def code(self, config: Config) -> tuple[ModuleType, ...]:
        return (sys.modules[__name__], trainers.pretrain, trainers.models)

    def params(self, config: Config) -> dict[str, Any]:
        spec = config.model.spec()
        for unread in ("init", "init_std"):  # the autoencoder starts from PyTorch's initialization
            del spec[unread]
        return {
            "model": spec,
            "pretrain": config.model.pretrain.model_dump(mode="json", exclude={"seed"}),
            "seed": pretrain_seed(config),
            "batch_size": config.train.batch_size,
            "device_type": trainers.devices.resolve_device(config.train.device).type,
        }

    def describe(self, config: Config) -> str:
        settings = config.model.pretrain
        return f"denoising autoencoder, {settings.epochs} epochs, noise {settings.noise:g}, seed {pretrain_seed(config)}"

    def run(self, inputs: dict[str, Artifact], config: Config, context: RunContext) -> Artifact:
        scaled = inputs["scale"].arrays  # the training split alone, labelled or not: validation and test stay unseen
        x_train = scaled["x_train"]
        if "x_unlabelled" in scaled:
            x_train = np.concatenate([x_train, scaled["x_unlabelled"]])
        settings = config.model.pretrain
        device = trainers.devices.resolve_device(config.train.device)
        pretrained = trainers.pretrain.pretrain_trunk(
            config.model.spec(), x_train, len(inputs["collect"].info["class_names"]),
            trainers.pretrain.PretrainSettings(settings.epochs, settings.lr, settings.noise, config.train.batch_size),
            pretrain_seed(config), device, progress=context.progress,
        )
        info = {
            "reconstruction_loss": pretrained.losses,
            "samples": int(x_train.shape[0]),
            "unlabelled_samples": int(scaled["x_unlabelled"].shape[0]) if "x_unlabelled" in scaled else 0,
            "device": str(device),
        }
        return Artifact(weights_to_arrays(pretrained.trunk), info)
