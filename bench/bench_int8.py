"""int8 against fp32 on onnxruntime (CPU): latency of ResNet-18 and MobileNetV2 at 224x224, and top-1 agreement of
digits-trained LeNet-5 and ResNet-18 (3x32x32).

Latency: random-weight models (seed 0) calibrated on 32 random inputs (speed does not depend on the weights), int8
as `netdsl export --int8` writes it (QDQ, per-channel 7-bit weights) with uint8 activations (U8S8, the default)
and with int8 ones (S8S8); the engines take turns call by call so that load from other processes hits all alike;
the ratio is of the best (minimum) latencies, the least disturbed by such load; medians are printed beside them. Agreement: each model trained briefly on the bundled digits, exported as `netdsl export RUN --int8`
does, and compared with its fp32 export on the test split. Goal (issue 16): >= 1.5x at >= 99% agreement.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402

import netdsl  # noqa: E402
from netdsl.deploy.onnx import export  # noqa: E402
from netdsl.deploy.quantize import Calibration, agreement, calibration_data, quantize  # noqa: E402
from netdsl.train.api import train  # noqa: E402

MODELS = ("resnet18", "mobilenet_v2")
BATCHES = (1, 32)
CALLS = {1: 40, 32: 6}  # timed calls per engine and batch size
THREADS = torch.get_num_threads()


def instruction_set() -> str:
    """What this CPU offers for int8 dot products: VNNI (one instruction per 4 u8 x s8 pairs) or AVX2's VPMADDUBSW."""
    try:
        flags = set(next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")).split(":")[1].split())
    except (OSError, StopIteration):
        return "unknown (no /proc/cpuinfo)"
    have = sorted(f for f in flags if f.startswith("avx") or "vnni" in f or f.startswith("amx"))
    vnni = any("vnni" in f for f in flags)
    verdict = "VNNI present: int8 dot products in one instruction" if vnni else "no VNNI: int8 runs on AVX2's VPMADDUBSW (16-bit sums, hence 7-bit weights)"
    return f"{' '.join(have)}; {verdict}"


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def runner(s: ort.InferenceSession, x: np.ndarray) -> Callable[[], object]:
    return lambda: s.run(None, {"input": x})


def latency(tmp: Path) -> None:
    for name in MODELS:
        graph = netdsl.load(ROOT / "specs" / f"{name}.yaml")
        fp32 = export(graph, tmp / f"{name}.onnx", verify=False).path
        rng = np.random.default_rng(0)
        calibration = Calibration(rng.standard_normal((32, *graph.input_shape), dtype=np.float32), np.zeros((0,)), "random", "none")
        files = {"fp32": fp32}
        for activations, kind in (("uint8", "U8S8"), ("int8", "S8S8")):
            files[f"int8 {kind}"] = tmp / f"{name}.{activations}.onnx"
            quantize(fp32, files[f"int8 {kind}"], calibration, None, activations)
        sessions = {label: session(path) for label, path in files.items()}
        for batch in BATCHES:
            x = rng.standard_normal((batch, *graph.input_shape), dtype=np.float32)
            times = interleaved({label: runner(s, x) for label, s in sessions.items()}, CALLS[batch])
            best = {label: min(t) * 1000 for label, t in times.items()}
            median = {label: statistics.median(t) * 1000 for label, t in times.items()}
            cells = "   ".join(f"{label} {best[label]:7.1f} ms (median {median[label]:7.1f})" for label in times)
            ratios = "   ".join(f"{label.split()[-1]} {best['fp32'] / v:.2f}x" for label, v in best.items() if label != "fp32")
            print(f"{name:13s} batch {batch:2d}   {cells}   fp32/int8 (best): {ratios}", flush=True)


def interleaved(runs: dict[str, Callable[[], object]], calls: int) -> dict[str, list[float]]:
    """Seconds per call of each runner, one call of each in turn: load from other processes hits all of them alike."""
    for run in runs.values():
        run()  # warm-up
    times: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(calls):
        for label, run in runs.items():
            start = time.perf_counter()
            run()
            times[label].append(time.perf_counter() - start)
    return times


def agreements(tmp: Path) -> None:
    for name, input_shape, epochs, variables in (("lenet5", None, 15, {}), ("resnet18", "3x32x32", 3, {"num_classes": 10})):
        settings = {"train.epochs": epochs, "train.data": {"source": "digits", "split": {"train": 0.7, "val": 0.1, "test": 0.2}}}
        run = train(ROOT / "specs" / f"{name}.yaml", out=tmp / "runs", settings=settings, variables=variables, input_shape=input_shape, log=lambda _: None)
        spec = run / "resolved.yaml"
        graph = netdsl.load(spec)
        calibration = calibration_data(spec, graph)
        fp32 = export(graph, tmp / f"{name}.digits.onnx", weights=run / "best.pt", verify=False).path
        for activations in ("uint8", "int8"):
            int8 = tmp / f"{name}.digits.{activations}.onnx"
            quantize(fp32, int8, calibration, None, activations)
            result = agreement(fp32, int8, calibration, "logits")
            met = "met" if result.top1 is not None and result.top1 >= 0.99 else "NOT met"
            print(
                f"{name:9s} ({epochs} epochs on digits{', ' + input_shape if input_shape else ''}), {'S8S8' if activations == 'int8' else 'U8S8'}: {result} (goal >= 99%: {met})"
            )


def main() -> None:
    print(f"onnxruntime {ort.__version__}, {THREADS} threads, {os.cpu_count()} CPUs; instruction set: {instruction_set()}")
    with tempfile.TemporaryDirectory(prefix="bench-int8-") as tmp:
        if "--agreement-only" not in sys.argv:
            latency(Path(tmp))
        agreements(Path(tmp))


if __name__ == "__main__":
    main()
