"""`netdsl train`: from a spec file to a run directory (eval and predict: netdsl/train/evaluation.py)."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from netdsl.atomic import WriteFailed
from netdsl.errors import Diagnostic, Loc, SpecError
from netdsl.graph.load import load_composed
from netdsl.ir import Graph
from netdsl.lang.extends import split_extends
from netdsl.lang.files import read_spec
from netdsl.lang.formats import parse_tree
from netdsl.lang.overrides import covering, setting_loc
from netdsl.lang.train_section import apply_settings, resolve
from netdsl.lang.yaml_tree import loc_of, plain
from netdsl.tasks import make_task, settle
from netdsl.train.callbacks import RunInfo


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
    sources: list[dict[str, str]] = field(default_factory=list)  # the spec and each file merged into it: {path, sha256}


def prepare(
    spec: str | os.PathLike[str], settings: Mapping[str, Any] | None = None, variables: Mapping[str, Any] | None = None, input_shape: str | None = None
) -> Prepared:
    """A spec file loaded for training: every `extends` merged (train.extends and train.data.extends settings, from
    --recipe and --data, written into its train section first), --set train.* applied, every default resolved."""
    text, name = read_spec(spec)
    extends, settings = split_extends(settings or {})
    loaded = load_composed(parse_tree(text, name), name, input_shape=input_shape, variables=variables, over=extends)
    tree, graph = loaded.tree, loaded.graph
    assert graph is not None
    train = apply_settings(plain(tree.get("train", {})), settings)
    cfg = resolve(train)
    base = Path(name).resolve().parent
    resolved = plain(dict(tree))  # composed: no extends, everything merged, so the run reproduces without those files
    resolved["input"] = "x".join(map(str, graph.input_shape))
    if "params" in resolved:
        resolved["params"] = {k: plain(graph.variables.get(k, v)) for k, v in resolved["params"].items()}  # list values too (SegNet's widths)
    resolved["import"] = _imports(tree.get("import")) or None
    resolved = {k: v for k, v in resolved.items() if v is not None}
    resolved["train"] = cfg
    where = loc_of(tree, ("train",), key=True) if isinstance(tree, dict) and "train" in tree else None
    note = settle(cfg, graph, _given(tree, train, settings))
    resolved["train"] = cfg
    sources = [{"path": name, "sha256": hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()}]
    sources += [{"path": path, "sha256": digest} for path, digest in loaded.sources]
    return Prepared(graph, cfg, resolved, text, base, where or Loc(name, 1, 1), note, sources)


def _imports(imports: Any) -> list[Any]:
    """The spec's imports with each library path made absolute from the folder of the file that wrote it."""
    if not isinstance(imports, list):
        return []
    locs = getattr(imports, "item_locs", [None] * len(imports))
    out = []
    for name, loc in zip(imports, locs):
        if isinstance(name, str) and name.endswith((".yaml", ".yml", ".net")):
            folder = Path(loc.file).parent if loc is not None and loc.line > 0 else Path()
            name = str((folder / name).resolve())
        out.append(name)
    return out


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
        setting = covering(settings, flag.split("."))
        if setting is not None:
            out[key] = setting_loc(setting, settings[setting])
        else:
            loc = loc_of(tree, ("train", *keys))
            out[key] = loc or Loc.argument(flag)
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


