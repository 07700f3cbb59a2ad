"""train: fit the network on the scaled data, keep the best weights, evaluate on the test split."""

from __future__ import annotations

import random
import sys
from types import ModuleType
from typing import Any

import numpy as np
import torch

import trainers.early_stopping
import trainers.loop
import trainers.models
import trainers.optim
import transforms.compose
from pipeline.cache import Artifact
from pipeline.config import Config
from pipeline.stages.augment import AUGMENTATION_CODE
from pipeline.stages.base import RunContext, Stage

WEIGHT_PREFIX = "weights."


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch for a run: model initialisation and dropout use the global RNGs."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def weights_to_arrays(state: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {WEIGHT_PREFIX + name: tensor.detach().cpu().numpy() for name, tensor in state.items()}


def arrays_to_weights(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The model's `state_dict` back from a train artifact's arrays."""
    return {
        name.removeprefix(WEIGHT_PREFIX): torch.from_numpy(np.array(array))
        for name, array in arrays.items()
        if name.startswith(WEIGHT_PREFIX)
    }


class TrainStage(Stage):
    name = "train"
    version = "1"
    inputs = ("collect", "augment", "scale")

    def code(self, config: Config) -> tuple[ModuleType, ...]:
        return (
            sys.modules[__name__],
            trainers.models,
            trainers.loop,
            trainers.optim,
            trainers.early_stopping,
            *AUGMENTATION_CODE,
        )

    def params(self, config: Config) -> dict[str, Any]:
        sections = ("model", "optim", "schedule", "early_stop", "train")
        params = {name: getattr(config, name).model_dump(mode="json") for name in sections}
        # A CPU and a GPU run of the same config are different results.
        params["device_type"] = trainers.loop.resolve_device(config.train.device).type
        return params

    def run(self, inputs: dict[str, Artifact], config: Config, context: RunContext) -> Artifact:
        device = trainers.loop.resolve_device(config.train.device)
        seed_everything(config.train.seed)
        data = inputs["scale"].arrays
        splits = {
            name: trainers.loop.Split(
                torch.from_numpy(np.array(data[f"x_{name}"])).to(device),
                torch.from_numpy(np.array(data[f"y_{name}"], dtype=np.int64)).to(device),
            )
            for name in ("train", "val", "test")
        }
        n_classes = len(inputs["collect"].info["class_names"])
        model = trainers.models.build_model(
            config.model.model_dump(), tuple(splits["train"].x.shape[1:]), n_classes
        ).to(device)
        optimizer = trainers.optim.build_optimizer(model.parameters(), config.optim.model_dump())
        scheduler = trainers.optim.build_scheduler(optimizer, config.schedule.model_dump(), config.train.epochs)
        stop = config.early_stop
        mode = "min" if stop.monitor == "val_loss" else "max"
        early_stopping = (
            trainers.early_stopping.EarlyStopping(stop.patience, stop.min_delta, mode) if stop.enabled else None
        )
        augment_info = inputs["augment"].info
        online = transforms.compose.build_recipe(augment_info["recipe"]) if augment_info["mode"] == "online" else None
        result = trainers.loop.fit(
            model,
            splits["train"],
            splits["val"],
            optimizer,
            epochs=config.train.epochs,
            batch_size=config.train.batch_size,
            scheduler=scheduler,
            early_stopping=early_stopping,
            monitor=stop.monitor,
            restore_best=stop.restore_best,
            augment=online,
            seed=config.train.seed,
            augment_seed=augment_info["seed"],
            progress=context.progress,
        )
        test_loss, test_accuracy = trainers.loop.evaluate(model, splits["test"])
        metrics = {
            "test_accuracy": test_accuracy,
            "test_loss": test_loss,
            "best_epoch": result.best_epoch,
            "stopped_epoch": result.stopped_epoch,
            "epochs_run": result.epochs_run,
            "stop_reason": result.stop_reason,
        }
        info = {"metrics": metrics, "history": result.history, "device": str(device), "n_classes": n_classes}
        return Artifact(weights_to_arrays(model.state_dict()), info)
