"""`netdsl train`, `netdsl eval`, `netdsl predict`: from a spec file to a run directory and back."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from netdsl.errors import Diagnostic, Loc, SpecError, did_you_mean
from netdsl.ir import Graph
from netdsl.spec.formats import parse_tree
from netdsl.spec.load import load_tree, read_spec
from netdsl.spec.yaml_tree import loc_of, plain
from netdsl.train.callbacks import RunInfo
from netdsl.train.config import TRAIN_SCHEMA, resolve
from netdsl.train.tasks import make_task, settle


@dataclass
class Prepared:
    """A spec ready to train: its graph, resolved train settings, the resolved spec, and where relative paths start."""

    graph: Graph
    cfg: dict[str, Any]
    resolved: dict[str, Any]
    text: str
    base: Path
    where: Loc  # the spec's train: key (or its first line): where a missing training setting is reported
    task_note: str = ""  # how the task was chosen (`netdsl train` prints it)


def apply_settings(train: dict[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """`--set train.optimizer.lr=0.01` and `--epochs 3`: dotted keys under train."""
    out = copy.deepcopy(train)
    for dotted, value in settings.items():
        keys = dotted.split(".")[1:]
        node = out
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise SpecError([Diagnostic(Loc("--set", 1, 1), f"'{dotted}': '{key}' is not a section")])
        node[keys[-1]] = value
    problems = sorted(jsonschema.Draft202012Validator(TRAIN_SCHEMA).iter_errors(out), key=lambda e: list(e.absolute_path))
    if problems and settings:
        e = problems[0]
        where = ".".join(["train", *map(str, e.absolute_path)])
        hint = ""
        if e.validator == "additionalProperties":
            allowed = list(e.schema.get("properties", {})) if isinstance(e.schema, dict) else []
            extra = [k for k in e.instance if k not in allowed]
            hint = did_you_mean(extra[0], allowed) if extra else ""
        raise SpecError([Diagnostic(Loc("--set", 1, 1), f"{where}: {e.message}{hint}")])
    return out


def prepare(
    spec: str | os.PathLike[str], settings: Mapping[str, Any] | None = None, variables: Mapping[str, Any] | None = None, input_shape: str | None = None
) -> Prepared:
    text, name = read_spec(spec)
    tree = parse_tree(text, name)
    graph = load_tree(tree, name, input_shape=input_shape, variables=variables)
    train = apply_settings(plain(tree.get("train", {})), settings or {})
    cfg = resolve(train)
    base = Path(name).resolve().parent
    resolved = plain(dict(tree))
    resolved["input"] = "x".join(map(str, graph.input_shape))
    if "params" in resolved:
        resolved["params"] = {k: plain(graph.variables.get(k, v)) for k, v in resolved["params"].items()}  # list values too (SegNet's widths)
    resolved["import"] = [str((base / i).resolve()) if str(i).endswith((".yaml", ".yml", ".net")) else i for i in resolved.get("import", [])] or None
    resolved = {k: v for k, v in resolved.items() if v is not None}
    resolved["train"] = cfg
    where = loc_of(tree, ("train",), key=True) if isinstance(tree, dict) and "train" in tree else None
    note = settle(cfg, graph, _given(tree, train, settings or {}))
    resolved["train"] = cfg
    return Prepared(graph, cfg, resolved, text, base, where or Loc(name, 1, 1), note)


SETTLED = ("task", "loss.name", "loss.output_weights", "metrics", "checkpoint.monitor", "early_stopping.monitor")


def _given(tree: Any, train: dict[str, Any], settings: Mapping[str, Any]) -> dict[str, Loc]:
    """Where the spec (or --set) wrote each setting that the task settles, for errors about them."""
    out: dict[str, Loc] = {}
    for key in SETTLED:
        keys = key.split(".")
        node: Any = train
        for k in keys:
            node = node.get(k) if isinstance(node, dict) else None
        if node is None:
            continue
        flag = f"train.{key}"
        if any(s == flag or s.startswith(flag + ".") or flag.startswith(s + ".") for s in settings):
            out[key] = Loc("--set", 1, 1)
        else:
            loc = loc_of(tree, ("train", *keys))
            out[key] = loc or Loc(flag, 1, 1)
    return out


def _absolute_paths(cfg: dict[str, Any], base: Path) -> None:
    for key in ("path", "val_path", "test_path", "urls", "val_urls", "test_urls"):
        if key in cfg["data"] and "://" not in cfg["data"][key]:
            cfg["data"][key] = str((base / cfg["data"][key]).resolve())
    transfer = cfg.get("transfer")
    if transfer and "weights" in transfer:
        transfer["weights"] = str((base / transfer["weights"]).resolve())


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _differences(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else k)]
    return [] if a == b else [prefix]


def require_data(prep: Prepared) -> None:
    """No data set is assumed: a spec (or --set) must name its source."""
    if "source" not in prep.cfg["data"]:
        from netdsl.train.sources import SOURCES

        raise SpecError(
            [
                Diagnostic(
                    prep.where,
                    "no training data: add train.data.source to the spec (" + ", ".join(SOURCES) + "), e.g. `data: {source: image_folder, path: photos/}`, "
                    "or pass --set train.data.source=...",
                )
            ]
        )


def train(
    spec: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str] = "runs",
    settings: Mapping[str, Any] | None = None,
    variables: Mapping[str, Any] | None = None,
    input_shape: str | None = None,
    resume: str | os.PathLike[str] | None = None,
    allow_changes: bool = False,
    run_dir: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Train a spec with its own `train:` settings; returns the run directory (rank 0's, under torchrun)."""
    import torch

    from netdsl.train.engine import Engine
    from netdsl.train.tracking import check_log_targets

    say = log or (lambda line: print(line, flush=True))
    prep = prepare(spec, settings, variables, input_shape)
    require_data(prep)
    check_log_targets(prep.cfg["log"], prep.cfg["mlflow"].get("tracking_uri"))
    cfg = prep.cfg
    engine = Engine(cfg["device"], cfg["precision"], cfg["deterministic"])
    threads = torch.get_num_threads()  # the trainer may leave cores to data workers; a caller gets its setting back
    try:
        return _train(prep, engine, Path(out), resume, allow_changes, run_dir, say if engine.main else (lambda line: None))
    finally:
        engine.close()
        torch.set_num_threads(threads)


