"""Progress on a terminal: a bar per training epoch, and bars for data preparation; quiet on a pipe.

rich is imported only when the stream is a terminal, so logs piped to a file and the torch-free front end never load it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from netdsl.train.callbacks import Callback, RunInfo

REFRESH_PER_SECOND = 5  # rich redraws on its own thread; on_step only records numbers


def _columns(*kinds: str) -> list[Any]:
    """rich progress columns by name; defined here so that rich is imported only when a bar is really drawn."""
    from rich.progress import BarColumn, MofNCompleteColumn, ProgressColumn, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.text import Text

    class TrainStats(ProgressColumn):
        """The running metrics, learning rate and samples/s, formatted at refresh time rather than per step."""

        def render(self, task: Any) -> Text:
            f = task.fields
            parts = [f"{k} {v:.4f}" for k, v in f["metrics"].items()]
            if f["lr"] is not None:
                parts.append(f"lr {f['lr']:.2e}")
            seconds = time.monotonic() - f["started"]
            if f["samples"] and seconds > 0:
                parts.append(f"{f['samples'] / seconds:,.0f} samples/s")
            return Text(" ".join(parts))

    class Rate(ProgressColumn):
        """Items per second over rich's speed window."""

        def render(self, task: Any) -> Text:
            return Text(f"{task.speed:,.0f}/s" if task.speed else "")

    class Count(ProgressColumn):
        """The count so far, for a task of unknown length."""

        def render(self, task: Any) -> Text:
            return Text(f"{int(task.completed):,}")

    made: dict[str, Callable[[], Any]] = {
        "epoch": lambda: TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
        "description": lambda: TextColumn("{task.description}"),
        "spinner": SpinnerColumn,
        "bar": BarColumn,
        "of": MofNCompleteColumn,
        "count": Count,
        "stats": TrainStats,
        "rate": Rate,
        "elapsed": TimeElapsedColumn,
        "eta": lambda: TextColumn("ETA"),
        "remaining": TimeRemainingColumn,
    }
    return [made[kind]() for kind in kinds]


def _same_terminal(a: TextIO, b: TextIO) -> bool:
    try:
        return a is b or (a.isatty() and b.isatty() and os.ttyname(a.fileno()) == os.ttyname(b.fileno()))
    except (OSError, ValueError, AttributeError):
        return False


def _live_progress(stream: TextIO, columns: list[Any]) -> Any:
    """A started, transient rich Progress drawing on `stream`."""
    from rich.console import Console
    from rich.progress import Progress

    # prints to stdout/stderr go above the bar only where they would reach the same terminal anyway (never out of a redirected file)
    bar = Progress(
        *columns,
        console=Console(file=stream),
        refresh_per_second=REFRESH_PER_SECOND,
        transient=True,
        redirect_stdout=_same_terminal(sys.stdout, stream),
        redirect_stderr=_same_terminal(sys.stderr, stream),
    )
    bar.start()
    return bar


class ProgressBar(Callback):
    """A bar per epoch on a terminal (epoch, step/steps, running metrics, lr, samples/s, elapsed, ETA); nothing per batch on a pipe.

    The bar is cleared at the end of each epoch (the caller prints the epoch's line) and when the run ends.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = False
        self.epochs = 0
        self.steps = 0
        self.bar: Any = None
        self.task: Any = None
        self.epoch = -1
        self.epoch_started = time.monotonic()

    def on_start(self, info: RunInfo) -> None:
        self.tty = self.stream.isatty()
        self.epochs, self.steps = info.epochs, info.steps_per_epoch
        self.epoch_started = time.monotonic()

    def on_step(self, epoch: int, step: int, samples: int, metrics: dict[str, float], lr: float) -> None:
        if self.bar is None or epoch != self.epoch:
            if not self.tty:
                return
            self.open(epoch, step)
        self.bar.update(self.task, completed=step, samples=samples, metrics=dict(metrics), lr=lr)

    def open(self, epoch: int, step: int) -> None:
        """Start the epoch's bar at the step before `step`: a resumed epoch's bar starts where the run resumed."""
        self.close()
        self.epoch = epoch
        self.bar = _live_progress(self.stream, _columns("epoch", "bar", "of", "stats", "elapsed", "eta", "remaining"))
        fields = {"epoch": epoch + 1, "epochs": self.epochs, "metrics": {}, "lr": None, "samples": 0, "started": self.epoch_started}
        self.task = self.bar.add_task("train", total=self.steps, completed=step - 1, **fields)
        self.bar.tasks[0].start_time = self.epoch_started  # elapsed counts from the epoch's start, not from its first finished batch

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def on_epoch(self, row: dict[str, Any], history: list[dict[str, Any]]) -> None:
        self.close()
        self.epoch_started = time.monotonic()

    def on_end(self, state: str, results: dict[str, Any], history: list[dict[str, Any]]) -> None:
        self.close()


class TaskProgress:
    """What `task()` yields: call advance(n) as items are done."""

    def __init__(self, bar: Any = None, task_id: Any = None) -> None:
        self.count = 0
        self.bar, self.task_id = bar, task_id

    def advance(self, n: int = 1) -> None:
        self.count += n
        if self.bar is not None:
            self.bar.update(self.task_id, advance=n)


@contextmanager
def task(description: str, total: int | None, stream: TextIO | None = None, min_seconds: float = 1.0) -> Iterator[TaskProgress]:
    """Progress of a data-preparation step (listing folders, normalization statistics, packing shards).

    On a terminal: a transient bar with count/total, rate and ETA (a spinner and a count when total is None).
    When the step ends without an exception and took at least `min_seconds`, one line follows, on a terminal and on a pipe
    alike: "{description}: {count:,} in {seconds:.1f}s"; quicker steps leave no trace, so logs show only what cost time.
    """
    stream = stream if stream is not None else sys.stderr
    started = time.perf_counter()
    bar = None
    quiet = os.environ.get("RANK", "0") != "0"  # under torchrun, rank 0 alone reports
    if quiet:
        progress = TaskProgress()
    elif stream.isatty():
        kinds = (
            ("description", "bar", "of", "rate", "elapsed", "eta", "remaining") if total is not None else ("spinner", "description", "count", "rate", "elapsed")
        )
        bar = _live_progress(stream, _columns(*kinds))
        progress = TaskProgress(bar, bar.add_task(description, total=total))
    else:
        progress = TaskProgress()
    try:
        yield progress
    finally:
        if bar is not None:
            bar.stop()
    seconds = time.perf_counter() - started
    if seconds >= min_seconds and not quiet:
        stream.write(f"{description}: {progress.count:,} in {seconds:.1f}s\n")
        stream.flush()
