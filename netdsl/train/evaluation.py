"""`netdsl eval` and `netdsl predict`: trained weights back on a spec's test split or on single images."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from netdsl.atomic import WriteFailed, write_json
from netdsl.errors import Diagnostic, Loc, SpecError, input_error
from netdsl.tasks import make_task
from netdsl.train.api import prepare, require_data


def evaluate(
    spec: str | os.PathLike[str],
    weights: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    report: str | os.PathLike[str] | None = None,
    batch_size: int = 256,
    device: str = "cpu",
    **options: Any,
) -> dict[str, Any]:
    """Test-split loss and metrics for a spec with trained weights, with pictures and a JSON report beside them.

    classification: per-class precision/recall/F1 and a confusion matrix PNG; segmentation: per-class IoU and example
    predictions (image | target | prediction); reconstruction: example outputs (input | output | target). The result is
    also written to `report` (default: eval.json beside the picture).
    """
    import torch

    from netdsl.train.checkpoint import trained_module
    from netdsl.train.loop import data_workers
    from netdsl.train.plots import plot_confusion, plot_examples
    from netdsl.train.sources import normalization, open_source
    from netdsl.train.splits import Reading

    prep = prepare(spec, **options)
    require_data(prep)
    where = run_device(device)
    model = trained_module(prep.graph, Path(weights)).to(where)  # a bad weights file fails before the data is read
    kind = make_task(prep.cfg, prep.graph, []).name
    picture = Path(out) if out else Path(weights).with_name("confusion.png" if kind == "classification" else "examples.png")
    report_path = Path(report) if report else picture.with_name("eval.json")
    if kind in ("classification", "segmentation", "reconstruction"):
        _check_can_write(picture)  # an unwritable folder fails before the test split is evaluated
    _check_can_write(report_path, "give --report")
    task = make_task(prep.cfg, prep.graph, [])
    data = open_source(prep.cfg["data"], prep.graph.input_shape, prep.base, task.targets())
    task.classes = list(data.classes)
    task.check(data.classes)
    reading = Reading(batch_size=batch_size, workers=data_workers(prep.cfg["workers"], 1, data.streamed))
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
            output = model(((seen - mean) / std).to(where)).float().cpu()
            meter.add(loss_fn(output, target), output, target, seen)
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
    if task.name == "classification":
        result |= {f"test_{k}": v for k, v in classification_report(matrix, list(data.classes)).items()}
    try:
        if task.name == "classification":
            plot_confusion(matrix, data.classes, picture, f"{prep.graph.name}: test confusion matrix")
            result |= {"confusion_matrix": matrix, "confusion_png": str(picture)}
        elif examples:
            plot_examples(examples, task.name, picture, f"{prep.graph.name}: test examples", task.classes)
            result["examples_png"] = str(picture)
    except WriteFailed as exc:
        raise PictureNotWritten(exc.path, exc.reason, result) from None
    result |= {"spec": str(spec), "weights": str(weights), "report_json": str(report_path)}
    try:
        write_json(report_path, result)
    except WriteFailed as exc:
        raise PictureNotWritten(exc.path, exc.reason, result, "give --report") from None
    return result


def classification_report(matrix: list[list[int]], classes: list[str]) -> dict[str, Any]:
    """Per-class precision, recall, F1 and support from a confusion matrix (rows: true class, columns: predicted), with
    their macro and support-weighted averages, as scikit-learn's classification_report computes them (0 where undefined)."""
    rows: list[dict[str, Any]] = []
    for i, name in enumerate(classes):
        support, predicted, hits = sum(matrix[i]), sum(row[i] for row in matrix), matrix[i][i]
        precision = hits / predicted if predicted else 0.0
        recall = hits / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append({"class": name, "precision": precision, "recall": recall, "f1": f1, "support": support})
    total = sum(r["support"] for r in rows)

    def average(weights: list[float]) -> dict[str, Any]:
        scale = sum(weights) or 1.0
        return {k: sum(w * r[k] for w, r in zip(weights, rows)) / scale for k in ("precision", "recall", "f1")} | {"support": total}

    return {
        "per_class": rows,
        "macro_avg": average([1.0] * len(rows)),
        "weighted_avg": average([float(r["support"]) for r in rows]),
    }


