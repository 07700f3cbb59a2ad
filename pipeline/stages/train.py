"""train: fit the network on the scaled data, keep the best weights, evaluate on the test split."""

from __future__ import annotations

import importlib.metadata
import logging
import os
import random
import signal
import sys
from types import ModuleType
from typing import Any

import numpy as np
import torch

import trainers.arrays
import trainers.capacity
import trainers.checkpoints
import trainers.devices
import trainers.diagnosis
import trainers.distributed
import trainers.early_stopping
import trainers.fused
import trainers.fused_optim
import trainers.loop
import trainers.metrics
import trainers.models
import trainers.optim
import trainers.precision
import trainers.registry
import trainers.schedules
import trainers.torchvision_models
import transforms.compose
from pipeline.cache import Artifact
from pipeline.config import Config, changed_settings
from pipeline.stages.augment import AUGMENTATION_CODE
from pipeline.stages.base import RunContext, Stage
from pipeline.stages.collect import SPLITS

log = logging.getLogger(__name__)
WEIGHT_PREFIX = "weights."
TRAIN_SECTIONS = ("model", "optim", "schedule", "early_stop", "train")
# Fault injection for the resume tests: SIGKILL this process right after epoch N's checkpoint.
KILL_AFTER_EPOCH = "GAINSPLIT_TEST_KILL_AFTER_EPOCH"


