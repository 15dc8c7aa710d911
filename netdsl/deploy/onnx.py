"""IR -> ONNX: torch.onnx's dynamo exporter, verified against PyTorch with onnxruntime, self-describing.

The pipeline: build the PyTorch module and load the weights -> torch.onnx.export(dynamo=True), falling back
to the TorchScript exporter only when that raises (and saying so) -> metadata (ModelInfo) -> optional fp16 ->
write into a temporary folder beside the output -> onnx.checker (full check) -> onnxruntime against PyTorch
on fresh random inputs -> rename into place. The output path holds nothing unless every check passed.
int8 (netdsl/deploy/quantize.py): the verified fp32 file is quantized (static, QDQ) in the temporary folder and
checked by its top-1 agreement with the fp32 file on the test split.

Faults: Ctrl-C (or SIGTERM) is an interrupt wherever it lands, even where the exporter swallows or wraps it, never a
reason to fall back; a write that fails (disk full, `ulimit -f`) is one located line. Either way the target is left
as it was and the temporary folder, named `.TARGET.PID.XXXXXXXX.partial`, is removed; one left by a killed export
is removed by the next export of the same target once its process is gone.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import shutil
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import torch
import yaml

from netdsl.backends.pytorch import build_module
from netdsl.deploy.export_guard import raise_if_interrupted, signals_as_exceptions, signals_deferred, writing
from netdsl.deploy.export_guard import workdir as make_workdir
from netdsl.errors import input_error
from netdsl.ir import Graph
from netdsl.runtime.model_info import INPUT_NAME, MODEL_VERSION, OUTPUT_NAME, ModelInfo, TensorInfo, inferred_task, settled_task, spec_hash

if TYPE_CHECKING:
    from netdsl.deploy.quantize import Agreement, Calibration

MIN_OPSET = 18  # the dynamo exporter's lowest: it silently raises a lower request, so one is refused instead
MAX_OPSET = 23  # torch 2.13's highest (torch.onnx._constants.ONNX_MAX_OPSET)
TORCHSCRIPT_MAX_OPSET = 20  # the fallback exporter's highest
DEFAULT_OPSET = 18  # the exporter's native opset: no version conversion, widest runtime support
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2}  # max |onnxruntime - PyTorch| / max |PyTorch|, for each output
VERIFY_BATCHES = (1, 3)  # 3: a batch size other than 1 and other than the traced example (2)
VERIFY_SEED = 20240601
EXTERNAL_DATA_BYTES = 1_800_000_000  # protobuf refuses files over 2 GiB; leave room for the graph and metadata

Log = Callable[[str], None]


class VerificationError(Exception):
    """onnxruntime and PyTorch disagree beyond the tolerance (exit 1; nothing is written)."""


@dataclass(frozen=True)
class Labels:
    """What the training run knew: class names, per-channel normalization and the task (`train.task`, settled)."""

    classes: list[str] | None = None
    normalize: dict[str, list[float]] | None = None
    task: dict[str, Any] | None = None  # None: the task the output's shape points to, as the trainer infers it


@dataclass(frozen=True)
class Comparison:
    """onnxruntime against PyTorch at one batch size, for one output."""

    batch: int
    max_abs: float
    max_rel: float
    tolerance: float
    output: str = ""  # which output, when there are several

    @property
    def ok(self) -> bool:
        return self.max_rel <= self.tolerance

    def __str__(self) -> str:
        verdict = "ok" if self.ok else "FAILED"
        which = f", output '{self.output}'" if self.output else ""
        return (
            f"onnxruntime vs PyTorch, batch {self.batch}{which}: max abs error {self.max_abs:.1e}, "
            f"max relative error {self.max_rel:.1e} (tolerance {self.tolerance:.0e}): {verdict}"
        )


@dataclass(frozen=True)
class ExportResult:
    path: Path
    info: ModelInfo
    opset: int
    batch: int | None  # None: dynamic
    external_data: bool
    size: int  # bytes on disk, external data included
    comparisons: list[Comparison]
    agreement: Agreement | None = None  # int8: against the fp32 file, on the test split


@signals_as_exceptions()
def export(
    graph: Graph,
    output: str | os.PathLike[str],
    *,
    weights: str | os.PathLike[str] | None = None,
    labels: Labels | None = None,
    opset: int = DEFAULT_OPSET,
    batch: int | None = None,
    fp16: bool = False,
    verify: bool = True,
    seed: int = 0,
    log: Log | None = None,
    external_data_bytes: int = EXTERNAL_DATA_BYTES,
    all_outputs: bool = False,
    int8: Calibration | None = None,
) -> ExportResult:
    """Write `graph` (with `weights`, else seeded random ones) as a checked, verified ONNX file; batch None = dynamic.

    The main output is named `logits`; with `all_outputs` a spec's every output is written, named as `outputs:` names them.
    With `int8` (netdsl.deploy.quantize.calibration_data) the file is quantized to int8 on those samples.
    """
    say = log or (lambda _: None)
    check_opset(opset)
    if batch is not None and batch < 1:
        raise input_error("--batch", f"--batch must be 'dynamic' or an integer >= 1; got {batch}")
    target = Path(output)
    workdir = make_workdir(target)
    try:
        model, source = _model(graph, weights, seed, all_outputs)
        names = output_names(graph, all_outputs)
        with writing(target):
            proto, exporter = to_onnx(model, graph, opset, batch, workdir, say, names)
        if fp16 and int8 is not None:
            raise input_error("--int8", "--int8 and --fp16 exclude each other: choose one precision")
        precision = "fp16" if fp16 else "int8" if int8 is not None else "fp32"
        if fp16:
            proto = to_fp16(proto)
        info = _info(graph, labels or Labels(), batch, precision, exporter, source, names, int8.describe() if int8 is not None else None)
        describe(proto, info)
        external = _weight_bytes(model) // (2 if fp16 else 4 if int8 is not None else 1) > external_data_bytes
        staged = workdir / target.name
        fp32 = workdir / f"fp32.{target.name}" if int8 is not None else staged
        with writing(target):
            _save(proto, fp32, external and int8 is None)
        del proto
        comparisons: list[Comparison] = []
        if verify:
            check(fp32)
            say("onnx.checker (full check): ok")
            comparisons = compare(fp32, model, graph, batch, "fp32" if int8 is not None else precision, say, names)
            failed = [c for c in comparisons if not c.ok]
            if failed:
                c = failed[0]
                what = f" output '{c.output}'" if len(names) > 1 else ""
                raise VerificationError(
                    f"{target}: verification failed: batch {c.batch}{what} max relative error {c.max_rel:.1e} exceeds {c.tolerance:.0e}; nothing written"
                )
        agreement = _to_int8(fp32, staged, int8, info, batch, verify, names[0], say, target) if int8 is not None else None
        size = sum(f.stat().st_size for f in workdir.iterdir() if f != fp32)
        with writing(target), signals_deferred():
            _move_into_place(staged, target, external)
    except Exception as exc:
        raise_if_interrupted(exc)  # an interrupt that a library turned into an ordinary exception
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return ExportResult(target, info, opset, batch, external and int8 is None, size, comparisons, agreement)


def _to_int8(
    fp32: Path, staged: Path, calibration: Calibration, info: ModelInfo, batch: int | None, verify: bool, output: str, say: Log, target: Path
) -> Agreement | None:
    """Quantize the fp32 file into `staged`, with `info` as its metadata; verified: its agreement with the fp32 file."""
    from netdsl.deploy.quantize import agreement, quantize

    with writing(target):
        quantize(fp32, staged, calibration, batch)
        proto = onnx.load(str(staged))
        describe(proto, info)
        _save(proto, staged, False)
    if not verify:
        return None
    check(staged)
    say("onnx.checker (full check, int8): ok")
    result = agreement(fp32, staged, calibration, output)
    say(str(result))
    if not result.ok:
        raise input_error(str(target), result.failure())
    return result


def check_opset(opset: int) -> None:
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise input_error("--opset", f"--opset {opset} is not supported: the dynamo exporter writes opsets {MIN_OPSET} to {MAX_OPSET}")


def output_names(graph: Graph, all_outputs: bool) -> list[str]:
    """The ONNX output names: `logits` for the main output alone, else the names `outputs:` gives."""
    if not all_outputs or len(graph.outputs) == 1:
        return [OUTPUT_NAME]
    return list(graph.output_names)


def _model(graph: Graph, weights: str | os.PathLike[str] | None, seed: int, all_outputs: bool = False) -> tuple[torch.nn.Module, str]:
    """The eval-mode module and where its weights came from."""
    if weights is None:
        return build_module(graph, seed=seed, all_outputs=all_outputs).eval(), f"random initialization (seed {seed})"
    from netdsl.train.checkpoint import trained_module

    model = trained_module(graph, Path(weights))
    if all_outputs and len(graph.outputs) > 1:  # the trained weights, in a module whose forward returns every output
        every = build_module(graph, device="meta", all_outputs=True)
        every.load_state_dict(model.state_dict(), assign=True)
        model = every.eval()
    return model, str(weights)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters' progress prints, warnings and log lines (a failure still raises, and is reported)."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnx_ir", "onnxscript")]  # onnx_ir warns about e.g. MaxUnpool's empty attributes
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def to_onnx(
    model: torch.nn.Module, graph: Graph, opset: int, batch: int | None, workdir: Path, log: Log, names: list[str] | None = None
) -> tuple[onnx.ModelProto, str]:
    """The model as ONNX (input `input`, outputs `names`, default `logits`; only the batch axis dynamic) and which exporter wrote it."""
    names = names or [OUTPUT_NAME]
    example = torch.randn(batch or 2, *graph.input_shape)  # 2, not 1: torch.export specializes a size-1 dim
    # Only the batch axis is dynamic: with dynamic H and W the dynamo exporter computed wrong adaptive-pool results.
    dynamic = None if batch else ({0: torch.export.Dim("batch")},)
    try:
        with _quiet():
            program = torch.onnx.export(
                model,
                (example,),
                dynamo=True,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=names,
                dynamic_shapes=dynamic,
                optimize=True,
                verbose=False,
            )
            if program is None:
                raise RuntimeError("torch.onnx.export returned no program")
            proto = program.model_proto
        exporter = "dynamo"
    except Exception as exc:  # the exporter raises many kinds; the fallback says which and why
        raise_if_interrupted(exc)
        failure = _first_line(exc)
        if opset > TORCHSCRIPT_MAX_OPSET:
            raise input_error(
                "--opset", f"the dynamo exporter failed ({failure}) and the TorchScript exporter writes opset <= {TORCHSCRIPT_MAX_OPSET}"
            ) from None
        log(f"the dynamo exporter failed ({failure}); falling back to the TorchScript exporter")
        try:
            proto = _torchscript(model, example, opset, batch, workdir, names)
        except OSError:
            raise  # it writes a file in `workdir`: the caller says which target could not be written
        except Exception as fallback:
            raise_if_interrupted(fallback)
            raise input_error(
                graph.file, f"cannot export to ONNX: the dynamo exporter failed ({failure}) and so did the TorchScript exporter ({_first_line(fallback)})"
            ) from None
        exporter = "torchscript"
    written = {o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")}
    if written != {opset}:
        raise RuntimeError(f"the {exporter} exporter wrote opset {sorted(written)}, not the requested {opset}")
    return proto, exporter


def _first_line(exc: BaseException) -> str:
    """`Type: the first line of the message`, at most 200 characters of it: enough to say what failed."""
    reason = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {reason}"


def _torchscript(model: torch.nn.Module, example: torch.Tensor, opset: int, batch: int | None, workdir: Path, names: list[str]) -> onnx.ModelProto:
    path = workdir / "torchscript.onnx"
    axes = None if batch else {name: {0: "batch"} for name in [INPUT_NAME, *names]}
    with _quiet():
        torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=opset, input_names=[INPUT_NAME], output_names=names, dynamic_axes=axes)
    proto = onnx.load(str(path))
    for f in workdir.iterdir():
        f.unlink()
    return proto


def to_fp16(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Weights and compute in float16, inputs and outputs still float32 (callers need not change)."""
    from onnxconverter_common import float16

    with _quiet():
        converted: onnx.ModelProto = float16.convert_float_to_float16(proto, keep_io_types=True)
    return converted


