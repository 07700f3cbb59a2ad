"""An ablation's progress bar, counted in member-epochs (a fused unit of K runs trains K per
epoch) and moving within epochs, fed from the process that trains: this one, a local worker
(through a queue), or, for Ray tasks, the unit's whole budget once it returns."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from tqdm.auto import tqdm

from pipeline.ablation.plan import Task

SEND_EVERY = 0.25  # seconds between a worker's messages to the bar

Sink = Callable[[float], None]
_sink: Sink | None = None  # where this process's trainings report; None: nowhere (a Ray task)


def budget(tasks: Sequence[Task]) -> int:
    """The member-epochs `tasks` may train: each run's `train.epochs` (early stopping trains fewer)."""
    return sum(task.config.train.epochs for task in tasks)


def report(member_epochs: float) -> None:
    """Count `member_epochs` as done, on the bar of the ablation this process trains for."""
    if _sink is not None and member_epochs > 0:
        _sink(member_epochs)


class Counted:
    """A unit's sink: reports member-epochs to the ablation's bar and keeps their sum."""

    def __init__(self) -> None:
        self.total = 0.0

    def __call__(self, member_epochs: float) -> None:
        self.total += member_epochs
        report(member_epochs)


@contextmanager
def reporting_to(sink: Sink) -> Iterator[None]:
    """Send this process's `report`s to `sink` meanwhile."""
    global _sink
    before, _sink = _sink, sink
    try:
        yield
    finally:
        _sink = before


class Sender:
    """A worker's sink: sums what it hears and puts it on the parent's queue at most every
    `SEND_EVERY` seconds; `flush` sends the rest."""

    def __init__(self, queue: Any) -> None:
        self.queue, self.pending, self.sent = queue, 0.0, time.monotonic()

    def __call__(self, member_epochs: float) -> None:
        self.pending += member_epochs
        if time.monotonic() - self.sent >= SEND_EVERY:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.queue.put(self.pending)
        self.pending, self.sent = 0.0, time.monotonic()


def start_sending(queue: Any) -> None:
    """In a local worker: report to the parent through `queue`."""
    global _sink
    _sink = Sender(queue)


def flush() -> None:
    """Send what this worker heard since its last message (a unit ends)."""
    if isinstance(_sink, Sender):
        _sink.flush()


@contextmanager
def receiving(queue: Any, sink: Sink) -> Iterator[None]:
    """Feed `sink` from `queue` in a thread while the workers run; the last messages too."""
    def drain() -> None:
        while (item := queue.get()) is not None:
            sink(item)

    thread = threading.Thread(target=drain, name="ablation-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        queue.put(None)
        thread.join()


class ProgressBar:
    """The bar: member-epochs done of the runs' budget, with one decimal while epochs run."""

    def __init__(self, tasks: Sequence[Task], enabled: bool) -> None:
        self.total = budget(tasks)
        self.bar = tqdm(
            total=self.total, desc="ablation", disable=not enabled,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total} member-epochs [{elapsed}<{remaining}]",
        )

    def __call__(self, member_epochs: float) -> None:
        self.bar.update(min(member_epochs, self.total - self.bar.n))  # steps' fractions may sum a hair past an epoch

    def close(self) -> None:
        self.bar.close()
