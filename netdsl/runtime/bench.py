"""`netdsl bench`: onnxruntime against PyTorch eager and torch.compile, same device, same inputs, same run.

Each engine warms up, then runs until it has at least `min_runs` timings and `min_time` seconds; latencies are
per batch (p50/p90/p99) and throughput is samples per second over the timed runs. On a GPU the input already
lives on the device for every engine (onnxruntime through I/O binding) and each timing waits for the device.
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
WARMUP_RUNS = 3


@dataclass(frozen=True)
class Row:
    """One engine at one batch size: latency percentiles in milliseconds and samples per second, or why it could not run."""

    batch: int
    engine: str
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    samples_per_s: float | None = None
    speedup_vs_eager: float | None = None
    error: str = ""


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
        lines = [head, f"{'batch':>5}  {'engine':<13}  {'p50 ms':>8}  {'p90 ms':>8}  {'p99 ms':>8}  {'samples/s':>10}  {'vs eager':>8}"]
        for r in self.rows:
            if r.error:
                lines.append(f"{r.batch:>5}  {r.engine:<13}  unavailable: {r.error}")
                continue
            speedup = f"{r.speedup_vs_eager:.2f}x" if r.speedup_vs_eager is not None else "-"
            lines.append(f"{r.batch:>5}  {r.engine:<13}  {r.p50_ms:8.2f}  {r.p90_ms:8.2f}  {r.p99_ms:8.2f}  {r.samples_per_s:10.1f}  {speedup:>8}")
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


def torch_runners(graph: Graph | None, device: str, fp16: bool, compile: bool) -> dict[str, Callable[[np.ndarray], Callable[[], object]] | str]:
    """Per engine: a factory of timed calls for an input, or the reason that engine cannot run here."""
    import torch

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
) -> Report:
    """Time an ONNX file (or `graph`, exported here first) against PyTorch on the device its provider runs on."""
    import onnxruntime as ort
    import torch

    if not batches or min(batches) < 1:
        raise input_error("--batch", f"--batch takes sizes >= 1, e.g. 1,8,32; got {','.join(map(str, batches))}")
    with tempfile.TemporaryDirectory(prefix="netdsl-bench-") as tmp:
        path = _onnx_file(target, graph, fp16, Path(tmp))
        model = open_model(path, provider, threads=torch.get_num_threads())  # as many threads as PyTorch gets
        fp16 = fp16 or (model.info is not None and model.info.precision == "fp16")
        if graph is None and model.info is not None:
            from netdsl.spec.load import load_text

            graph = load_text(model.info.spec, f"{target} (metadata)")
        if model.fixed_batch is not None and set(batches) != {model.fixed_batch}:
            raise input_error("--batch", f"{target} was exported with a fixed batch of {model.fixed_batch}; bench it with --batch {model.fixed_batch}")
        shape = [int(d) for d in (graph.input_shape if graph is not None else model.input_shape[1:])]
        from netdsl.runtime.cli import check_batch_bytes

        for n in batches:
            check_batch_bytes(n, shape)
        name = graph.name if graph is not None else Path(target).stem
        report = Report(
            name,
            shape,
            model.session.get_providers()[0],
            model.device,
            "fp16" if fp16 else "fp32",
            {"onnxruntime": torch.get_num_threads(), "torch": torch.get_num_threads()},
            {"onnxruntime": ort.__version__, "torch": torch.__version__},
        )
        runners = torch_runners(graph, model.device, fp16, compile)
        rng = np.random.default_rng(0)
        for n in batches:
            x = rng.standard_normal((n, *shape), dtype=np.float32)
            rows = [summarize(n, "onnxruntime", measure(ort_runner(model, x), min_time))]
            for engine, runner in runners.items():
                if isinstance(runner, str):
                    rows.append(Row(n, engine, error=runner))
                    continue
                try:
                    rows.append(summarize(n, engine, measure(runner(x), min_time)))
                except Exception as exc:  # torch.compile needs a working compiler toolchain; report, don't crash
                    rows.append(Row(n, engine, error=f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:160]}"))
            eager = next((r for r in rows if r.engine == "torch eager" and r.p50_ms), None)
            report.rows += [replace(r, speedup_vs_eager=eager.p50_ms / r.p50_ms) if eager and eager.p50_ms and r.p50_ms else r for r in rows]
    return report


def _onnx_file(target: str | os.PathLike[str], graph: Graph | None, fp16: bool, tmp: Path) -> Path:
    """The ONNX file to time: `target` itself (converted to fp16 if asked), or `graph` exported into tmp."""
    if graph is not None:
        from netdsl.backends.onnx import export

        return export(graph, tmp / f"{graph.name}.onnx", fp16=fp16, verify=False).path
    path = Path(target)
    if not fp16:
        return path
    import onnx

    from netdsl.backends.onnx import to_fp16

    info = open_model(path, "cpu").info  # also a clear error for a file that is not a model
    if info is not None and info.precision == "fp16":
        return path
    converted = tmp / f"{path.stem}.fp16.onnx"
    onnx.save_model(to_fp16(onnx.load(str(path))), str(converted))
    return converted
