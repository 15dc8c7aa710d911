"""What an exported model's outputs mean: its task from the metadata, whether the outputs fit it, and the files it writes.

The task is read from the metadata (`task`, written by `netdsl export`); a model without one is read as a
classifier. The task's own presentation code (netdsl.tasks, numpy only) turns outputs into results, so
`netdsl infer` and `netdsl predict` show the same things. Torch-free.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from netdsl.errors import input_error
from netdsl.layers.base import fmt_shape
from netdsl.runtime.session import Model

if TYPE_CHECKING:
    from netdsl.tasks import Task

PICTURES = {"segmentation": (3,), "reconstruction": (2, 3)}  # task -> per-sample output dims it writes as PNGs (C x H x W, C x L)
MASK_CLASSES = 256  # a palette PNG holds class indices 0..255


def model_task(model: Model) -> Task:
    """The task that presents the model's outputs, as its metadata records it (classification when none is recorded)."""
    from netdsl.tasks import TASKS, serving_task

    settings = model.info.task if model.info is not None else None
    classes = list(model.info.classes or []) if model.info is not None else []
    if settings is None:
        return serving_task(None, classes)
    name = settings.get("name") if isinstance(settings, dict) else None
    if not isinstance(name, str):
        raise input_error(model.path, f"the metadata's task is not a task name with options: {settings!r}")
    if name not in TASKS:
        raise input_error(
            model.path,
            f"the model records the task '{name}', which this netdsl does not serve (it serves {', '.join(TASKS)}); "
            f"it was exported by netdsl {model.info.netdsl_version if model.info else '?'}",
        )
    return serving_task(settings, classes)


def fit_output(model: Model, task: Task, outputs: np.ndarray) -> np.ndarray:
    """The outputs (N x ...) as the task reads them (N x classes for classification and multilabel), or a one-line error."""
    shape = outputs.shape[1:]
    if task.name in ("classification", "multilabel"):
        if sum(d > 1 for d in shape) > 1:  # N x K x 1 x 1 (a conv head without flatten) is still one score per class
            raise _misfit(model, task.name, shape, "one score per class (an output of N x classes)")
        return outputs.reshape(len(outputs), -1)
    if task.name == "segmentation":
        if len(shape) < 2:
            raise _misfit(model, task.name, shape, "a score map per class (C x H x W)")
        if len(shape) in PICTURES[task.name] and shape[0] > MASK_CLASSES:
            raise _misfit(model, task.name, shape, f"at most {MASK_CLASSES} class maps (a mask PNG holds class indices 0 to {MASK_CLASSES - 1})")
    if task.name == "reconstruction" and len(shape) not in PICTURES[task.name]:
        raise _misfit(model, task.name, shape, "an image (C x H x W) or a signal (C x L) to write")
    return outputs


def _misfit(model: Model, task: str, shape: tuple[int, ...], needs: str) -> Exception:
    if model.info is None:
        whose = "a model without netdsl metadata is read as a classifier, which needs"
    elif model.info.task is None:
        whose = "the model records no task, so it is read as a classifier, which needs"
        needs += "; set train.task in its spec and export it again"
    else:
        whose = f"the model's task, {task}, needs"
    return input_error(model.path, f"the model outputs {fmt_shape(shape) if shape else 'a scalar'} per input, but {whose} {needs}")


def check_finite(x: np.ndarray, labels: list[str], what: str) -> None:
    """Refuse NaN or infinite values, naming the first input that has them (`what`: input or output)."""
    bad = ~np.isfinite(x.reshape(len(x), -1))
    for label, row in zip(labels, bad):
        if row.any():
            count = f"{int(row.sum())} of its {row.size} values"
            if what == "input":
                raise input_error(label, f"the input holds NaN or infinite values ({count}); give finite values in [0, 1]")
            raise input_error(label, f"the model's output for this input is not finite ({count} are NaN or infinite); nothing was written")


def writes_pictures(task: Task, outputs: np.ndarray) -> bool:
    return outputs.ndim - 1 in PICTURES.get(task.name, ())


def picture_folder(out: str | Path | None, model_path: str, inputs: list[str], labels: list[str]) -> Path:
    """Where the PNGs go (default: predictions/ beside the model), created; refused if a PNG would replace an input."""
    from netdsl.runtime.pictures import output_name

    folder = Path(out) if out is not None else Path(model_path).parent / "predictions"
    where = "--out" if out is not None else str(folder)
    if folder.exists() and not folder.is_dir():
        raise input_error(where, f"'{folder}' is not a folder; give a folder for the PNGs")
    given = {Path(p).resolve() for p in inputs}
    for label in labels:
        target = (folder / output_name(label)).resolve()
        if target in given:
            raise input_error(where, f"writing {target.name} into '{folder}' would replace the input {label}; choose another --out")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise input_error(where, f"cannot create the folder '{folder}': {exc.strerror}") from None
    return folder


def write_outputs(task: Task, outputs: np.ndarray, labels: list[str], folder: Path) -> list[str]:
    """One PNG per sample (a palette mask for segmentation, the image for reconstruction); their paths."""
    from netdsl.runtime.pictures import write_pictures

    try:
        return [str(p) for p in write_pictures(task, outputs, labels, folder)]
    except OSError as exc:
        raise input_error(str(folder), f"cannot write the PNGs: {exc.strerror or exc}") from None
