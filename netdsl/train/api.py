"""`netdsl train`, `netdsl eval`, `netdsl predict`: from a spec file to a run directory and back."""

from __future__ import annotations

import copy
import json
import os
import sys
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
from netdsl.spec.yaml_tree import plain
from netdsl.train.config import TRAIN_SCHEMA, resolve


@dataclass
class Prepared:
    """A spec ready to train: its graph, resolved train settings, the resolved spec, and where relative paths start."""

    graph: Graph
    cfg: dict[str, Any]
    resolved: dict[str, Any]
    text: str
    base: Path


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
        resolved["params"] = {k: graph.variables.get(k, v) for k, v in resolved["params"].items()}
    resolved["import"] = [str((base / i).resolve()) if str(i).endswith((".yaml", ".yml", ".net")) else i for i in resolved.get("import", [])] or None
    resolved = {k: v for k, v in resolved.items() if v is not None}
    resolved["train"] = cfg
    return Prepared(graph, cfg, resolved, text, base)


def _absolute_paths(cfg: dict[str, Any], base: Path) -> None:
    for key in ("path", "val_path", "test_path"):
        if key in cfg["data"]:
            cfg["data"][key] = str((base / cfg["data"][key]).resolve())
    transfer = cfg.get("transfer")
    if transfer and "weights" in transfer:
        transfer["weights"] = str((base / transfer["weights"]).resolve())


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _differences(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else k)]
    return [] if a == b else [prefix]


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
    """Train a spec with its own `train:` settings; returns the run directory."""

    from netdsl.train.data import load_splits
    from netdsl.train.loop import Distributed, Trainer, TrainingStopped, check_fit, write_results
    from netdsl.train.plots import plot_curves
    from netdsl.train.run import check_writable, environment, new_run_dir, write_status, write_yaml

    say = log or (lambda line: print(line, flush=True))
    prep = prepare(spec, settings, variables, input_shape)
    cfg = prep.cfg
    data = load_splits(cfg["data"], prep.graph.input_shape, prep.base, cfg["workers"])  # missing data fails before any run directory exists
    check_fit(prep.graph, cfg, len(data.classes))
    _absolute_paths(cfg, prep.base)
    cfg["data"]["normalize"] = {"mean": data.mean, "std": data.std}
    cfg["data"]["classes"] = data.classes
    dist = Distributed()
    if resume is not None:
        run = Path(resume)
        if not (run / "last.pt").exists():
            raise SpecError([Diagnostic(Loc(str(run), 1, 1), "nothing to resume: no last.pt in this run directory")])
        stored = yaml.safe_load((run / "resolved.yaml").read_text())
        changed = _differences(stored, prep.resolved)
        if changed and not allow_changes:
            listed = ", ".join(changed[:12]) + (f", ... ({len(changed) - 12} more)" if len(changed) > 12 else "")
            raise SpecError(
                [Diagnostic(Loc(str(run / "resolved.yaml"), 1, 1), f"the spec differs from the run's in: {listed}; resume with --allow-changes to accept that")]
            )
    # the device, precision and transfer weights are checked (and the model built) before a run directory is made
    trainer = Trainer(prep.graph, cfg, data, Path(resume or run_dir or out), prep.resolved, prep.base, progress=sys.stderr.isatty())
    if resume is None and run_dir is not None:
        run = Path(run_dir)
        run.mkdir(parents=True, exist_ok=True)
    elif resume is None:
        run = new_run_dir(Path(out), prep.graph.name) if dist.main else Path(out)
    trainer.run = run
    if dist.main:
        check_writable(run)
        if resume is None:
            (run / "spec.yaml").write_text(prep.text)
        write_yaml(run / "resolved.yaml", prep.resolved)
    device = trainer.device.type
    if resume is not None:
        trainer.restore(run / "last.pt")
    if dist.main:
        from netdsl.train.checkpoint import write_json

        write_json(run / "env.json", environment(device))
        write_status(run, "running", epoch=trainer.epoch)
        say(f"run {run}: {len(data.train)} train / {len(data.val)} val / {len(data.test)} test samples, {cfg['epochs']} epochs, device {device}")

    def epoch_line(row: dict[str, Any]) -> None:
        if dist.main:
            fields = " ".join(f"{k} {v:.4f}" for k, v in row.items() if k.startswith(("train_", "val_")))
            say(f"epoch {row['epoch']}/{cfg['epochs']} {fields} lr {row['lr']:.2e} {row['time']:.1f}s {row['samples_per_s']:,.0f} samples/s")

    try:
        state = trainer.fit(epoch_line)
    except TrainingStopped as exc:
        if dist.main:
            write_status(run, "failed", str(exc), epoch=trainer.epoch)
        raise SpecError([Diagnostic(Loc(str(run), 1, 1), f"training stopped: {exc}")]) from None
    except BaseException as exc:
        if dist.main:
            write_status(run, "failed", f"{type(exc).__name__}: {exc}", epoch=trainer.epoch)
        raise
    if state == "interrupted":
        if dist.main:
            write_status(run, "interrupted", trainer.stop_signal or "stopped", epoch=trainer.epoch, step=trainer.step)
            say(f"interrupted by {trainer.stop_signal}: checkpoint written; continue with --resume {run}")
        return run
    results = trainer.test()
    if dist.main:
        monitor = cfg["checkpoint"]["monitor"]
        write_results(run, results | {"epochs_run": len(trainer.history), "best": trainer.best, "best_epoch": trainer.best_epoch, "monitor": monitor})
        if trainer.history:
            plot_curves(trainer.history, run / "curves.png", f"{prep.graph.name}: learning curves")
        write_status(run, "finished", epoch=trainer.epoch)
        say("test " + " ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in results.items()))
        if trainer.best is not None:
            say(f"best {monitor} {trainer.best:.4f} at epoch {trainer.best_epoch}: {run / 'best.pt'}; learning curves: {run / 'curves.png'}")
    dist.barrier()
    return run


def evaluate(spec: str | os.PathLike[str], weights: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, **options: Any) -> dict[str, Any]:
    """Test-split metrics and a confusion matrix PNG for a spec with trained weights."""
    import torch

    from netdsl.train.checkpoint import trained_module
    from netdsl.train.data import load_splits
    from netdsl.train.plots import plot_confusion

    prep = prepare(spec, **options)
    model = trained_module(prep.graph, Path(weights))  # a bad weights file fails before the data is read
    data = load_splits(prep.cfg["data"], prep.graph.input_shape, prep.base, prep.cfg["workers"])
    mean = torch.tensor(data.mean).view(1, -1, *([1] * (len(prep.graph.input_shape) - 1)))
    std = torch.tensor(data.std).view(1, -1, *([1] * (len(prep.graph.input_shape) - 1)))
    n = len(data.classes)
    matrix = [[0] * n for _ in range(n)]
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(data.test), 256):
            x, y = data.test.x[i : i + 256], data.test.y[i : i + 256]
            pred = model((x - mean) / std).argmax(1)
            correct += int((pred == y).sum())
            for t, p in zip(y.tolist(), pred.tolist()):
                matrix[t][p] += 1
    target = Path(out) if out else Path(weights).with_name("confusion.png")
    plot_confusion(matrix, data.classes, target, f"{prep.graph.name}: test confusion matrix")
    return {"test_accuracy": correct / max(len(data.test), 1), "test_samples": len(data.test), "confusion_matrix": matrix, "confusion_png": str(target)}