def _info(
    graph: Graph, labels: Labels, batch: int | None, precision: str, exporter: str, source: str, names: list[str], calibration: dict[str, Any] | None = None
) -> ModelInfo:
    from netdsl.analysis.counts import analyze
    from netdsl.analysis.expand import expand_text
    from netdsl.version import __version__

    spec = expand_text(graph, analyze(graph, 1), graph.file)
    n: int | str = batch or "batch"
    return ModelInfo(
        netdsl_version=__version__,
        name=graph.name,
        spec=spec,
        spec_sha256=spec_hash(spec),
        inputs=[TensorInfo(INPUT_NAME, [n, *graph.input_shape])],
        outputs=[TensorInfo(name, [n, *shape]) for name, shape in zip(names, graph.output_shapes)],
        precision=precision,
        exporter=exporter,
        weights=source,
        classes=labels.classes,
        normalize=labels.normalize,
        task=labels.task if labels.task is not None else inferred_task(graph),
        calibration=calibration,
    )


def describe(proto: onnx.ModelProto, info: ModelInfo) -> None:
    """Store `info` as metadata (strings as themselves, other values as JSON), and name the producer and the model version."""
    from netdsl.version import __version__

    del proto.metadata_props[:]
    for key, value in info.to_metadata().items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "netdsl"
    proto.producer_version = __version__
    proto.model_version = MODEL_VERSION
    proto.doc_string = f"{info.name}: exported by netdsl {__version__} with torch {torch.__version__} ({info.exporter} exporter), {info.precision}"


