"""Tasks: what is learned from the data (`train.task`). One registered class per task, one file each.

| task | targets from the data | default loss | metrics |
|---|---|---|---|
| classification | a class index per sample | cross_entropy | accuracy, topK, mse, mae |
| segmentation | a class index per pixel (masks) | cross_entropy | miou, pixel_accuracy, dice |
| reconstruction | the input itself (noise: denoising) | mse | psnr, mae, mse, input_psnr |
| regression | float values of the output's shape | mse | mae, mse, rmse |
| multilabel | 0/1 per class | bce_with_logits | f1, precision, recall, exact_match |

Without `train.task` the task is inferred from the network's output and printed: a flat output is
classification, an output of the input's shape reconstruction, a map of the input's size with other channels
segmentation.
"""

from __future__ import annotations

from typing import Any

from netdsl.errors import Diagnostic, Loc, SpecError, did_you_mean
from netdsl.ir import Graph
from netdsl.tasks import classification, multilabel, reconstruction, regression, segmentation  # noqa: F401 -- registers them
from netdsl.tasks.base import TASKS, Meter, Task, task_class

__all__ = ["TASKS", "Meter", "Task", "infer_task", "make_task", "serving_task", "settle", "task_schema"]

LOSS_NAMES = ("cross_entropy", "mse", "bce_with_logits", "dice", "ce_dice", "l1", "smooth_l1")


def task_schema() -> dict[str, Any]:
    """`train.task`: a task name, or {name, ...its options} (every task's options listed; a task checks its own)."""
    options: dict[str, Any] = {}
    for cls in TASKS.values():  # without defaults: resolve() would fill one task's defaults into another's settings
        options.update({k: {p: v for p, v in schema.items() if p != "default"} for k, schema in cls.options.items()})
    names = {"enum": list(TASKS)}
    return {
        "anyOf": [names, {"type": "object", "additionalProperties": False, "required": ["name"], "properties": {"name": names, **options}}],
        "description": "what is learned: " + "; ".join(f"{n}: {c.doc}" for n, c in TASKS.items()) + " (default: inferred from the output's shape)",
    }


def infer_task(graph: Graph) -> tuple[str, str]:
    """The task an output shape points to, and why (for the line `netdsl train` prints)."""
    out, inp = graph.output_shape, graph.input_shape
    shown = f"the output {'x'.join(map(str, out))} for the input {'x'.join(map(str, inp))}"
    for name in ("classification", "reconstruction", "segmentation"):
        if TASKS[name].suits(out, inp):
            return name, shown
    node = graph.node(graph.output)
    raise SpecError([Diagnostic(node.loc, f"{node.op} '{node.name}': cannot tell the task from {shown}; set train.task ({', '.join(TASKS)})")])


def settle(cfg: dict[str, Any], graph: Graph, given: dict[str, Loc]) -> str:
    """Fill in the task and the settings that depend on it (loss, metrics, monitor modes) in resolved settings.

    `given` holds the locations of what the spec (or --set) wrote: train.task, train.loss.name, train.metrics,
    train.checkpoint.monitor, ... (absent: not given). Returns the line that says how the task was chosen.
    """
    raw = cfg.get("task")
    if raw is None:
        name, why = infer_task(graph)
        settings: dict[str, Any] = {"name": name}
        note = f"task: {name} (inferred from {why}; set train.task to choose)"
    else:
        settings = {"name": raw} if isinstance(raw, str) else dict(raw)
        name = settings["name"]
        note = f"task: {name}"
    cls = task_class(name, given.get("task", Loc("train.task", 1, 1)))
    for key in settings:
        if key != "name" and key not in cls.options:
            allowed = ", ".join(cls.options) or "none"
            raise _error(given, "task", f"task '{name}' has no option '{key}' (its options: {allowed})")
    for key, schema in cls.options.items():
        if key not in settings and "default" in schema:
            settings[key] = schema["default"]
    cfg["task"] = settings
    loss = cfg["loss"].setdefault("name", cls.losses[0])
    if loss not in cls.losses:
        raise _error(given, "loss.name", f"loss '{loss}' does not fit task '{name}'; use {' or '.join(cls.losses)}")
    metrics = cfg.get("metrics")
    if metrics is None:
        cfg["metrics"] = list(cls.default_metrics)
    else:
        for m in metrics:
            if not _knows(cls, m):
                raise _error(given, "metrics", f"metric '{m}' is not one of task '{name}''s ({', '.join(cls.metrics)}){did_you_mean(m, list(cls.metrics))}")
    weights = cfg["loss"].get("output_weights")
    if weights is not None and len(weights) != len(_outputs(graph)):
        raise _error(given, "loss.output_weights", f"{len(weights)} weight(s) for {len(_outputs(graph))} output(s) ({', '.join(_outputs(graph))})")
    known = {"loss", *cfg["metrics"]}
    for section in ("checkpoint", "early_stopping"):
        part = cfg.get(section)
        if part is None:
            continue
        monitor = part.setdefault("monitor", "val_loss")
        metric = monitor.split("_", 1)[1] if "_" in monitor else monitor
        if not monitor.startswith(("train_", "val_")) or metric not in known:
            options = [f"{p}_{m}" for p in ("val", "train") for m in sorted(known)]
            raise _error(given, f"{section}.monitor", f"'{monitor}' is not a reported metric{did_you_mean(monitor, options)} (reported: {', '.join(options)})")
        part.setdefault("mode", "max" if metric in cls.higher_is_better else "min")
    return note


def _knows(cls: type[Task], metric: str) -> bool:
    knows = getattr(cls, "knows", None)
    return bool(knows(metric)) if knows else metric in cls.metrics


def _outputs(graph: Graph) -> tuple[str, ...]:
    return graph.output_names


def _error(given: dict[str, Loc], key: str, message: str) -> SpecError:
    return SpecError([Diagnostic(given.get(key, Loc(f"train.{key}", 1, 1)), message)])


def serving_task(settings: dict[str, Any] | str | None, classes: list[str]) -> Task:
    """The task that shows an exported model's outputs, from its metadata (classification when the file names none)."""
    given = {"name": settings} if isinstance(settings, str) else dict(settings or {"name": "classification"})
    return TASKS[given.pop("name", "classification")].for_serving(given, classes)  # a KeyError for a name this netdsl lacks


def make_task(cfg: dict[str, Any], graph: Graph, classes: list[str]) -> Task:
    """The task object for settled settings (see `settle`)."""
    settings = dict(cfg["task"])
    cls = TASKS[settings.pop("name")]
    return cls(settings, graph, classes, cfg["loss"]["name"])
