"""train: fit the network on the scaled data, keep the best weights, evaluate on the test split."""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import os
import random
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
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
import trainers.pretrain
import trainers.registry
import trainers.schedules
import trainers.torchvision_models
import transforms.compose
from pipeline.cache import Artifact
from pipeline.config import Config, changed_settings
from pipeline.errors import RunFailed
from pipeline.stages.augment import AUGMENTATION_CODE
from pipeline.stages.base import RunContext, Stage
from pipeline.stages.collect import SPLITS

log = logging.getLogger(__name__)
WEIGHT_PREFIX = "weights."
TRAIN_SECTIONS = ("model", "optim", "schedule", "early_stop", "train")


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


def precision_for(config: Config, device: torch.device) -> str:
    """The precision actually used: mixed precision is a CUDA feature, so the CPU runs fp32."""
    if config.train.precision != "fp32" and device.type != "cuda":
        log.warning("train.precision=%s needs CUDA; training in fp32 on %s.", config.train.precision, device)
        return "fp32"
    return config.train.precision


class TrainStage(Stage):
    name = "train"
    version = "2"
    collective = True

    def __init__(self, pretrained: bool = False) -> None:
        """`pretrained`: the network's trunk starts from the `pretrain` stage's weights."""
        self.inputs = ("collect", "augment", "scale", *(("pretrain",) if pretrained else ()))

    def code(self, config: Config) -> tuple[ModuleType, ...]:
        return (
            sys.modules[__name__],
            trainers.models,
            trainers.loop,
            trainers.arrays,
            trainers.fused,
            trainers.fused_optim,
            trainers.precision,
            trainers.pretrain,
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
        del params["model"]["pretrain"]  # what the pretraining did reaches this key as the pretrain stage's output
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
        member = unit_member(config, inputs)
        (artifact,) = train_unit(
            [member], checkpoint=context.checkpoint, resume=context.resume, distributed=context.distributed, progress=context.progress
        )
        return artifact


@dataclass(frozen=True)
class UnitMember:
    """One member of a training unit: its settings and what its data stages produced.

    Members whose `scaled` is the same mapping object share one copy of it on the device."""

    config: Config
    scaled: Mapping[str, np.ndarray]
    augment: Mapping[str, Any]
    class_names: list[str]
    pretrained: Mapping[str, torch.Tensor] | None = None  # the trunk's weights, from the pretrain stage


def unit_member(config: Config, inputs: Mapping[str, Artifact], scaled: Mapping[str, np.ndarray] | None = None) -> UnitMember:
    """A training's member from what its stages built (`inputs`, by stage name); `scaled`, when
    given, stands for the scale stage's arrays (a mapping other members share)."""
    pretrained = arrays_to_weights(inputs["pretrain"].arrays) if "pretrain" in inputs else None
    scaled = inputs["scale"].arrays if scaled is None else scaled
    return UnitMember(config, scaled, inputs["augment"].info, inputs["collect"].info["class_names"], pretrained)


def training_device(config: Config, distributed: trainers.distributed.Distributed) -> torch.device:
    """Where a training runs: `train.device`, and under torchrun this rank's own GPU."""
    device = trainers.devices.resolve_device(config.train.device)
    if distributed.active and device.type == "cuda":
        return torch.device("cuda", distributed.local_rank)
    return device


def uses_sync_batch_norm(config: Config, distributed: trainers.distributed.Distributed, device: torch.device) -> bool:
    """Whether BatchNorm's statistics are synchronised across ranks (a CUDA-only feature)."""
    if not (distributed.active and config.model.sync_batch_norm):
        return False
    if device.type != "cuda":
        log.warning("model.sync_batch_norm needs CUDA; on the CPU each rank keeps its own BatchNorm statistics.")
        return False
    return True


def train_unit(
    members: Sequence[UnitMember],
    *,
    checkpoint: Path | None = None,
    resume: bool = False,
    distributed: trainers.distributed.Distributed = trainers.distributed.SINGLE,
    progress: bool = False,
    on_steps: Callable[[float], None] | None = None,
) -> list[Artifact]:
    """Train a unit of K members as one array and return each member's train artifact: the one
    training path, K=1 for `pipeline run`, K>1 for the runs an ablation fuses.

    The members share every setting but the member-level ones (`pipeline.ablation.fusion`);
    device, precision, batch size and checkpointing come from the first. `checkpoint` holds the
    unit's resumable state; with `resume`, training continues from it. `on_steps` hears the
    member-epochs each step trains (`trainers.loop.fit_array`)."""
    first = members[0].config
    device = training_device(first, distributed)
    precision = precision_for(first, device)
    seed_everything(first.train.seed, first.train.deterministic)
    on_device = data_on_device(first, list({id(m.scaled): m.scaled for m in members}.values()), device)
    placed = {id(m.scaled): place_splits(m.scaled, device, on_device) for m in members}  # one copy per data variant
    splits = [placed[id(m.scaled)] for m in members]
    class_names = members[0].class_names
    sync_batch_norm = uses_sync_batch_norm(first, distributed, device)
    configs = [m.config for m in members]
    array = build_array(configs, tuple(splits[0]["train"].x.shape[1:]), len(class_names), device, sync_batch_norm)
    for k, member in enumerate(members):
        if member.pretrained is not None:
            array.load_member_state_dict(k, trainers.pretrain.with_trunk(array.member_state_dict(k), member.pretrained))
    if checkpoint is not None and checkpoint.exists() and not resume:
        log.warning("Starting over: %s holds an interrupted training; pass --resume to continue it.", checkpoint)
    with failures_at_run_time(device, len(members)):
        fitted = trainers.loop.fit_array(
            array, [member_for(m.config, own, m.augment) for m, own in zip(members, splits)],
            batch_size=first.train.batch_size, device=device, precision=precision, checkpoint=checkpoint,
            checkpoint_every=first.train.checkpoint_every, resume=resume, distributed=distributed,
            cuda_graphs=first.train.cuda_graphs, progress=progress, on_steps=on_steps,
        )
    scores = {split: trainers.loop.ArrayData([own[split] for own in splits], split) for split in SPLITS}
    test = trainers.loop.predict_array(array.module, scores["test"], device, precision)
    val = trainers.loop.predict_array(array.module, scores["val"], device, precision)
    train = trainers.loop.evaluate_array(array.module, scores["train"], device, precision)
    how = {
        "device": str(device),
        "precision": precision,
        "data_on_device": on_device,
        "world_size": distributed.world_size,
        "sync_batch_norm": sync_batch_norm,
        "fused_members": len(members),
        "cuda_graphs": fitted[0].graph_replays > 0,
    }
    return [
        member_artifact(
            array.member_state_dict(k), test[k], own, result, class_names, how, val_logits=val[k],
            train_accuracy=float(train[k, 1]), uses=regularizers(m.config, m.augment), model=architecture(m.config, own, class_names),
            caveats=trainers.diagnosis.batch_norm_caveats(
                m.config.model.batch_norm, first.train.batch_size, int(own["train"].x.shape[0]), distributed.world_size
            ),
        )
        for k, (m, own, result) in enumerate(zip(members, splits, fitted))
    ]


@contextlib.contextmanager
def failures_at_run_time(device: torch.device, members: int) -> Iterator[None]:
    """A diverged training or running out of memory as `RunFailed`: the input may be fine, the run failed."""
    try:
        yield
    except trainers.loop.TrainingDiverged as exc:
        raise RunFailed(f"training diverged: {exc}; a lower optim.lr or gradient-friendlier settings may train") from exc
    except torch.OutOfMemoryError as exc:
        fused = f" ({members} fused members: --fuse off trains them one at a time)" if members > 1 else ""
        raise RunFailed(f"training ran out of memory on {device}{fused}; lower train.batch_size or the network's width") from exc


def data_on_device(config: Config, scaled: list[Mapping[str, np.ndarray]], device: torch.device) -> bool:
    """Whether the scaled arrays (of every member) go to the device once, per `train.data_on_device`."""
    choice = {"always": True, "never": False}.get(config.train.data_on_device)
    if choice is not None:
        return choice
    return trainers.loop.fits_on_device([arrays[f"x_{split}"] for arrays in scaled for split in SPLITS], device)


def place_splits(scaled: Mapping[str, np.ndarray], device: torch.device, on_device: bool) -> dict[str, trainers.loop.Split]:
    """The scale stage's arrays as train / val / test splits, on the device or in (pinned) host memory."""
    return {split: trainers.loop.place(scaled[f"x_{split}"], scaled[f"y_{split}"], device, on_device) for split in SPLITS}


def build_array(
    configs: list[Config], input_shape: tuple[int, ...], n_classes: int, device: torch.device, sync_batch_norm: bool = False
) -> trainers.arrays.TrainingArray:
    """The networks of `configs` as one fused array (a solo run is an array of one, trained as
    every member of a fused ablation is); a network that does not fuse (a plugin's or
    torchvision's, or one with SyncBatchNorm) trains alone, with its torch optimizer."""
    specs = [config.model.spec() for config in configs]
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


def member_for(config: Config, splits: dict[str, trainers.loop.Split], augment_info: Mapping[str, Any]) -> trainers.loop.Member:
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
    spec = config.model.spec()
    return trainers.models.architecture(spec, tuple(splits["train"].x.shape[1:]), len(class_names))


def regularizers(config: Config, augment_info: Mapping[str, Any]) -> list[str]:
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
    caveats: list[str],
) -> Artifact:
    """A trained member's cache entry: its weights, test probabilities, metrics, history and
    diagnosis, and `how` it was trained (device, precision, data placement, ranks, fusion).
    `train_accuracy`: of the kept weights on the training split in eval mode; `uses`: its regularizers;
    `model`: the architecture it built; `val_logits`: on the validation split, kept as probabilities;
    `caveats`: what its batches did to batch normalization (`trainers.diagnosis.batch_norm_caveats`)."""
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
            applies=[name for name in trainers.diagnosis.REGULARIZERS if name != "augmentation" or splits["train"].x.ndim == 4],
        ).as_dict() | {"caveats": caveats},
        "n_classes": len(class_names),
        "model": model,
        "train_samples": int(splits["train"].x.shape[0]),
        **how,
    }
    arrays = weights_to_arrays(weights)
    arrays["test_probabilities"] = torch.softmax(logits, dim=1).cpu().numpy()
    arrays["val_probabilities"] = torch.softmax(val_logits, dim=1).cpu().numpy()  # what an ablation selects on, in any metric
    return Artifact(arrays, info)