def _weight_bytes(model: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def _save(proto: onnx.ModelProto, path: Path, external: bool) -> None:
    if external:
        onnx.save_model(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=f"{path.name}.data", size_threshold=1024)
    else:
        onnx.save_model(proto, str(path))


def check(path: Path) -> None:
    """onnx.checker with full_check (type and shape inference too); by path, so external data works."""
    onnx.checker.check_model(str(path), full_check=True)


def compare(path: Path, model: torch.nn.Module, graph: Graph, batch: int | None, precision: str, log: Log, names: list[str] | None = None) -> list[Comparison]:
    """onnxruntime (CPU) against the PyTorch module on fresh random inputs, at batch 1 and 3 (or the fixed batch).

    Every output is compared (`names`, default `logits`) by its largest error relative to its largest value, so a
    dense output (a segmentation map, an image) is judged as a vector of logits is.
    """
    import onnxruntime as ort

    names = names or [OUTPUT_NAME]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(VERIFY_SEED)
    out = []
    for n in [batch] if batch else VERIFY_BATCHES:
        x = rng.standard_normal((n, *graph.input_shape), dtype=np.float32)
        try:
            got = [np.asarray(a, dtype=np.float64) for a in session.run(names, {INPUT_NAME: x})]
        except Exception as exc:  # e.g. a graph that fixed the batch size although it should not have
            raise VerificationError(
                f"{path.name}: onnxruntime cannot run it at batch {n} ({type(exc).__name__}: {str(exc).strip()[:200]}); nothing written"
            ) from None
        with torch.inference_mode():
            result = model(torch.from_numpy(x))
        wants = [t.double().numpy() for t in (result if isinstance(result, (tuple, list)) else (result,))]
        for name, g, want in zip(names, got, wants):
            if g.shape != want.shape:
                what = f" for output '{name}'" if len(names) > 1 else ""
                raise VerificationError(
                    f"{path.name}: onnxruntime returned shape {list(g.shape)}, PyTorch {list(want.shape)}{what}, at batch {n}; nothing written"
                )
            error = float(np.abs(g - want).max()) if np.isfinite(g).all() else math.inf
            scale = float(np.abs(want).max())
            comparison = Comparison(n, error, error / scale if scale > 0 else error, TOLERANCE[precision], name if len(names) > 1 else "")
            log(str(comparison))
            out.append(comparison)
    return out


def _move_into_place(staged: Path, target: Path, external: bool) -> None:
    if external:  # the data file first: the .onnx that names it appears last
        os.replace(staged.with_name(f"{staged.name}.data"), target.with_name(f"{target.name}.data"))
    os.replace(staged, target)


def sources(spec: str | os.PathLike[str], weights: str | os.PathLike[str] | None) -> tuple[Path, Path | None, Labels]:
    """The spec file, weights file and labels that `export SPEC [--weights W]` means.

    A training run folder (resolved.yaml + best.pt) may stand for the spec, the weights, or both; labels
    (class names, normalization) come from the run's resolved.yaml, else from the spec's own `train.data`.
    """
    from netdsl.train.files import run_sources

    spec_path, weights_path, run = run_sources(spec, weights)
    labels = read_labels(run / "resolved.yaml") if run is not None else read_labels(spec_path)
    return spec_path, weights_path, labels


def training_spec(spec: str | os.PathLike[str], weights: str | os.PathLike[str] | None) -> Path:
    """The spec whose `train.data` an int8 export calibrates on: the run folder's resolved.yaml where one is given, else the spec."""
    from netdsl.train.files import run_sources

    _, _, run = run_sources(spec, weights)
    return run / "resolved.yaml" if run is not None else Path(spec)


def read_labels(path: Path) -> Labels:
    """`train.data.classes`, `train.data.normalize: {mean, std}` and `train.task` of a YAML spec, where it gives them."""
    if path.suffix not in (".yaml", ".yml"):
        return Labels()
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return Labels()  # loading the spec reports what is wrong with it
    train: Any = tree.get("train") if isinstance(tree, dict) else None
    task = settled_task(train.get("task")) if isinstance(train, dict) else None
    data: Any = train.get("data") if isinstance(train, dict) else None
    if not isinstance(data, dict):
        return Labels(task=task)
    classes = data.get("classes")
    normalize = data.get("normalize")
    return Labels(
        classes=[str(c) for c in classes] if isinstance(classes, list) else None,
        normalize={"mean": list(normalize["mean"]), "std": list(normalize["std"])}
        if isinstance(normalize, dict) and {"mean", "std"} <= set(normalize)
        else None,
        task=task,
    )
