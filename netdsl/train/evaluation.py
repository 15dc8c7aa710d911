"""`netdsl eval` and `netdsl predict`: trained weights back on a spec's test split or on single images."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from netdsl.errors import Diagnostic, Loc, SpecError
from netdsl.train.api import prepare, require_data
from netdsl.train.files import WriteFailed
from netdsl.train.tasks import make_task


def evaluate(spec: str | os.PathLike[str], weights: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, **options: Any) -> dict[str, Any]:
    """Test-split loss and metrics for a spec with trained weights, and pictures of the result beside them.

    classification: a confusion matrix PNG; segmentation: per-class IoU and example predictions (image | target |
    prediction); reconstruction: example outputs (input | output | target).
    """
    import torch

    from netdsl.train.checkpoint import trained_module
    from netdsl.train.loop import data_workers
    from netdsl.train.plots import plot_confusion, plot_examples
    from netdsl.train.sources import normalization, open_source
    from netdsl.train.splits import Reading

    prep = prepare(spec, **options)
    require_data(prep)
    model = trained_module(prep.graph, Path(weights))  # a bad weights file fails before the data is read
    kind = make_task(prep.cfg, prep.graph, []).name
    picture = Path(out) if out else Path(weights).with_name("confusion.png" if kind == "classification" else "examples.png")
    if kind in ("classification", "segmentation", "reconstruction"):
        _check_can_write(picture)  # an unwritable folder fails before the test split is evaluated
    task = make_task(prep.cfg, prep.graph, [])
    data = open_source(prep.cfg["data"], prep.graph.input_shape, prep.base, task.targets())
    task.classes = list(data.classes)
    task.check(data.classes)
    reading = Reading(batch_size=256, workers=data_workers(prep.cfg["workers"], 1, data.streamed))
    mean_, std_ = normalization(prep.cfg["data"], data.train, prep.graph.input_shape, reading)
    shape = (1, -1, *([1] * (len(prep.graph.input_shape) - 1)))
    mean, std = torch.tensor(mean_).view(shape), torch.tensor(std_).view(shape)
    loss_fn = task.loss_fn(prep.cfg["loss"], torch.device("cpu"))  # of the main output: the function that is exported
    n_classes = len(data.classes)
    matrix = [[0] * n_classes for _ in range(n_classes)]
    meter = task.meter(prep.cfg["metrics"])
    examples: list[tuple[Any, Any, Any]] = []
    with torch.inference_mode(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(prep.cfg["seed"])  # the same corrupted inputs as the trainer's evaluations
        for x, y, _ in data.test.batches(reading, epoch=0, seed=0, shuffle=False):
            if not len(y):
                continue
            task.check_batch(y, "train.data")
            target = task.target(x, y)
            seen = task.corrupt(x) if task.name == "reconstruction" else x
            output = model((seen - mean) / std)
            meter.add(loss_fn(output, target), output.float(), target, seen)
            if task.name == "classification":
                for t, p in zip(y.tolist(), output.argmax(1).tolist()):
                    if t < n_classes and p < n_classes:
                        matrix[t][p] += 1
            if len(examples) < EXAMPLES and task.name in ("segmentation", "reconstruction"):
                for i in range(min(len(x), EXAMPLES - len(examples))):
                    shown = task.picture(output[i].numpy())  # type: ignore[attr-defined]
                    examples.append((seen[i].numpy(), target[i].numpy(), shown))
    data.close()
    n = len(data.test)
    result: dict[str, Any] = {f"test_{k}": v for k, v in meter.result().items()} | {"test_samples": n, "task": task.name}
    result |= {f"test_{k}": v for k, v in meter.details(task.classes).items()}
    stem = picture
    try:
        if task.name == "classification":
            plot_confusion(matrix, data.classes, stem, f"{prep.graph.name}: test confusion matrix")
            result |= {"confusion_matrix": matrix, "confusion_png": str(stem)}
        elif examples:
            plot_examples(examples, task.name, stem, f"{prep.graph.name}: test examples", task.classes)
            result["examples_png"] = str(stem)
    except WriteFailed as exc:
        raise PictureNotWritten(exc.path, exc.reason, result) from None
    return result


class PictureNotWritten(WriteFailed):
    """`netdsl eval` computed its metrics (`.result`) but could not write its picture."""

    def __init__(self, path: Path, reason: str, result: dict[str, Any]) -> None:
        super().__init__(path, reason, "give --out")
        self.result = result


def _check_can_write(path: Path) -> None:
    """Create and remove a temp file beside `path`: the folder takes new files (a read-only one is refused at once)."""
    from netdsl.train.files import temp_name

    probe = temp_name(path)
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise WriteFailed(path, exc.strerror or str(exc), "give --out") from None


EXAMPLES = 6  # test samples drawn by `netdsl eval` (segmentation, reconstruction)


class Predictions(list[dict[str, Any]]):
    """predict()'s results, one dict per input, with the task that reads them (`task.line(result)`)."""

    task: Any = None


def predict(
    spec: str | os.PathLike[str], weights: str | os.PathLike[str], images: list[str], top: int = 3, out: str | os.PathLike[str] | None = None, **options: Any
) -> Predictions:
    """What the task makes of each image file or .npy sample (a stacked array gives one result per sample, `file[i]`).

    classification: the top-k classes; segmentation: class pixel fractions, and mask PNGs (palette) in `out`;
    reconstruction: output images in `out`; regression: the values; multilabel: the classes that are on.
    Inputs are read as `netdsl infer` reads them (netdsl.inputs) and normalized as the spec's data section says.
    """
    import torch

    from netdsl.inputs import read_inputs
    from netdsl.runtime.serving import check_finite, picture_folder, write_outputs, writes_pictures
    from netdsl.train.checkpoint import trained_module
    from netdsl.train.sources import load_splits

    if top < 1:
        raise SpecError([Diagnostic(Loc("--top", 1, 1), f"--top must be >= 1; got {top}")])
    prep = prepare(spec, **options)
    task = make_task(prep.cfg, prep.graph, [])
    normalize = prep.cfg["data"]["normalize"]
    if isinstance(normalize, dict) and prep.cfg["data"].get("classes"):
        mean, std, classes = normalize["mean"], normalize["std"], prep.cfg["data"]["classes"]
    else:
        require_data(prep)
        data = load_splits(prep.cfg["data"], prep.graph.input_shape, prep.base, targets=task.targets())
        mean, std, classes = data.mean, data.std, data.classes
        data.close()
    x, labels = read_inputs(images, prep.graph.input_shape)
    check_finite(x, labels, "input")
    model = trained_module(prep.graph, Path(weights))
    shape = (1, -1, *([1] * (len(prep.graph.input_shape) - 1)))
    mean_t, std_t = torch.tensor(mean).view(shape), torch.tensor(std).view(shape)
    with torch.inference_mode():
        outputs = torch.cat([model((batch - mean_t) / std_t) for batch in torch.from_numpy(x).split(256)]).numpy()
    check_finite(outputs, labels, "output")
    results = Predictions({"input": label} | r for label, r in zip(labels, task.present(outputs, list(classes), top)))
    results.task = task
    if writes_pictures(task, outputs):
        folder = picture_folder(None if out is None else Path(out), str(Path(weights).parent / "weights"), images, labels)
        for r, path in zip(results, write_outputs(task, outputs, labels, folder)):
            r["output_png"] = path
    return results
