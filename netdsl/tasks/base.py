"""The task contract: what a kind of learning problem asks of the data, the loss, the metrics and the output.

A task is to the trainer what a layer type is to the compiler: one small registered class with its options
(the schema fragment of `train.task`), the targets it needs from a source, its losses and metrics, and how a
prediction is shown. The loop knows none of them. This module and the tasks import torch only inside methods,
so `netdsl infer` (onnxruntime, no torch) presents outputs with the same code.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from netdsl.errors import Diagnostic, Loc, SpecError, did_you_mean
from netdsl.layers.base import fmt_shape
from netdsl.tasks.targets import Targets

if TYPE_CHECKING:
    import numpy as np
    import torch

    from netdsl.ir import Graph

Shape = tuple[int, ...]
LossFn = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]

TASKS: dict[str, type[Task]] = {}


def register(cls: type[Task]) -> type[Task]:
    """Class decorator: make a task available as `train.task: NAME`."""
    if cls.name in TASKS:
        raise ValueError(f"task '{cls.name}' is registered twice")
    TASKS[cls.name] = cls
    return cls


def task_class(name: str, where: Loc) -> type[Task]:
    if name not in TASKS:
        raise SpecError([Diagnostic(where, f"unknown task '{name}'{did_you_mean(name, list(TASKS))} (tasks: {', '.join(TASKS)})")])
    return TASKS[name]


class Task:
    """Base of every task. Subclasses set the class attributes and override what differs."""

    name: ClassVar[str] = ""
    doc: ClassVar[str] = ""
    #: JSON Schema properties of the task's own options (`train.task: {name: segmentation, ignore_index: 255}`)
    options: ClassVar[dict[str, Any]] = {}
    #: loss names this task accepts; the first is its default
    losses: ClassVar[tuple[str, ...]] = ()
    #: metric names this task computes; `default_metrics` are reported when train.metrics is not given
    metrics: ClassVar[tuple[str, ...]] = ()
    default_metrics: ClassVar[tuple[str, ...]] = ()
    #: metrics where higher is better (checkpoint/early-stopping mode `auto` maximizes them)
    higher_is_better: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, settings: dict[str, Any], graph: Graph, classes: list[str], loss: str = "") -> None:
        self.settings = settings
        self.loss = loss or self.losses[0]
        self.graph = graph
        self.classes = list(classes)
        self.output_shape: Shape = graph.output_shape

    @classmethod
    def for_serving(cls, settings: dict[str, Any], classes: list[str]) -> Task:
        """A task that only shows outputs (present, line, picture): what `netdsl infer` builds from an ONNX file's metadata."""
        task = cls.__new__(cls)
        task.settings, task.classes, task.loss = dict(settings), list(classes), cls.losses[0]
        return task

    # -- what the data must give --------------------------------------------------------------------------
    def targets(self) -> Targets:
        return Targets("class", output_at=self.last_layer())

    def last_layer(self) -> str:
        """Where the network's output layer is written, for errors about target shapes."""
        node = self.graph.node(self.graph.output)
        return f"{node.loc} {node.op} '{node.name}'"

    @classmethod
    def suits(cls, output: Shape, input_shape: Shape) -> bool:
        """Whether an output of this shape (for this input) points to this task when none is given."""
        return False

    def check(self, classes: list[str]) -> None:
        """Raise a SpecError located at the output layer when the network's outputs cannot serve this task."""

    def output_error(self, message: str, node: str | None = None) -> SpecError:
        last = self.graph.node(node or self.graph.output)
        return SpecError([Diagnostic(last.loc, f"{last.op} '{last.name}': {message}")])

    # -- training -----------------------------------------------------------------------------------------
    def target(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training target of a batch from its (augmented, not normalized) input and the source's y."""
        return y

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        """The network's input before normalization (denoising corrupts it; others pass it through)."""
        return x

    def check_batch(self, y: torch.Tensor, where: str) -> None:
        """Raise a DataError for targets this task cannot use (e.g. mask values >= the class count)."""

    def loss_fn(self, cfg: dict[str, Any], device: torch.device) -> LossFn:
        raise NotImplementedError

    def meter(self, metrics: list[str]) -> Meter:
        raise NotImplementedError

    # -- showing outputs (numpy only: `netdsl infer` has no torch) ---------------------------------------
    def present(self, output: np.ndarray, classes: list[str], top: int = 3) -> list[dict[str, Any]]:
        """One JSON-able result per sample of a batch of raw network outputs."""
        import numpy as np

        return [{"output": np.asarray(o).round(6).tolist()} for o in output]

    def line(self, result: dict[str, Any]) -> str:
        """One result as a short line for the terminal."""
        return ", ".join(f"{k} {v}" for k, v in result.items() if k != "input")


class Meter:
    """Running sums over a pass through a split; every key from the start so an all-reduce sums the same keys."""

    def __init__(self, metrics: list[str], keys: list[str]) -> None:
        self.metrics = list(metrics)
        self.sums: dict[str, float] = dict.fromkeys(["loss", "count", *keys], 0.0)

    def add(self, loss: torch.Tensor, out: torch.Tensor, target: torch.Tensor, x: torch.Tensor | None = None) -> None:
        """A batch: its mean loss, the main output, the target and the network's input before normalization."""
        n = float(len(target))
        self.sums["loss"] += float(loss) * n
        self.sums["count"] += n
        for key, value in self.measure(out, target, x).items():
            self.sums[key] = self.sums.get(key, 0.0) + value

    def measure(self, out: torch.Tensor, target: torch.Tensor, x: torch.Tensor | None) -> dict[str, float]:
        """This batch's contributions to the sums (besides loss and count)."""
        return {}

    def merge(self, other: dict[str, float]) -> None:
        for k, v in other.items():
            self.sums[k] = self.sums.get(k, 0.0) + v

    def fresh(self) -> Meter:
        """An empty meter of the same kind (to hold reduced sums)."""
        other = object.__new__(type(self))
        other.__dict__.update(self.__dict__)
        other.sums = dict.fromkeys(self.sums, 0.0)
        return other

    def result(self) -> dict[str, float]:
        """Loss and the chosen metrics as means over the samples."""
        count = max(self.sums["count"], 1.0)
        return {"loss": self.sums["loss"] / count} | {m: self.sums.get(m, 0.0) / count for m in self.metrics}

    def details(self, classes: list[str]) -> dict[str, Any]:
        """Extra figures for results.json and `netdsl eval` (per-class tables); none by default."""
        return {}


def shape_text(shape: Shape) -> str:
    return fmt_shape(shape)


def psnr(mse: float, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB for a mean squared error (data range `peak`); 100 dB for a perfect match."""
    return 100.0 if mse <= 1e-10 else 10.0 * math.log10(peak * peak / mse)


def regression_loss(name: str) -> LossFn:
    from torch import nn

    return {"mse": nn.MSELoss, "l1": nn.L1Loss, "smooth_l1": nn.SmoothL1Loss}[name]()
