"""The training loop, for an array of K members (`trainers.arrays`) trained as one: a solo run
is an array of one.

Each member has its own data order, augmentation draws, learning-rate schedule, label
smoothing, early stopping and restore-best weights; a member that stops is frozen while the
others go on. Batches are drawn by index from data kept on the device (or through a pinned
DataLoader), the learning rate is set every step, mixed precision runs on CUDA, and atomic
checkpoints between epochs make a killed run resume to the same result.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from trainers.arrays import OneMember, SoloArray, TrainingArray
from trainers.checkpoints import CheckpointWriter, resume_from, training_state
from trainers.devices import canonical_device, same_device
from trainers.distributed import SINGLE, Distributed
from trainers.early_stopping import EarlyStopping, StopReason
from trainers.fused import fused_cross_entropy
from trainers.graphs import Step, StepGraphs, can_capture, eager
from trainers.host_memory import keep_freed_memory
from trainers.precision import Precision, autocast
from trainers.schedules import Plateau, learning_rate

HISTORY_COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds", "val_loss_se")
SHUFFLE_STREAM, AUGMENT_STREAM = 0, 1
DEVICE_MEMORY_SHARE = 0.5
EVAL_SAMPLES = 1024  # samples in one evaluation batch


class TrainingDiverged(ValueError):
    """The loss became NaN or infinite; the message names the epoch and batch."""


@dataclass
class Split:
    """Features and integer labels of one split (on the training device, or on the host for the loader path)."""

    x: torch.Tensor
    y: torch.Tensor


@dataclass
class Member:
    """One training of an array: its data and every setting it may hold apart from the others."""

    train: Split
    val: Split
    epochs: int
    seed: int = 0  # the data order
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None  # online, run on the device
    augment_seed: int = 0
    schedule: Mapping[str, Any] = field(default_factory=lambda: {"type": "none"})
    early_stopping: EarlyStopping | None = None
    monitor: Literal["val_loss", "val_accuracy"] = "val_loss"
    restore_best: bool = True
    label_smoothing: float = 0.0


@dataclass
class FitResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    stopped_epoch: int = 0
    kept_epoch: int = 0  # whose weights the network ends with: the best epoch's when restored, else the last
    stop_reason: str = StopReason.NOT_STOPPED.value
    resumed_from_epoch: int = 0
    graph_replays: int = 0  # steps replayed from CUDA graphs (`trainers.graphs`) in this process

    @property
    def epochs_run(self) -> int:
        return len(self.history)


def fits_on_device(arrays: list[np.ndarray], device: torch.device) -> bool:
    """Whether the arrays take at most half of the device's free memory (always true on the CPU)."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return sum(a.nbytes for a in arrays) <= DEVICE_MEMORY_SHARE * free


def place(x: np.ndarray, y: np.ndarray, device: torch.device, on_device: bool) -> Split:
    """Copy a split to the device once, or to (pinned, when CUDA is the target) host memory. An
    array already in this process's memory (decoded from the cache, or just built) is used as it
    is on the CPU: nothing writes to a split's features; a memory map of the cache is copied in."""
    in_memory = type(x) is np.ndarray and x.flags.c_contiguous and x.flags.writeable
    features = torch.from_numpy(x if in_memory else np.array(x))
    labels = torch.from_numpy(np.array(y, dtype=np.int64))
    if on_device:
        return Split(features.to(device), labels.to(device))
    if device.type == "cuda":
        features, labels = features.pin_memory(), labels.pin_memory()
    return Split(features, labels)


def epoch_generator(seed: int, epoch: int, stream: int, device: torch.device) -> torch.Generator:
    """A generator for one purpose (`stream`) in one epoch, derived from `(seed, epoch)` alone.

    An epoch's shuffling and augmentation do not depend on what ran before it, so a run
    resumed at epoch k draws exactly what the uninterrupted run drew.
    """
    state = np.random.SeedSequence([seed, epoch, stream]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(state))