def _check_resume(run: Path, prep: Prepared, allow_changes: bool) -> tuple[Path, dict[str, Any], str]:
    """The checkpoint to continue from (see resume_point), once the spec is known to match the run's (or --allow-changes)."""
    from netdsl.train.checkpoint import resume_point

    stored_at = run / "resolved.yaml"
    try:
        stored = yaml.safe_load(stored_at.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else f"unreadable ({type(exc).__name__})"
        raise SpecError([Diagnostic(Loc(str(stored_at), 1, 1), f"not a run directory to resume: resolved.yaml: {why}")]) from None
    point = resume_point(run)
    changed = _differences(stored, prep.resolved)
    if changed and not allow_changes:
        listed = ", ".join(changed[:12]) + (f", ... ({len(changed) - 12} more)" if len(changed) > 12 else "")
        raise SpecError([Diagnostic(Loc(str(stored_at), 1, 1), f"the spec differs from the run's in: {listed}; resume with --allow-changes to accept that")])
    return point


def _train(prep: Prepared, engine: Any, out: Path, resume: Any, allow_changes: bool, run_dir: Any, say: Callable[[str], None]) -> Path:
    from netdsl.train.loop import Trainer, data_workers
    from netdsl.train.progress import task
    from netdsl.train.run import RunLock, new_run_dir, remove_temp_files
    from netdsl.train.sources import normalization, open_source
    from netdsl.train.splits import Reading

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
    lock, run, point = None, Path(resume or run_dir or out), None
    try:
        if resume is not None and engine.main:
            lock = RunLock(run).acquire()  # before anything is read: a second writer is refused with the holder's PID
            point = _check_resume(run, prep, allow_changes)
        # the device, precision and transfer settings are checked (and the model built) before a run directory is made
        trainer = Trainer(graph, cfg, data, engine, run, prep.resolved, prep.base)
        if resume is None and engine.main:
            if run_dir is not None:
                run.mkdir(parents=True, exist_ok=True)
            else:
                run = new_run_dir(out, graph.name)
            lock = RunLock(run).acquire()
        trainer.run = run
        if lock is not None:
            remove_temp_files(run)  # a killed writer's leftovers
        return _run(prep, trainer, data, engine, out, resume, point, say)
    finally:
        data.close()
        if lock is not None:
            remove_temp_files(run)
            lock.release()


def _run(prep: Prepared, trainer: Any, data: Any, engine: Any, out: Path, resume: Any, point: Any, say: Callable[[str], None]) -> Path:
    """Start-up, the epochs and the test, with every way out recorded in status.json: finished, interrupted or failed."""
    from netdsl.atomic import WriteFailed, write_json, write_text
    from netdsl.train.loop import TrainingStopped
    from netdsl.train.progress import ProgressBar
    from netdsl.train.run import check_writable, environment, signals_deferred, write_metrics, write_status, write_yaml
    from netdsl.train.tracking import build_loggers

    cfg, graph, run = prep.cfg, prep.graph, trainer.run
    main = engine.main
    stage = "start-up"

    def stop(state: str, reason: str, results: dict[str, Any] | None = None) -> bool:
        """Record how the run ended (rank 0); False if even status.json could not be written."""
        if not main:
            return True
        written = write_status(run, state, reason, epoch=trainer.epoch, **({"step": trainer.step} if state == "interrupted" else {}))
        if stage == "start-up":  # the callbacks have not (all) started
            return written
        with signals_deferred():
            for cb in trainer.callbacks:
                cb.on_end(state, results or {}, trainer.history)
        return written

    try:
        if main:
            check_writable(run)
            if resume is None:
                write_text(run / "spec.yaml", prep.text)
            write_yaml(run / "resolved.yaml", prep.resolved)
        if resume is not None:
            path, loaded, note = point if main else (run / "last.pt", None, "")
            if note:
                say(note)
            trainer.restore(path, loaded)
            if main:
                trainer.repair_best(loaded)
                if trainer.history:
                    write_metrics(run, trainer.history)  # a kill before the epoch's metrics were written
        device = engine.device.type
        if main:
            extra = {"processes": engine.world, "data_workers": trainer.reading.workers, "spec_sources": prep.sources}
            write_json(run / "env.json", environment(device) | extra)
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
        stage = "training"

        def epoch_line(row: dict[str, Any]) -> None:
            fields = " ".join(f"{k} {v:.4f}" for k, v in row.items() if k.startswith(("train_", "val_")))
            say(f"epoch {row['epoch']}/{cfg['epochs']} {fields} lr {row['lr']:.2e} {row['time']:.1f}s {row['samples_per_s']:,.0f} samples/s")

        state = trainer.fit(epoch_line)
        if state == "interrupted":
            stop("interrupted", trainer.stop_signal or "stopped")
            say(f"interrupted by {trainer.stop_signal or 'a signal to another process'}: checkpoint written; continue with --resume {run}")
            return run
        stage = "the test evaluation"
        results = trainer.test()
        data.close()
        stage = "the final writes"
        with signals_deferred(redeliver=False) as caught:  # results, curves and status complete before a Ctrl-C is honoured
            if main:
                _final_writes(prep, trainer, results, len(data.val), say)
                if caught:
                    stop("interrupted", f"{caught[0]} during the final writes (completed)", results)
                    return run
                stop("finished", "", results)
    except TrainingStopped as exc:
        stop("failed", str(exc))
        raise SpecError([Diagnostic(Loc(str(run), 1, 1), f"training stopped: {exc}")]) from None
    except WriteFailed as exc:
        recorded = stop("failed", exc.diagnostics[0].message)
        where = "run marked failed" if recorded else "status.json could not be updated either"
        raise WriteFailed(exc.path, exc.reason, f"{where}; continue with --resume {run} once there is room") from None
    except SpecError as exc:
        if stage != "start-up" or resume is None:  # a refused resume (another architecture) leaves the run's status as it was
            stop("failed", exc.diagnostics[0].message if exc.diagnostics else "")
        raise
    except KeyboardInterrupt:
        if main:
            _curves(prep, trainer)
        stop("interrupted", f"SIGINT during {stage}")
        say(f"interrupted by SIGINT during {stage}" + (f"; continue with --resume {run}" if stage != "start-up" or resume else ""))
        return run
    except BaseException as exc:
        stop("failed", f"{type(exc).__name__}: {exc}")
        raise
    engine.barrier()
    return run


def _curves(prep: Prepared, trainer: Any, quiet: bool = True) -> None:
    """curves.png from the history so far (an interrupted run keeps its picture); quiet: a write that fails leaves it out."""
    from netdsl.train.plots import plot_curves
    from netdsl.train.run import signals_deferred

    if trainer.history:
        with signals_deferred(), contextlib.suppress(*((WriteFailed,) if quiet else ())):
            plot_curves(trainer.history, trainer.run / "curves.png", f"{prep.graph.name}: learning curves", best_epoch=trainer.best_epoch)


def _final_writes(prep: Prepared, trainer: Any, results: dict[str, Any], val_samples: int, say: Callable[[str], None]) -> None:
    """results.json, curves.png and the closing lines of a finished run (rank 0)."""
    from netdsl.atomic import write_json

    run, monitor = trainer.run, prep.cfg["checkpoint"]["monitor"]
    skipped = len(trainer.skipped)
    extra = {"skipped_files": skipped} if skipped else {}
    write_json(
        run / "results.json",
        results | {"epochs_run": len(trainer.history), "best": trainer.best, "best_epoch": trainer.best_epoch, "monitor": monitor} | extra,
    )
    _curves(prep, trainer, quiet=False)
    say("test " + " ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in results.items() if isinstance(v, (int, float))))
    for line in per_class_lines(results.get("test_per_class", [])):
        say(line)
    if skipped:
        say(f"left out {skipped} file(s) that could not be decoded: listed in {run / 'skipped_files.txt'}")
    if trainer.best is not None:
        used = monitor if val_samples else f"{monitor.replace('val_', 'train_')} (no validation split)"
        say(f"best {used} {trainer.best:.4f} at epoch {trainer.best_epoch}: {run / 'best.pt'}; learning curves: {run / 'curves.png'}")


def per_class_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The per-class IoU table of a segmentation result, one line per class."""
    width = max((len(str(r["class"])) for r in rows), default=0)
    return [
        f"  {r['class']!s:<{width}}  IoU {'-' if r['iou'] is None else format(r['iou'], '.4f'):>6}  Dice {'-' if r['dice'] is None else format(r['dice'], '.4f'):>6}"
        f"  {r['pixels']:>12,} pixels"
        for r in rows
    ]