def _check_resume(run: Path, prep: Prepared, allow_changes: bool) -> None:
    if not (run / "last.pt").exists():
        raise SpecError([Diagnostic(Loc(str(run), 1, 1), "nothing to resume: no last.pt in this run directory")])
    stored = yaml.safe_load((run / "resolved.yaml").read_text())
    changed = _differences(stored, prep.resolved)
    if changed and not allow_changes:
        listed = ", ".join(changed[:12]) + (f", ... ({len(changed) - 12} more)" if len(changed) > 12 else "")
        raise SpecError(
            [Diagnostic(Loc(str(run / "resolved.yaml"), 1, 1), f"the spec differs from the run's in: {listed}; resume with --allow-changes to accept that")]
        )


def _train(prep: Prepared, engine: Any, out: Path, resume: Any, allow_changes: bool, run_dir: Any, say: Callable[[str], None]) -> Path:
    from netdsl.train.checkpoint import write_json
    from netdsl.train.loop import Trainer, TrainingStopped, data_workers
    from netdsl.train.plots import plot_curves
    from netdsl.train.progress import ProgressBar, task
    from netdsl.train.run import check_writable, environment, new_run_dir, write_status, write_yaml
    from netdsl.train.sources import normalization, open_source
    from netdsl.train.splits import Reading
    from netdsl.train.tracking import build_loggers

    cfg, graph = prep.cfg, prep.graph
    aim = make_task(cfg, graph, [])
    data = open_source(cfg["data"], graph.input_shape, prep.base, aim.targets())  # missing data fails before any run directory exists
    aim.check(data.classes)
    for note in data.notes:
        say(note)
    reading = Reading(cfg["batch_size"], workers=data_workers(cfg["workers"], engine.world, data.streamed))
    given = cfg["data"]["normalize"]
    count = min(cfg["data"]["stats_samples"], len(data.train))
    if given is True:
        with task(f"normalization statistics from {count:,} training samples", count) as bar:
            data.mean, data.std = normalization(cfg["data"], data.train, graph.input_shape, reading, bar.advance)
    else:
        data.mean, data.std = normalization(cfg["data"], data.train, graph.input_shape, reading)
    _absolute_paths(cfg, prep.base)
    cfg["data"]["normalize"] = {"mean": data.mean, "std": data.std}
    cfg["data"]["classes"] = data.classes
    if resume is not None and engine.main:
        _check_resume(Path(resume), prep, allow_changes)
    # the device, precision and transfer settings are checked (and the model built) before a run directory is made
    trainer = Trainer(graph, cfg, data, engine, Path(resume or run_dir or out), prep.resolved, prep.base)
    if resume is not None:
        run = Path(resume)
    elif not engine.main:
        run = Path(run_dir or out)  # rank 0 alone writes the run directory
    elif run_dir is not None:
        run = Path(run_dir)
        run.mkdir(parents=True, exist_ok=True)
    else:
        run = new_run_dir(out, graph.name)
    trainer.run = run
    if engine.main:
        check_writable(run)
        if resume is None:
            (run / "spec.yaml").write_text(prep.text)
        write_yaml(run / "resolved.yaml", prep.resolved)
    if resume is not None:
        trainer.restore(run / "last.pt")
    device = engine.device.type
    if engine.main:
        write_json(run / "env.json", environment(device) | {"processes": engine.world, "data_workers": trainer.reading.workers})
        write_status(run, "running", epoch=trainer.epoch)
        if trainer.transfer is not None:
            say(trainer.transfer.line())
        say(prep.task_note)
        processes = f", {engine.world} processes" if engine.distributed else ""
        say(
            f"run {run}: {len(data.train)} train / {len(data.val)} val / {len(data.test)} test samples, {cfg['epochs']} "
            f"epoch{'s' * (cfg['epochs'] != 1)}, device {device}{processes}, {trainer.reading.workers} data worker(s) per process"
        )
        trainer.callbacks = [ProgressBar(), *build_loggers(cfg["log"], say)]  # the bar first: cleared before a logger may warn
    home = run.parent if resume is not None else out  # a resumed run keeps its MLflow store, wherever --out pointed
    info = RunInfo(run, graph.name, prep.resolved, cfg["epochs"], trainer.steps_per_epoch, trainer.epoch, trainer.step, home.resolve())
    for cb in trainer.callbacks:
        cb.on_start(info)

    def epoch_line(row: dict[str, Any]) -> None:
        fields = " ".join(f"{k} {v:.4f}" for k, v in row.items() if k.startswith(("train_", "val_")))
        say(f"epoch {row['epoch']}/{cfg['epochs']} {fields} lr {row['lr']:.2e} {row['time']:.1f}s {row['samples_per_s']:,.0f} samples/s")

    def end(state: str, results: dict[str, Any]) -> None:
        for cb in trainer.callbacks:
            cb.on_end(state, results, trainer.history)

    try:
        state = trainer.fit(epoch_line)
    except TrainingStopped as exc:
        if engine.main:
            write_status(run, "failed", str(exc), epoch=trainer.epoch)
            end("failed", {})
        raise SpecError([Diagnostic(Loc(str(run), 1, 1), f"training stopped: {exc}")]) from None
    except BaseException as exc:
        if engine.main:
            write_status(run, "failed", f"{type(exc).__name__}: {exc}", epoch=trainer.epoch)
            end("failed", {})
        raise
    finally:
        data.close()
    if state == "interrupted":
        if engine.main:
            write_status(run, "interrupted", trainer.stop_signal or "stopped", epoch=trainer.epoch, step=trainer.step)
            end("interrupted", {})
            say(f"interrupted by {trainer.stop_signal or 'a signal to another process'}: checkpoint written; continue with --resume {run}")
        return run
    results = trainer.test()
    data.close()
    if engine.main:
        monitor = cfg["checkpoint"]["monitor"]
        skipped = len(trainer.skipped)
        extra = {"skipped_files": skipped} if skipped else {}
        write_json(
            run / "results.json",
            results | {"epochs_run": len(trainer.history), "best": trainer.best, "best_epoch": trainer.best_epoch, "monitor": monitor} | extra,
        )
        if trainer.history:
            plot_curves(trainer.history, run / "curves.png", f"{graph.name}: learning curves", best_epoch=trainer.best_epoch)
        write_status(run, "finished", epoch=trainer.epoch)
        end("finished", results)
        say("test " + " ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in results.items() if isinstance(v, (int, float))))
        for line in per_class_lines(results.get("test_per_class", [])):
            say(line)
        if skipped:
            say(f"left out {skipped} file(s) that could not be decoded: listed in {run / 'skipped_files.txt'}")
        if trainer.best is not None:
            used = monitor if len(data.val) else f"{monitor.replace('val_', 'train_')} (no validation split)"
            say(f"best {used} {trainer.best:.4f} at epoch {trainer.best_epoch}: {run / 'best.pt'}; learning curves: {run / 'curves.png'}")
    engine.barrier()
    return run


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
    stem = Path(out) if out else Path(weights).with_name("confusion.png" if task.name == "classification" else "examples.png")
    if task.name == "classification":
        plot_confusion(matrix, data.classes, stem, f"{prep.graph.name}: test confusion matrix")
        result |= {"confusion_matrix": matrix, "confusion_png": str(stem)}
    elif examples:
        plot_examples(examples, task.name, stem, f"{prep.graph.name}: test examples", task.classes)
        result["examples_png"] = str(stem)
    return result


EXAMPLES = 6  # test samples drawn by `netdsl eval` (segmentation, reconstruction)


def per_class_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The per-class IoU table of a segmentation result, one line per class."""
    width = max((len(str(r["class"])) for r in rows), default=0)
    return [
        f"  {r['class']!s:<{width}}  IoU {'-' if r['iou'] is None else format(r['iou'], '.4f'):>6}  Dice {'-' if r['dice'] is None else format(r['dice'], '.4f'):>6}"
        f"  {r['pixels']:>12,} pixels"
        for r in rows
    ]


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


def results_json(results: Any) -> str:
    return json.dumps(results, indent=2)