class ArrayData:
    """The members' splits of one kind, stacked once: the D distinct arrays as `(D, N, ...)` and
    which one each member reads (members that share a split share its memory)."""

    def __init__(self, splits: Sequence[Split], role: str = "train") -> None:
        distinct: list[Split] = []
        index = []
        for member, split in enumerate(splits):
            if split.x.shape != splits[0].x.shape:
                raise ValueError(
                    f"Cannot train as one array: member {member}'s {role} data has shape {tuple(split.x.shape)}, "
                    f"member 0's {tuple(splits[0].x.shape)}."
                )
            known = next((d for d, other in enumerate(distinct) if other is split), None)
            if known is None:
                distinct.append(split)
                known = len(distinct) - 1
            index.append(known)
        self.x = torch.stack([split.x for split in distinct]) if len(distinct) > 1 else distinct[0].x.unsqueeze(0)
        self.y = torch.stack([split.y for split in distinct]) if len(distinct) > 1 else distinct[0].y.unsqueeze(0)
        self.shared = len(distinct) == 1
        self.member_index = torch.tensor(index, device=self.x.device).view(-1, 1)
        self.members = len(splits)

    @property
    def size(self) -> int:
        return self.x.shape[1]

    def rows(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each member's samples at `rows` `(K, b)`: `(K, b, ...)` features and `(K, b)` labels."""
        if self.shared:
            return self.x[0][rows], self.y[0][rows]
        return self.x[self.member_index, rows], self.y[self.member_index, rows]


def _identity(rows: torch.Tensor) -> torch.Tensor:
    return rows


class _HostBatches(torch.utils.data.Dataset):
    """Batches cut from host tensors in given orders, for a DataLoader that pins them."""

    def __init__(self, data: ArrayData, orders: torch.Tensor, batch_size: int, select: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.data, self.orders, self.batch_size, self.select = data, orders, batch_size, select

    def __len__(self) -> int:
        return (self.orders.shape[1] + self.batch_size - 1) // self.batch_size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.data.rows(self.select(self.orders[:, index * self.batch_size : (index + 1) * self.batch_size]))


def batches(
    data: ArrayData,
    orders: torch.Tensor,
    batch_size: int,
    device: torch.device,
    select: Callable[[torch.Tensor], torch.Tensor] = _identity,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """`(K, b, ...)` batches, member k's rows taken in `orders[k]` (each narrowed by `select`, e.g.
    to this rank's shard): indexed on the device when the data lives there, else through a
    DataLoader that pins them."""
    if same_device(data.x.device, device):
        orders = orders.to(device)
        for start in range(0, orders.shape[1], batch_size):
            yield data.rows(select(orders[:, start : start + batch_size]))
        return
    # The loader's own generator keeps it from drawing its base seed from the global RNG (dropout's).
    loader = torch.utils.data.DataLoader(
        _HostBatches(data, orders.cpu(), batch_size, select),
        batch_size=None,
        pin_memory=device.type == "cuda",
        generator=torch.Generator(),
    )
    for x, y in loader:
        yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def evaluation_batch(members: int, device: torch.device) -> int:
    """Each member's samples in one evaluation batch: on the CPU 1024 across all the members, as
    many as a solo run evaluates at once (a larger fused batch is no faster per sample there, and
    its activations outgrow what malloc keeps for reuse, see `trainers.host_memory`); elsewhere
    1024 each, since fewer and larger batches launch fewer kernels."""
    return max(1, EVAL_SAMPLES // members) if device.type == "cpu" else EVAL_SAMPLES


@torch.no_grad()
def predict_array(
    module: nn.Module, data: ArrayData, device: torch.device, precision: str = "fp32", batch_size: int | None = None
) -> torch.Tensor:
    """Every member's logits for every sample of its split, `(K, N, classes)`, in eval mode, float32
    on the device; `batch_size` samples of each member at a time (default: `evaluation_batch`)."""
    module.eval()
    order = torch.arange(data.size).expand(data.members, -1)
    outputs = []
    for x, _ in batches(data, order, batch_size or evaluation_batch(data.members, device), device):
        with autocast(device, precision):
            outputs.append(module(x).float())
    return torch.cat(outputs, dim=1) if outputs else torch.zeros(data.members, 0, device=device)


def evaluate_array(module: nn.Module, data: ArrayData, device: torch.device, precision: str = "fp32") -> torch.Tensor:
    """Each member's mean cross-entropy, accuracy and the standard error of that mean loss (how
    much of a change in it is noise), `(K, 3)` float64 on the device."""
    logits = predict_array(module, data, device, precision)
    target = data.y.to(device)[data.member_index.to(device).view(-1)]
    members, samples, classes = logits.shape
    losses = nn.functional.cross_entropy(logits.reshape(-1, classes), target.reshape(-1), reduction="none").view(members, samples).double()
    accuracy = (logits.argmax(dim=-1) == target).double().mean(dim=1)
    spread = losses.std(dim=1) / samples**0.5 if samples > 1 else torch.zeros_like(accuracy)
    return torch.stack([losses.mean(dim=1), accuracy, spread], dim=1)


def predict(model: nn.Module, split: Split, device: torch.device, precision: str = "fp32", batch_size: int = EVAL_SAMPLES) -> torch.Tensor:
    """Logits of a plain network for every sample of `split`, in eval mode, as float32 on the device."""
    return predict_array(OneMember(model), ArrayData([split], "test"), device, precision, batch_size)[0]


def evaluate(model: nn.Module, split: Split, device: torch.device | None = None, precision: str = "fp32") -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy of a plain network on `split`."""
    scores = evaluate_array(OneMember(model), ArrayData([split], "validation"), device or split.x.device, precision)
    loss, accuracy, _ = scores[0].tolist()
    return loss, accuracy


def _epoch_rates(
    members: Sequence[Member], base_lrs: Sequence[float], plateaus: Sequence[Plateau | None], epoch: int, steps: int
) -> np.ndarray:
    """Every member's learning rate for every step of `epoch`, `(steps, K)`: each schedule is a pure function of the step."""
    return np.array(
        [
            [
                learning_rate(member.schedule, base, (epoch - 1) * steps + step, steps, member.epochs) * (plateau.scale if plateau else 1.0)
                for base, member, plateau in zip(base_lrs, members, plateaus)
            ]
            for step in range(steps)
        ]
    )


@dataclass
class _Members:
    """What the loop keeps about every member between epochs; all of it goes into a checkpoint."""

    members: Sequence[Member]
    results: list[FitResult]
    trackers: list[EarlyStopping]
    plateaus: list[Plateau | None]
    best: list[dict[str, torch.Tensor] | None]  # weights of each member's best epoch so far
    final: list[dict[str, torch.Tensor] | None]  # a member's weights when it stopped before the others

    @classmethod
    def start(cls, members: Sequence[Member]) -> "_Members":
        # Without early stopping a tracker still finds the best epoch (for restore_best) and never stops.
        trackers = [
            m.early_stopping or EarlyStopping(patience=m.epochs + 1, mode="min" if m.monitor == "val_loss" else "max") for m in members
        ]
        plateaus = [
            Plateau(m.schedule.get("gamma", 0.1), m.schedule.get("patience", 3)) if m.schedule["type"] == "plateau" else None
            for m in members
        ]
        nothing: list[dict[str, torch.Tensor] | None] = [None] * len(members)
        return cls(members, [FitResult() for _ in members], trackers, plateaus, list(nothing), list(nothing))

    def running(self) -> list[bool]:
        return [r.stop_reason == StopReason.NOT_STOPPED.value and r.epochs_run < m.epochs for r, m in zip(self.results, self.members)]

    def state_dict(self) -> dict[str, Any]:
        return {
            "early_stopping": [tracker.state_dict() for tracker in self.trackers],
            "plateaus": [plateau.state_dict() if plateau else None for plateau in self.plateaus],
            "best": self.best,
            "final": self.final,
            "histories": [result.history for result in self.results],
            "stop_reasons": [result.stop_reason for result in self.results],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for k, result in enumerate(self.results):
            self.trackers[k].load_state_dict(state["early_stopping"][k])
            if self.plateaus[k] is not None:
                self.plateaus[k].load_state_dict(state["plateaus"][k])
            result.history, result.stop_reason = state["histories"][k], state["stop_reasons"][k]
            result.resumed_from_epoch = len(result.history)
        self.best, self.final = state["best"], state["final"]

    def keeps_best(self, k: int) -> bool:
        """Whether member `k` ends with the weights of its best epoch (else with its last)."""
        return self.members[k].restore_best and self.best[k] is not None

    def restore_kept_weights(self, array: TrainingArray) -> None:
        """Put back each member's kept weights: its best epoch's, or those it stopped with before the
        others (a member that trained to the end already holds its last)."""
        for k in range(len(self.members)):
            kept = self.best[k] if self.keeps_best(k) else self.final[k]
            if kept is not None:
                array.load_member_state_dict(k, kept)

    def finished(self, graph_replays: int) -> list[FitResult]:
        """Every member's result, with its best, stopped and kept epochs filled in."""
        for k, (result, tracker) in enumerate(zip(self.results, self.trackers)):
            result.best_epoch = tracker.best_epoch
            result.stopped_epoch = result.epochs_run
            result.kept_epoch = tracker.best_epoch if self.keeps_best(k) else result.epochs_run
            result.graph_replays = graph_replays
        return self.results


@dataclass
class _Epoch:
    """One epoch's training numbers per member, summed over ranks."""

    train_loss: list[float]
    train_accuracy: list[float]
    mean_rates: list[float]


def training_step(net: nn.Module, array: TrainingArray, amp: Precision, smoothing: torch.Tensor | None) -> Step:
    """One optimizer step of every member on its batch: `step(xb, yb, learning, masked)` returns
    each member's loss `(K,)` and predicted classes `(K, b)`. Only members marked in `learning`
    learn when `masked` (a host-side fact, so a CUDA graph of the step is captured per value)."""

    def step(xb: torch.Tensor, yb: torch.Tensor, learning: torch.Tensor, masked: bool) -> tuple[torch.Tensor, torch.Tensor]:
        with amp.autocast():
            logits = net(xb)
            member_losses = fused_cross_entropy(logits, yb, smoothing)
            if masked:
                member_losses = torch.where(learning, member_losses, torch.zeros_like(member_losses))
        array.optimizer.zero_grad(set_to_none=True)
        amp.backward_and_step(member_losses.sum(), array.optimizer)
        return member_losses.detach(), logits.detach().argmax(dim=-1)

    return step


@dataclass
class _Training:
    """What every epoch of one `fit_array` call works with, set up once."""

    array: TrainingArray
    state: _Members
    train: ArrayData
    val: ArrayData
    amp: Precision
    distributed: Distributed
    batch_size: int
    used: int  # training samples drawn each epoch (`_samples_used`)
    step: Step  # one step of every member (`training_step`)
    run_step: Step  # runs `step`: `eager`, or from CUDA graphs (`StepGraphs`)
    checkpoints: CheckpointWriter
    on_steps: Callable[[float], None] | None = None  # told the member-epochs each step trained


def fit_array(
    array: TrainingArray,
    members: Sequence[Member],
    *,
    batch_size: int,
    device: torch.device | None = None,
    precision: Literal["fp32", "bf16", "fp16"] = "fp32",
    checkpoint: Path | None = None,
    checkpoint_every: float = 0.0,
    resume: bool = False,
    on_epoch_end: Callable[[int], None] | None = None,
    on_steps: Callable[[float], None] | None = None,
    distributed: Distributed = SINGLE,
    cuda_graphs: bool = True,
    progress: bool = True,
) -> list[FitResult]:
    """Train every member of `array` in place and return each member's per-epoch history.

    The learning rate is set every step from each member's schedule (the optimizer's own lr is
    the base rate). Shuffling comes from `(seed, epoch)` and online augmentation
    (`augment(batch, generator)`, run on the device) from `(augment_seed, epoch)`. With
    `checkpoint`, the full state is written after an epoch once `checkpoint_every` seconds have
    passed since the last write (0: after every epoch) and, with `resume`, read back first, so a
    killed run continues to the same result. `on_steps`, when given, hears after every step how
    many member-epochs it trained (the running members over the epoch's steps): progress within
    epochs, for a bar that counts member-epochs. A member with `restore_best` ends with
    the weights of its best epoch by its `monitor`, also when training is interrupted.

    Under torchrun (`distributed`), the module is wrapped in DistributedDataParallel, each rank
    trains on its shard of every global batch of `batch_size`, epoch metrics are summed over
    ranks, rank 0's validation numbers and stopping decisions are broadcast, and only rank 0
    writes checkpoints.

    With `cuda_graphs`, a fused array's step on CUDA in fp32 is captured as a CUDA graph and
    replayed (`trainers.graphs`): the same kernels, launched once per step instead of one by one.
    """
    if len(members) != array.members:
        raise ValueError(f"The array has {array.members} members but {len(members)} were described.")
    train, val = ArrayData([m.train for m in members], "train"), ArrayData([m.val for m in members], "validation")
    device = canonical_device(device or train.x.device)
    amp = Precision(device, precision)
    if device.type == "cpu":
        keep_freed_memory()  # every step allocates and frees the same buffers: keep them rather than fault them in again
    state = _Members.start(members)
    net = distributed.wrap(array.module, device)
    if resume and checkpoint is not None and checkpoint.exists():
        resume_from(checkpoint, array, amp, state)
    first_epoch = max(result.epochs_run for result in state.results) + 1
    capture = cuda_graphs and can_capture(device, precision, distributed.active, array.capturable)
    training = _Training(
        array, state, train, val, amp, distributed, batch_size,
        used=_samples_used(train.size, batch_size, distributed.world_size),
        step=training_step(net, array, amp, _label_smoothing(members, device)),
        run_step=StepGraphs(device) if capture else eager,
        checkpoints=CheckpointWriter(checkpoint, checkpoint_every, written_epoch=first_epoch - 1, writes=distributed.is_main),
        on_steps=on_steps,
    )
    return _run_epochs(training, first_epoch, on_epoch_end, progress)


def _run_epochs(training: _Training, first_epoch: int, on_epoch_end: Callable[[int], None] | None, progress: bool) -> list[FitResult]:
    """Train, evaluate and close one epoch after another from `first_epoch` while any member runs,
    writing checkpoints as they fall due; every member ends with the weights it keeps, also when
    training is interrupted."""
    state, amp = training.state, training.amp
    last_epoch = max(member.epochs for member in state.members)
    bar = tqdm(total=last_epoch, initial=first_epoch - 1, desc="train", unit="epoch", disable=not progress, leave=False)
    try:
        for epoch in range(first_epoch, last_epoch + 1):
            if not any(state.running()):
                break
            started = time.perf_counter()
            trained = _train_epoch(training, epoch)
            scores = evaluate_array(training.array.module, training.val, amp.device, amp.precision)
            _close_epoch(training, epoch, trained, training.distributed.from_main(scores).tolist(), started)
            training.checkpoints.after_epoch(epoch, functools.partial(training_state, training.array, amp, state))
            _advance(bar, state)
            if on_epoch_end is not None:
                on_epoch_end(epoch)
    finally:
        bar.close()
        state.restore_kept_weights(training.array)
    return state.finished(graph_replays=training.run_step.replays if isinstance(training.run_step, StepGraphs) else 0)


def _samples_used(size: int, batch_size: int, world_size: int) -> int:
    """Training samples drawn each epoch: all, but a trailing batch too small to give every rank
    two samples is dropped (BatchNorm cannot train on one sample, and every rank must take part
    in every step)."""
    remainder = size % batch_size
    return size - remainder if size > batch_size and 0 < remainder < 2 * world_size else size


def _label_smoothing(members: Sequence[Member], device: torch.device) -> torch.Tensor | None:
    """Each member's label smoothing `(K,)`, or None when no member smooths."""
    return torch.tensor([m.label_smoothing for m in members], device=device) if any(m.label_smoothing for m in members) else None


def _train_epoch(training: _Training, epoch: int) -> _Epoch:
    """One pass over every member's training data through `run_step(step, variant, *inputs)`
    (eager, or `graphs.StepGraphs`); per-batch results stay on the device until the end."""
    array, state, data, distributed = training.array, training.state, training.train, training.distributed
    members, running, device = state.members, state.running(), training.amp.device
    batch_size, used = training.batch_size, training.used
    steps = max(1, (used + batch_size - 1) // batch_size)
    cpu = torch.device("cpu")
    orders = torch.stack([torch.randperm(data.size, generator=epoch_generator(m.seed, epoch, SHUFFLE_STREAM, cpu))[:used] for m in members])
    augment_generators = [epoch_generator(m.augment_seed, epoch, AUGMENT_STREAM, device) for m in members]
    planned_rates = _epoch_rates(members, array.base_lrs, state.plateaus, epoch, steps)
    rates = torch.tensor(planned_rates, dtype=torch.float32, device=array.rate_device)
    learning = torch.tensor(running, device=device)  # only running members' losses drive gradients
    masked = not all(running)
    member_step = functools.partial(training.step, masked=masked)
    per_step = sum(running) / steps
    losses, counts, predicted, targets = [], [], [], []
    array.module.train()
    for index, (xb, yb) in enumerate(batches(data, orders, batch_size, device, distributed.shard)):
        array.use_rates(rates[index])
        for k, member in enumerate(members):
            if member.augment is not None and running[k]:
                xb[k] = member.augment(xb[k], augment_generators[k])
        member_losses, member_predicted = training.run_step(member_step, tuple(running), xb, yb, learning)
        losses.append(member_losses)
        counts.append(yb.shape[1])
        predicted.append(member_predicted)
        targets.append(yb)
        if training.on_steps is not None:
            training.on_steps(per_step)
    step_losses = torch.stack(losses).float()  # (steps, K)
    _check_finite(step_losses, learning, epoch, training)
    sizes = torch.tensor(counts, dtype=step_losses.dtype, device=device)
    correct = (torch.cat(predicted, dim=1) == torch.cat(targets, dim=1)).sum(dim=1).to(step_losses.dtype)
    totals = distributed.sum(torch.stack([(step_losses * sizes[:, None]).sum(dim=0), sizes.sum().expand(len(members)), correct]))
    return _Epoch((totals[0] / totals[1]).tolist(), (totals[2] / totals[1]).tolist(), planned_rates.mean(axis=0).tolist())


def _check_finite(step_losses: torch.Tensor, learning: torch.Tensor, epoch: int, training: _Training) -> None:
    """Stop with an error naming the epoch, batch (and member) when a running member's loss is NaN or inf."""
    bad = ~torch.isfinite(step_losses) & learning
    if training.distributed.sum(bad.sum().float()).item() == 0:
        return
    members, where = training.state.members, torch.nonzero(bad).tolist()
    if where:
        batch, member = where[0]
        place_text = f"batch {batch}" + (f", member {member} (seed {members[member].seed})" if len(members) > 1 else "")
    else:
        place_text = "another rank's batch"
    raise TrainingDiverged(f"The training loss became NaN or inf at epoch {epoch}, {place_text}{training.checkpoints.kept()}.")


def _close_epoch(training: _Training, epoch: int, trained: _Epoch, scores: list[list[float]], started: float) -> None:
    """Log each running member's epoch, step its plateau and early stopping, keep its best weights,
    and freeze the members that stop (rank 0 decides)."""
    array, state = training.array, training.state
    running = state.running()
    stops = [0] * len(state.members)  # 1: patience ran out, 2: the monitored metric is not finite
    for k, member in enumerate(state.members):
        if not running[k]:
            continue
        row = {
            "epoch": epoch,
            "train_loss": trained.train_loss[k],
            "train_accuracy": trained.train_accuracy[k],
            "val_loss": scores[k][0],
            "val_accuracy": scores[k][1],
            "lr": trained.mean_rates[k],
            "seconds": time.perf_counter() - started,
            "val_loss_se": scores[k][2],  # the standard error of val_loss: how much of a change in it is noise
        }
        state.results[k].history.append(row)
        if state.plateaus[k] is not None:
            state.plateaus[k].step(row["val_loss"])
        should_stop, reason = state.trackers[k].step(row[member.monitor], epoch)
        if state.trackers[k].best_epoch == epoch:
            state.best[k] = array.member_state_dict(k)
        if should_stop and member.early_stopping is not None:
            stops[k] = 1 if reason == StopReason.PATIENCE else 2
    stops = training.distributed.from_main(torch.tensor(stops, device=training.distributed.device)).tolist()
    for k, member in enumerate(state.members):
        if running[k] and stops[k]:
            state.results[k].stop_reason = (StopReason.PATIENCE if stops[k] == 1 else StopReason.NON_FINITE).value
    still = state.running()
    for k in range(len(state.members)):
        if running[k] and not still[k] and any(still):  # the others go on: keep this member's weights as they are now
            array.freeze(k)
            state.final[k] = array.member_state_dict(k)


def _advance(bar: tqdm, state: _Members) -> None:
    """Count one more epoch on the progress bar, showing a solo run's numbers or how many members still run."""
    bar.update(1)
    if len(state.members) == 1:
        row = state.results[0].history[-1]
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_loss=f"{row['val_loss']:.3f}", val_acc=f"{row['val_accuracy']:.3f}")
    else:
        bar.set_postfix(running=sum(state.running()))


_MEMBER_SETTINGS = frozenset(f.name for f in fields(Member)) - {"train", "val", "epochs"}


def fit(model: nn.Module, train: Split, val: Split, optimizer: torch.optim.Optimizer, *, epochs: int, batch_size: int, **options: Any) -> FitResult:
    """Train one plain network in place with its torch optimizer: `fit_array` on an array of one.

    `options` are the member's `Member` settings (seed, schedule, early_stopping, augment, ...) and
    any keyword of `fit_array` (device, precision, checkpoint, resume, progress, ...)."""
    settings = {name: options.pop(name) for name in _MEMBER_SETTINGS & options.keys()}
    (result,) = fit_array(SoloArray(model, optimizer), [Member(train, val, epochs, **settings)], batch_size=batch_size, **options)
    return result