def report_lines(result: dict[str, Any]) -> list[str]:
    """The per-class table of a classification result, laid out as scikit-learn's classification_report."""
    rows = result.get("test_per_class") or []
    if not rows or "precision" not in rows[0]:
        return []
    width = max(len("weighted avg"), *(len(str(r["class"])) for r in rows))
    head = f"{'':>{width}}  {'precision':>9}  {'recall':>9}  {'f1-score':>9}  {'support':>9}"

    def line(name: str, r: dict[str, Any]) -> str:
        return f"{name:>{width}}  {r['precision']:>9.4f}  {r['recall']:>9.4f}  {r['f1']:>9.4f}  {r['support']:>9}"

    total = result["test_macro_avg"]["support"]
    accuracy = sum(r["recall"] * r["support"] for r in rows) / (total or 1)
    return [
        head,
        "",
        *(line(str(r["class"]), r) for r in rows),
        "",
        f"{'accuracy':>{width}}  {'':>9}  {'':>9}  {accuracy:>9.4f}  {total:>9}",
        line("macro avg", result["test_macro_avg"]),
        line("weighted avg", result["test_weighted_avg"]),
    ]


def run_device(name: str) -> Any:
    """The torch device `--device` names for eval and predict (auto: CUDA when torch sees it, else the CPU)."""
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        raise input_error("--device", "device 'cuda' was asked for, but torch sees no CUDA device")
    return torch.device("cuda" if name != "cpu" and torch.cuda.is_available() else "cpu")


class PictureNotWritten(WriteFailed):
    """`netdsl eval` computed its metrics (`.result`) but could not write its picture."""

    def __init__(self, path: Path, reason: str, result: dict[str, Any], hint: str = "give --out") -> None:
        super().__init__(path, reason, hint)
        self.result = result


def _check_can_write(path: Path, hint: str = "give --out") -> None:
    """Create and remove a temp file beside `path`: the folder takes new files (a read-only one is refused at once)."""
    from netdsl.atomic import temp_name

    probe = temp_name(path)
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise WriteFailed(path, exc.strerror or str(exc), hint) from None


EXAMPLES = 6  # test samples drawn by `netdsl eval` (segmentation, reconstruction)


class Predictions(list[dict[str, Any]]):
    """predict()'s results, one dict per input, with the task that reads them (`task.line(result)`)."""

    task: Any = None
    notes: tuple[str, ...] = ()  # what folders and globs gave: `imgs: 12 files (folder)`


def predict(
    spec: str | os.PathLike[str],
    weights: str | os.PathLike[str],
    images: list[str],
    top: int = 3,
    out: str | os.PathLike[str] | None = None,
    *,
    batch_size: int = 256,
    device: str = "cpu",
    **options: Any,
) -> Predictions:
    """What the task makes of each image file or .npy sample (a stacked array gives one result per sample, `file[i]`);
    a folder stands for every image and .npy array inside it, a glob for the files it matches (netdsl.runtime.input_paths).

    classification: the top-k classes; segmentation: class pixel fractions, and mask PNGs (palette) in `out`;
    reconstruction: output images in `out`; regression: the values; multilabel: the classes that are on.
    Inputs are read as `netdsl infer` reads them (netdsl.runtime.inputs) and normalized as the spec's data section says.
    """
    import torch

    from netdsl.runtime.input_paths import CHUNK_FILES, expand_inputs, expansion_notes, input_files
    from netdsl.runtime.inputs import read_inputs
    from netdsl.runtime.serving import check_finite, picture_folder, write_outputs, writes_pictures
    from netdsl.train.checkpoint import trained_module
    from netdsl.train.sources import load_splits

    if top < 1:
        raise SpecError([Diagnostic(Loc.argument("--top"), f"--top must be >= 1; got {top}")])
    expanded = expand_inputs(list(images))
    images = input_files(expanded)
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
    where = run_device(device)
    model = trained_module(prep.graph, Path(weights)).to(where)
    shape = (1, -1, *([1] * (len(prep.graph.input_shape) - 1)))
    mean_t, std_t = torch.tensor(mean).view(shape), torch.tensor(std).view(shape)
    results = Predictions()
    results.task, results.notes = task, tuple(expansion_notes(expanded))
    for start in range(0, len(images), CHUNK_FILES):  # a folder of any size: read, run and answered a chunk at a time
        x, labels = read_inputs(images[start : start + CHUNK_FILES], prep.graph.input_shape)
        check_finite(x, labels, "input")
        with torch.inference_mode():
            outputs = torch.cat([model(((b - mean_t) / std_t).to(where)).float().cpu() for b in torch.from_numpy(x).split(batch_size)]).numpy()
        check_finite(outputs, labels, "output")
        chunk = [{"input": label} | r for label, r in zip(labels, task.present(outputs, list(classes), top))]
        if writes_pictures(task, outputs):
            folder = picture_folder(None if out is None else Path(out), str(Path(weights).parent / "weights"), images, labels)
            for r, path in zip(chunk, write_outputs(task, outputs, labels, folder)):
                r["output_png"] = path
        results += chunk
    return results
