"""`netdsl bench`: onnxruntime against PyTorch eager and torch.compile, same device, same inputs, same run, in each
precision asked for (fp32, fp16, int8).

Each engine warms up, then runs until it has at least `min_runs` timings and `min_time` seconds; latencies are
per batch (p50/p90/p99) and throughput is samples per second over the timed runs. On a GPU the input already
lives on the device for every engine (onnxruntime through I/O binding) and each timing waits for the device.
fp16 is timed on a GPU only (on a CPU onnxruntime and PyTorch emulate it: a row says so); int8 is onnxruntime
alone (static QDQ, as `netdsl export --int8` writes it), from an int8 .onnx or a spec whose train.data it
calibrates on.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from netdsl.errors import input_error
from netdsl.ir import Graph
from netdsl.runtime.session import Model, open_model

ENGINES = ("onnxruntime", "torch eager", "torch.compile")
PRECISIONS = ("fp32", "fp16", "int8")
WARMUP_RUNS = 3
BENCH_CALIBRATION = 64  # training samples an int8 bench calibrates on: enough for ranges, the weights are random anyway
FP16_ON_CPU = "skipped: fp16 is timed on a GPU only (on a CPU onnxruntime and PyTorch emulate float16 arithmetic, so the figures would mislead)"


@dataclass(frozen=True)
class Row:
    """One engine at one batch size: latency percentiles in milliseconds and samples per second, or why it could not run."""

    batch: int
    engine: str
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    samples_per_s: float | None = None
    speedup_vs_eager: float | None = None  # against PyTorch eager in the same precision, else in fp32
    error: str = ""
    precision: str = "fp32"


@dataclass
class Report:
    model: str
    input_shape: list[int]
    provider: str
    device: str
    precision: str
    threads: dict[str, int]
    versions: dict[str, str]
    rows: list[Row] = field(default_factory=list)

    def json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    def table(self) -> str:
        head = (
            f"{self.model} (input {'x'.join(map(str, self.input_shape))}, {self.precision}) on {self.device}: "
            f"onnxruntime {self.versions['onnxruntime']} {self.provider}, torch {self.versions['torch']}"
        )
        if self.device == "cpu":
            head += f"; threads: onnxruntime {self.threads['onnxruntime']}, torch {self.threads['torch']}"
        several = len({r.precision for r in self.rows}) > 1  # a precision column only where precisions are compared

        def label(r: Row) -> str:
            return f"{r.engine:<13}  {r.precision:<9}" if several else f"{r.engine:<13}"

        column = f"{'engine':<13}  {'precision':<9}" if several else f"{'engine':<13}"
        lines = [head, f"{'batch':>5}  {column}  {'p50 ms':>8}  {'p90 ms':>8}  {'p99 ms':>8}  {'samples/s':>10}  {'vs eager':>8}"]
        for r in self.rows:
            if r.error:
                shown = r.error if r.error.startswith("skipped") else f"unavailable: {r.error}"
                lines.append(f"{r.batch:>5}  {label(r)}  {shown}")
                continue
            speedup = f"{r.speedup_vs_eager:.2f}x" if r.speedup_vs_eager is not None else "-"
            lines.append(f"{r.batch:>5}  {label(r)}  {r.p50_ms:8.2f}  {r.p90_ms:8.2f}  {r.p99_ms:8.2f}  {r.samples_per_s:10.1f}  {speedup:>8}")
        return "\n".join(lines) + "\n"


def measure(run: Callable[[], object], min_time: float, min_runs: int = 10) -> list[float]:
    """Seconds per call of `run` after a warm-up; at least `min_runs` calls and `min_time` seconds."""
    for _ in range(WARMUP_RUNS):
        run()
    times: list[float] = []
    while len(times) < min_runs or sum(times) < min_time:
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def summarize(batch: int, engine: str, times: list[float]) -> Row:
    ms = np.asarray(times) * 1000
    p50, p90, p99 = (float(v) for v in np.percentile(ms, [50, 90, 99]))
    return Row(batch, engine, p50, p90, p99, batch * len(times) / float(np.sum(times)))


def ort_runner(model: Model, x: np.ndarray) -> Callable[[], object]:
    """One onnxruntime call; on a GPU with input and output bound on the device (no copies timed)."""
    if model.device == "cpu":
        return lambda: model.session.run([model.output_name], {model.input_name: x})
    import onnxruntime as ort

    binding = model.session.io_binding()
    binding.bind_ortvalue_input(model.input_name, ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
    binding.bind_output(model.output_name, "cuda")
    return lambda: model.session.run_with_iobinding(binding)


NO_TORCH = "PyTorch is not installed (pip install 'netdsl[torch]')"


def _torch_threads() -> int:
    """The threads PyTorch would take (onnxruntime gets as many); without PyTorch, the CPU cores."""
    try:
        import torch
    except ModuleNotFoundError:
        return os.cpu_count() or 1
    return int(torch.get_num_threads())


def _torch_version() -> str:
    try:
        import torch
    except ModuleNotFoundError:
        return "not installed"
    return str(torch.__version__)


def torch_runners(graph: Graph | None, device: str, fp16: bool, compile: bool) -> dict[str, Callable[[np.ndarray], Callable[[], object]] | str]:
    """Per engine: a factory of timed calls for an input, or the reason that engine cannot run here."""
    try:
        import torch
    except ModuleNotFoundError:  # a [runtime] install times onnxruntime alone
        return {"torch eager": NO_TORCH, "torch.compile": NO_TORCH}

    if graph is None:
        reason = "the model has no netdsl metadata, so no spec to build the PyTorch model from"
        return {"torch eager": reason, "torch.compile": reason}
    if device == "cuda" and not torch.cuda.is_available():
        reason = "this torch has no CUDA device"
        return {"torch eager": reason, "torch.compile": reason}
    from netdsl.backends.pytorch import build_module

    model = build_module(graph, seed=0, device=device).eval()
    dtype = torch.float16 if fp16 else torch.float32
    model = model.to(dtype)

    def factory(module: Callable[[Any], Any]) -> Callable[[np.ndarray], Callable[[], object]]:
        def make(x: np.ndarray) -> Callable[[], object]:
            tensor = torch.from_numpy(x).to(device=device, dtype=dtype)

            def call() -> object:
                with torch.inference_mode():
                    out = module(tensor)
                if device == "cuda":
                    torch.cuda.synchronize()
                return out

            return call

        return make

    runners: dict[str, Callable[[np.ndarray], Callable[[], object]] | str] = {"torch eager": factory(model)}
    # dynamic=False: one specialized compilation per batch size, as a deployment with fixed shapes would have
    runners["torch.compile"] = factory(torch.compile(model, dynamic=False)) if compile else "skipped (--no-compile)"
    return runners


def bench(
    target: str | os.PathLike[str],
    graph: Graph | None = None,
    *,
    provider: str = "auto",
    batches: tuple[int, ...] = (1, 8, 32),
    fp16: bool = False,
    compile: bool = True,
    min_time: float = 1.0,
    precisions: tuple[str, ...] | None = None,
    calibration_spec: str | os.PathLike[str] | None = None,
) -> Report:
    """Time an ONNX file (or `graph`, exported here first) against PyTorch on the device its provider runs on, per precision.

    `precisions` default: the file's own precision (fp16 with `fp16`, else fp32). int8 calibrates on the train.data of
    `calibration_spec` (the spec benched) unless the file is int8 already.
    """
    import onnxruntime as ort

    if not batches or min(batches) < 1:
        raise input_error("--batch", f"--batch takes sizes >= 1, e.g. 1,8,32; got {','.join(map(str, batches))}")
    with tempfile.TemporaryDirectory(prefix="netdsl-bench-") as tmp:
        files = _Files(target, graph, Path(tmp), calibration_spec)
        first = files.first(precisions, fp16)
        threads = _torch_threads()
        model = open_model(first, provider, threads=threads)  # as many threads as PyTorch gets
        own = model.info.precision if model.info is not None else "fp32"
        wanted = precisions or (("fp16",) if fp16 else (own,))
        if graph is None and model.info is not None:
            from netdsl.graph.load import load_text

            graph = load_text(model.info.spec, f"{target} (metadata)")
        files.graph = graph
        if model.fixed_batch is not None and set(batches) != {model.fixed_batch}:
            raise input_error("--batch", f"{target} was exported with a fixed batch of {model.fixed_batch}; bench it with --batch {model.fixed_batch}")
        shape = [int(d) for d in (graph.input_shape if graph is not None else model.input_shape[1:])]
        from netdsl.deploy.export_guard import check_batch_bytes

        for n in batches:
            check_batch_bytes(n, shape)
        name = graph.name if graph is not None else Path(target).stem
        report = Report(
            name,
            shape,
            model.session.get_providers()[0],
            model.device,
            ", ".join(wanted),
            {"onnxruntime": threads, "torch": threads},
            {"onnxruntime": ort.__version__, "torch": _torch_version()},
        )
        plans = [_plan(p, files, model, provider, compile) for p in wanted]
        rng = np.random.default_rng(0)
        for n in batches:
            x = rng.standard_normal((n, *shape), dtype=np.float32)
            rows: list[Row] = []
            for precision, session, runners in plans:
                if isinstance(session, str):
                    rows.append(Row(n, "onnxruntime", error=session, precision=precision))
                    continue
                rows.append(replace(summarize(n, "onnxruntime", measure(ort_runner(session, x), min_time)), precision=precision))
                for engine, runner in runners.items():
                    if isinstance(runner, str):
                        rows.append(Row(n, engine, error=runner, precision=precision))
                        continue
                    try:
                        rows.append(replace(summarize(n, engine, measure(runner(x), min_time)), precision=precision))
                    except Exception as exc:  # torch.compile needs a working compiler toolchain; report, don't crash
                        rows.append(Row(n, engine, error=f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:160]}", precision=precision))
            report.rows += [_versus_eager(r, rows) for r in rows]
    return report


def _versus_eager(row: Row, rows: list[Row]) -> Row:
    """`row` with its speedup over PyTorch eager at the same batch: in its own precision, else in fp32."""
    eager = {r.precision: r.p50_ms for r in rows if r.engine == "torch eager" and r.p50_ms}
    base = eager.get(row.precision) or eager.get("fp32")
    return replace(row, speedup_vs_eager=base / row.p50_ms) if base and row.p50_ms else row


Plan = tuple[str, "Model | str", dict[str, Callable[[np.ndarray], Callable[[], object]] | str]]


def _plan(precision: str, files: _Files, first: Model, provider: str, compile: bool) -> Plan:
    """For one precision: the onnxruntime model (or why it cannot run) and the PyTorch engines (int8: onnxruntime alone)."""
    if precision == "fp16" and first.device == "cpu":
        return precision, FP16_ON_CPU, {}
    path = files.file(precision)
    if isinstance(path, str):
        return precision, path, {}
    model = first if Path(first.path) == path else open_model(path, provider, threads=_torch_threads())
    runners = {} if precision == "int8" else torch_runners(files.graph, model.device, precision == "fp16", compile)
    return precision, model, runners


class _Files:
    """The ONNX file to time in each precision: the target itself where it has that precision, else made from it in `tmp`."""

    def __init__(self, target: str | os.PathLike[str], graph: Graph | None, tmp: Path, calibration_spec: str | os.PathLike[str] | None) -> None:
        self.target, self.graph, self.tmp, self.calibration_spec = Path(target), graph, tmp, calibration_spec
        self.made: dict[str, Path | str] = {}
        self.own = "fp32"
        self.given = graph is None  # an .onnx file was given (its spec, from the metadata, is set as `graph` later)
        if graph is None:
            info = open_model(self.target, "cpu").info  # also a clear error for a file that is not a model
            self.own = info.precision if info is not None else "fp32"

    def first(self, precisions: tuple[str, ...] | None, fp16: bool) -> Path:
        """The file opened first (it settles the device): the first precision asked for that runs anywhere."""
        wanted = [p for p in precisions or (("fp16",) if fp16 else (self.own,)) if p != "fp16"] or ["fp16"]
        for precision in wanted:
            path = self.file(precision)
            if not isinstance(path, str):
                return path
        return self.target if self.given else self._fp32()

    def file(self, precision: str) -> Path | str:
        """The file for `precision`, or the reason there is none."""
        if self.given and precision == self.own:
            return self.target
        if precision not in self.made:
            self.made[precision] = self._make(precision)
        return self.made[precision]

    def _fp32(self) -> Path:
        from netdsl.deploy.onnx import export

        if self.given and self.own == "fp32":
            return self.target
        if "fp32" not in self.made:
            if self.graph is None:
                raise input_error(str(self.target), "has no netdsl metadata, so no spec to export in another precision")
            self.made["fp32"] = export(self.graph, self.tmp / f"{self.graph.name}.onnx", verify=False).path
        return Path(self.made["fp32"])

    def _make(self, precision: str) -> Path | str:
        if precision == "fp32":
            return self._fp32()
        fp32 = self._fp32()
        if precision == "fp16":
            import onnx

            from netdsl.deploy.onnx import to_fp16

            converted = self.tmp / f"{fp32.stem}.fp16.onnx"
            onnx.save_model(to_fp16(onnx.load(str(fp32))), str(converted))
            return converted
        return self._int8(fp32)

    def _int8(self, fp32: Path) -> Path | str:
        from netdsl.deploy.quantize import calibration_data, quantize
        from netdsl.errors import SpecError

        if self.calibration_spec is None or self.graph is None:
            return "skipped: int8 needs calibration data: bench a spec with train.data, or an int8 .onnx (netdsl export --int8)"
        try:
            calibration = calibration_data(self.calibration_spec, self.graph, BENCH_CALIBRATION)
        except SpecError as exc:
            if "the spec has no train.data" not in str(exc):
                raise
            return "skipped: int8 needs calibration data and the spec has no train.data (or bench an int8 .onnx from netdsl export --int8)"
        int8 = fp32.with_name(f"{fp32.stem}.int8.onnx")
        quantize(fp32, int8, calibration, None)
        return int8
