"""`netdsl infer`: what an exported model makes of images or .npy arrays, by the task its metadata records.

classification: the top-k classes; segmentation: class pixel fractions and a palette mask PNG per input;
reconstruction: the output image; regression: the values; multilabel: the classes that are on. The task's
own presentation code (netdsl.tasks) reads the outputs, so `netdsl predict` shows the same. onnxruntime,
numpy and Pillow only.

Images are converted to the model's channel count (Pillow's "L" is ITU-R 601 luma, as training converts),
resized to its input size, scaled to [0, 1] and normalized with the mean and std recorded in the model's
metadata. A .npy array holds values on the same [0, 1] scale (uint8 pixels are divided by 255), one sample
(C x H x W) or a stack (N x C x H x W), and is normalized the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from netdsl.errors import input_error
from netdsl.runtime.input_paths import CHUNK_FILES, expand_inputs, input_files
from netdsl.runtime.inputs import read_inputs
from netdsl.runtime.serving import check_finite, fit_output, model_task, picture_folder, write_outputs, writes_pictures
from netdsl.runtime.session import Model, open_model

if TYPE_CHECKING:
    from netdsl.tasks import Task

DEFAULT_BATCH = 32


@dataclass(frozen=True)
class Prediction:
    """What the model makes of one input: the task's figures (`result`, as Task.present gives them) and their line.

    `top` (classification only): (class index, class name, probability) best first, unrounded; `output_png`: the
    mask or image written for this input (segmentation, reconstruction).
    """

    source: str
    text: str
    result: dict[str, Any]
    top: list[tuple[int, str, float]] = field(default_factory=list)
    output_png: str | None = None

    def __str__(self) -> str:
        return f"{self.source}: {self.text}" + (f" -> {self.output_png}" if self.output_png else "")

    def json(self) -> dict[str, Any]:
        """The result as `--json` prints it: the input, the task's figures, and the PNG where one was written."""
        return {"input": self.source, **self.result} | ({"output_png": self.output_png} if self.output_png else {})


def sample_shape(model: Model) -> tuple[int, ...]:
    """The per-sample input shape (without the batch axis), from the metadata or else the graph."""
    if model.info is not None:
        return tuple(int(d) for d in model.info.inputs[0].shape[1:])
    dims = model.input_shape[1:]
    if not all(isinstance(d, int) for d in dims):
        raise input_error(model.input_name, f"the model's input {model.input_shape} has dynamic sizes besides the batch; cannot size inputs")
    return tuple(int(d) for d in dims)


def normalize(x: np.ndarray, model: Model) -> np.ndarray:
    """(x - mean) / std per channel, as recorded at export; unchanged for a model without that record."""
    recorded = model.info.normalize if model.info is not None else None
    if not recorded:
        return x
    view = (1, -1) + (1,) * (x.ndim - 2)
    mean = np.asarray(recorded["mean"], dtype=np.float32).reshape(view)
    std = np.asarray(recorded["std"], dtype=np.float32).reshape(view)
    return (x - mean) / std


def run_batches(model: Model, x: np.ndarray, batch: int) -> np.ndarray:
    """Model outputs for every sample of x, `batch` at a time (the last batch padded for a fixed-batch model)."""
    fixed = model.fixed_batch
    outputs = []
    for start in range(0, len(x), batch):
        chunk = x[start : start + batch]
        n = len(chunk)
        if fixed is not None and n < fixed:
            chunk = np.concatenate([chunk, np.zeros((fixed - n, *chunk.shape[1:]), dtype=chunk.dtype)])
        try:
            result = model.session.run([model.output_name], {model.input_name: np.ascontiguousarray(chunk)})[0]
        except Exception as exc:  # onnxruntime's InvalidArgument, Fail, ...: a foreign model that wants other inputs
            raise input_error(model.path, f"onnxruntime cannot run it on these inputs ({type(exc).__name__}: {str(exc).strip()[:200]})") from None
        outputs.append(result[:n])
    return np.concatenate(outputs)


def probabilities(logits: np.ndarray) -> np.ndarray:
    """Softmax over classes, unless the model already ends in one (rows of non-negative values summing to 1)."""
    if logits.min() >= 0 and np.allclose(logits.sum(axis=1), 1, atol=1e-3):
        return logits
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def infer(
    model_path: str | os.PathLike[str],
    inputs: list[str],
    *,
    provider: str = "auto",
    batch: int | None = None,
    top: int = 5,
    out: str | os.PathLike[str] | None = None,
) -> tuple[Model, list[Prediction]]:
    """What the model makes of each input, by its task; segmentation masks and reconstructions are written as PNGs into
    `out` (default: predictions/ beside the model). An input may be a file, a folder (every image and .npy array inside)
    or a glob (`imgs/*.png`), expanded here in name order. Also returns the model (which provider ran)."""
    if top < 1:
        raise input_error("--top", f"--top must be >= 1; got {top}")
    if batch is not None and batch < 1:
        raise input_error("--batch", f"--batch must be >= 1; got {batch}")
    model = open_model(model_path, provider)
    task = model_task(model)
    fixed = model.fixed_batch
    if fixed is not None and batch is not None and batch != fixed:
        raise input_error("--batch", f"--batch {batch}: {model_path} was exported with a fixed batch of {fixed}")
    files = input_files(expand_inputs(list(inputs)))  # folders and quoted globs as their files, sorted
    predictions: list[Prediction] = []
    for start in range(0, len(files), CHUNK_FILES):  # a folder of any size: read, run and answered a chunk at a time
        chunk = files[start : start + CHUNK_FILES]
        x, labels = read_inputs(chunk, sample_shape(model))
        check_finite(x, labels, "input")
        outputs = fit_output(model, task, run_batches(model, normalize(x, model), batch or fixed or DEFAULT_BATCH))
        check_finite(outputs, labels, "output")
        if task.name == "classification":
            predictions += classify(task, outputs, labels, top)
            continue
        results = task.present(outputs, task.classes, top)
        pngs: list[str | None] = [None] * len(labels)
        if writes_pictures(task, outputs):
            folder = picture_folder(Path(out) if out is not None else None, model.path, files, labels)
            pngs = list(write_outputs(task, outputs, labels, folder))
        predictions += [Prediction(label, task.line(r), r, output_png=png) for label, r, png in zip(labels, results, pngs)]
    return model, predictions


def classify(task: Task, outputs: np.ndarray, labels: list[str], top: int) -> list[Prediction]:
    """The top classes per input; the line shows unrounded probabilities, as `netdsl infer` always has."""
    scores = probabilities(outputs)
    with np.errstate(divide="ignore"):  # Task.present softmaxes logits; log-probabilities give the probabilities back
        results = task.present(np.log(scores), task.classes, top)
    predictions = []
    for label, row, result in zip(labels, scores, results):
        best = [(int(t["index"]), str(t["class"]), float(row[t["index"]])) for t in result["top"]]
        predictions.append(Prediction(label, ", ".join(f"{name} ({p:.1%})" for _, name, p in best), result, best))
    return predictions