def predict(spec: str | os.PathLike[str], weights: str | os.PathLike[str], images: list[str], top: int = 3, **options: Any) -> list[dict[str, Any]]:
    """Top-k classes for each image file or .npy sample (a stacked array gives one result per sample, `file[i]`).

    Inputs are read as `netdsl infer` reads them (netdsl.inputs) and normalized as the spec's data section says.
    """
    import torch

    from netdsl.inputs import read_inputs
    from netdsl.train.checkpoint import trained_module
    from netdsl.train.data import load_splits

    if top < 1:
        raise SpecError([Diagnostic(Loc("--top", 1, 1), f"--top must be >= 1; got {top}")])
    prep = prepare(spec, **options)
    normalize = prep.cfg["data"]["normalize"]
    if isinstance(normalize, dict) and prep.cfg["data"].get("classes"):
        mean, std, classes = normalize["mean"], normalize["std"], prep.cfg["data"]["classes"]
    else:
        data = load_splits(prep.cfg["data"], prep.graph.input_shape, prep.base, prep.cfg["workers"])
        mean, std, classes = data.mean, data.std, data.classes
    x, labels = read_inputs(images, prep.graph.input_shape)
    model = trained_module(prep.graph, Path(weights))
    shape = (1, -1, *([1] * (len(prep.graph.input_shape) - 1)))
    mean_t, std_t = torch.tensor(mean).view(shape), torch.tensor(std).view(shape)
    with torch.inference_mode():
        probs = torch.cat([model((batch - mean_t) / std_t).softmax(1) for batch in torch.from_numpy(x).split(256)])
    values, indices = probs.topk(min(top, probs.shape[1]), dim=1)
    return [
        {"input": label, "top": [{"class": classes[i] if i < len(classes) else str(i), "index": i, "p": round(float(v), 4)} for v, i in zip(vs, ix.tolist())]}
        for label, vs, ix in zip(labels, values, indices)
    ]


def results_json(results: Any) -> str:
    return json.dumps(results, indent=2)