def model_code(config: Config) -> tuple[ModuleType, ...]:
    """The user's model code: the modules named in `model.plugins` and the one defining the
    factory of `model.type` (editing the model re-trains; editing a comment does not)."""
    modules = [sys.modules[name] for name in config.model.plugins]
    factory = trainers.registry.MODELS.get(config.model.type)
    if factory is not None:
        modules.append(sys.modules[factory.build.__module__])
    return tuple(dict.fromkeys(modules))


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch for a run (initialisation and dropout use the global RNGs);
    with `deterministic`, also make torch choose deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def weights_to_arrays(state: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {WEIGHT_PREFIX + name: tensor.detach().cpu().numpy() for name, tensor in state.items()}


def arrays_to_weights(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The model's `state_dict` back from a train artifact's arrays."""
    return {
        name.removeprefix(WEIGHT_PREFIX): torch.from_numpy(np.array(array))
        for name, array in arrays.items()
        if name.startswith(WEIGHT_PREFIX)
    }


def kill_hook() -> Any:
    after = os.environ.get(KILL_AFTER_EPOCH)
    if not after:
        return None

    def maybe_kill(epoch: int) -> None:
        if epoch == int(after):
            os.kill(os.getpid(), signal.SIGKILL)

    return maybe_kill


def precision_for(config: Config, device: torch.device) -> str:
    """The precision actually used: mixed precision is a CUDA feature, so the CPU runs fp32."""
    if config.train.precision != "fp32" and device.type != "cuda":
        log.warning("train.precision=%s needs CUDA; training in fp32 on %s.", config.train.precision, device)
        return "fp32"
    return config.train.precision


class TrainStage(Stage):
    name = "train"
    version = "2"
    inputs = ("collect", "augment", "scale")
    collective = True

    def code(self, config: Config) -> tuple[ModuleType, ...]:
        return (
            sys.modules[__name__],
            trainers.models,
            trainers.loop,
            trainers.arrays,
            trainers.fused,
            trainers.fused_optim,
            trainers.precision,
            trainers.checkpoints,
            trainers.devices,
            trainers.distributed,
            trainers.optim,
            trainers.schedules,
            trainers.metrics,
            trainers.early_stopping,
            trainers.diagnosis,
            trainers.registry,
            trainers.torchvision_models,
            *AUGMENTATION_CODE,
            *model_code(config),
        )

    def params(self, config: Config) -> dict[str, Any]:
        params = {name: getattr(config, name).model_dump(mode="json") for name in TRAIN_SECTIONS}
        params["early_stop"]["restore_best"] = config.early_stop.restores_best  # unset and its meaning train alike
        if config.model.type.startswith(trainers.registry.TORCHVISION):
            params["torchvision"] = importlib.metadata.version("torchvision")  # its architectures are part of the result
        # A CPU and a GPU run of the same config are different results; where the data sits is not.
        device = trainers.devices.resolve_device(config.train.device)
        params["device_type"] = device.type
        params["precision_used"] = precision_for(config, device)
        del params["train"]["data_on_device"], params["train"]["checkpoint_every"], params["train"]["cuda_graphs"]
        if config.train.distributed == "ddp":
            params["world_size"] = int(os.environ.get("WORLD_SIZE", 1))
        return params

    def describe(self, config: Config) -> str:
        return " ".join(changed_settings(config, TRAIN_SECTIONS)) or "default settings"

    def run(self, inputs: dict[str, Artifact], config: Config, context: RunContext) -> Artifact:
        settings = config.train
        distributed = context.distributed
        device = trainers.devices.resolve_device(settings.device)
        if distributed.active and device.type == "cuda":
            device = torch.device("cuda", distributed.local_rank)
        precision = precision_for(config, device)
        seed_everything(settings.seed, settings.deterministic)
        on_device = data_on_device(config, [inputs["scale"].arrays], device)
        splits = place_splits(inputs["scale"].arrays, device, on_device)
        class_names = inputs["collect"].info["class_names"]
        sync_batch_norm = distributed.active and config.model.sync_batch_norm and device.type == "cuda"
        if distributed.active and config.model.sync_batch_norm and not sync_batch_norm:
            log.warning("model.sync_batch_norm needs CUDA; on the CPU each rank keeps its own BatchNorm statistics.")
        array = build_array([config], tuple(splits["train"].x.shape[1:]), len(class_names), device, sync_batch_norm)
        if context.checkpoint is not None and context.checkpoint.exists() and not context.resume:
            log.warning("Starting over: %s holds an interrupted run; pass --resume to continue it.", context.checkpoint)
        (result,) = trainers.loop.fit_array(
            array,
            [member_for(config, splits, inputs["augment"].info)],
            batch_size=settings.batch_size,
            device=device,
            precision=precision,
            checkpoint=context.checkpoint,
            checkpoint_every=settings.checkpoint_every,
            resume=context.resume,
            on_epoch_end=kill_hook(),
            distributed=distributed,
            cuda_graphs=settings.cuda_graphs,
            progress=context.progress,
        )
        test = trainers.loop.predict_array(array.module, trainers.loop.ArrayData([splits["test"]], "test"), device, precision)
        val = trainers.loop.predict_array(array.module, trainers.loop.ArrayData([splits["val"]], "val"), device, precision)
        how = {
            "device": str(device),
            "precision": precision,
            "data_on_device": on_device,
            "world_size": distributed.world_size,
            "sync_batch_norm": sync_batch_norm,
            "fused_members": 1,
            "cuda_graphs": result.graph_replays > 0,
        }
        train = trainers.loop.evaluate_array(array.module, trainers.loop.ArrayData([splits["train"]], "train"), device, precision)
        return member_artifact(
            array.member_state_dict(0), test[0], splits, result, class_names, how, val_logits=val[0],
            train_accuracy=float(train[0, 1]), uses=regularizers(config, inputs["augment"].info), model=architecture(config, splits, class_names),
        )


def data_on_device(config: Config, scaled: list[dict[str, np.ndarray]], device: torch.device) -> bool:
    """Whether the scaled arrays (of every member) go to the device once, per `train.data_on_device`."""
    choice = {"always": True, "never": False}.get(config.train.data_on_device)
    if choice is not None:
        return choice
    return trainers.loop.fits_on_device([arrays[f"x_{split}"] for arrays in scaled for split in SPLITS], device)


def place_splits(scaled: dict[str, np.ndarray], device: torch.device, on_device: bool) -> dict[str, trainers.loop.Split]:
    """The scale stage's arrays as train / val / test splits, on the device or in (pinned) host memory."""
    return {split: trainers.loop.place(scaled[f"x_{split}"], scaled[f"y_{split}"], device, on_device) for split in SPLITS}


def build_array(
    configs: list[Config], input_shape: tuple[int, ...], n_classes: int, device: torch.device, sync_batch_norm: bool = False
) -> trainers.arrays.TrainingArray:
    """The networks of `configs` as one fused array (a solo run is an array of one, trained as
    every member of a fused ablation is); a network that does not fuse (a plugin's or
    torchvision's, or one with SyncBatchNorm) trains alone, with its torch optimizer."""
    specs = [config.model.model_dump(exclude={"sync_batch_norm"}) for config in configs]
    optims = [config.optim.model_dump() for config in configs]
    trainers.capacity.check_fits(specs[0], input_shape, n_classes, configs[0].train.batch_size, device)
    if not sync_batch_norm and trainers.arrays.model_fuses(specs[0], input_shape, n_classes):
        seeds = [config.train.seed for config in configs]
        return trainers.arrays.fused_array(specs, optims, seeds, input_shape, n_classes, device)
    if len(configs) > 1:
        raise ValueError(f"model type {specs[0]['type']!r} does not fuse: its runs train one at a time.")
    (spec,), (optim,) = specs, optims
    model = trainers.models.build_model(spec, input_shape, n_classes)
    if sync_batch_norm:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device)
    return trainers.arrays.SoloArray(model, trainers.optim.build_optimizer(model.parameters(), optim))


def member_for(config: Config, splits: dict[str, trainers.loop.Split], augment_info: dict[str, Any]) -> trainers.loop.Member:
    """One training's settings, as the loop takes them."""
    stop = config.early_stop
    early_stopping = (
        trainers.early_stopping.EarlyStopping(stop.patience, stop.min_delta, "min" if stop.monitor == "val_loss" else "max")
        if stop.enabled
        else None
    )
    return trainers.loop.Member(
        splits["train"],
        splits["val"],
        config.train.epochs,
        seed=config.train.seed,
        augment=transforms.compose.build_recipe(augment_info["recipe"]) if augment_info["mode"] == "online" else None,
        augment_seed=augment_info["seed"],
        schedule=config.schedule.model_dump(),
        early_stopping=early_stopping,
        monitor=stop.monitor,
        restore_best=stop.restores_best,
        label_smoothing=config.train.label_smoothing,
    )


def architecture(config: Config, splits: dict[str, trainers.loop.Split], class_names: list[str]) -> dict[str, Any]:
    """The network this training built (type, widths, parameter count), for its run record."""
    spec = config.model.model_dump(exclude={"sync_batch_norm"})
    return trainers.models.architecture(spec, tuple(splits["train"].x.shape[1:]), len(class_names))


def regularizers(config: Config, augment_info: dict[str, Any]) -> list[str]:
    """The regularizers a training uses, by the names the diagnosis's advice gives them."""
    used = {
        "dropout": config.model.dropout > 0 or config.model.dropout_input > 0,
        "batch normalization": config.model.batch_norm,
        "augmentation": augment_info["mode"] != "none",
        "early stopping": config.early_stop.enabled,
    }
    return [name for name, on in used.items() if on]


def member_artifact(
    weights: dict[str, torch.Tensor],
    logits: torch.Tensor,
    splits: dict[str, trainers.loop.Split],
    result: trainers.loop.FitResult,
    class_names: list[str],
    how: dict[str, Any],
    *,
    val_logits: torch.Tensor,
    train_accuracy: float,
    uses: list[str],
    model: dict[str, Any],
) -> Artifact:
    """A trained member's cache entry: its weights, test probabilities, metrics, history and
    diagnosis, and `how` it was trained (device, precision, data placement, ranks, fusion).
    `train_accuracy`: of the kept weights on the training split in eval mode; `uses`: its regularizers;
    `model`: the architecture it built; `val_logits`: on the validation split, kept as probabilities."""
    target = splits["test"].y.to(logits.device)
    matrix = trainers.metrics.confusion_matrix(logits, target, len(class_names))
    best = result.history[result.best_epoch - 1] if result.best_epoch else result.history[-1]
    kept = result.history[result.kept_epoch - 1]  # the epoch whose weights are scored on the test split
    metrics = {
        "test_accuracy": (logits.argmax(dim=1) == target).sum().item() / max(1, len(target)),
        "test_loss": torch.nn.functional.cross_entropy(logits, target).item(),
        "best_epoch": result.best_epoch,
        "stopped_epoch": result.stopped_epoch,
        "epochs_run": result.epochs_run,
        "stop_reason": result.stop_reason,
        "resumed_from_epoch": result.resumed_from_epoch,
        "best_train_accuracy": best["train_accuracy"],
        "best_val_accuracy": best["val_accuracy"],
        "kept_epoch": result.kept_epoch,
        "val_accuracy": kept["val_accuracy"],  # of the weights kept: what the ablation selects on
        "val_loss": kept["val_loss"],
        "train_accuracy": train_accuracy,  # eval mode, kept weights: what the diagnosis compares
        "per_class_accuracy": trainers.metrics.per_class_accuracy(matrix, class_names),
        "confusion_matrix": matrix,
    }
    info = {
        "metrics": metrics,
        "history": result.history,
        "diagnosis": trainers.diagnosis.diagnose(
            result.history, kept_epoch=result.kept_epoch, train_accuracy=train_accuracy,
            val_samples=int(splits["val"].x.shape[0]), uses=uses,
        ).as_dict(),
        "n_classes": len(class_names),
        "model": model,
        "train_samples": int(splits["train"].x.shape[0]),
        **how,
    }
    arrays = weights_to_arrays(weights)
    arrays["test_probabilities"] = torch.softmax(logits, dim=1).cpu().numpy()
    arrays["val_probabilities"] = torch.softmax(val_logits, dim=1).cpu().numpy()  # what an ablation selects on, in any metric
    return Artifact(arrays, info)
