"""ONNX export speed on the CPU: onnxruntime against PyTorch eager for netdsl's ResNet-18 and MobileNetV2 exports.

Both run the same weights on the same inputs in the same process, with the same number of threads; the two
engines alternate in rounds so that drift on the machine hits both alike. Printed per model and batch size:
median latency of each, the ratio eager / onnxruntime against the issue's goal (at batch 1: ResNet-18 >= 1.8x,
MobileNetV2 >= 3.5x, what a hand export of equivalent models reached on this machine), and the achieved
GFLOP/s (2 x MACs x batch / time, MACs from netdsl's analysis) as a fraction of the machine's float32 matmul
GFLOP/s, measured in the same run. For ResNet-18 it also times a direct torch.onnx export of a hand-written
torchvision-style ResNet-18 with the same weights: netdsl's export should be no slower a graph.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import torch  # noqa: E402

import netdsl  # noqa: E402
from netdsl.analysis.counts import analyze  # noqa: E402
from netdsl.backends.pytorch import build_module  # noqa: E402
from netdsl.deploy.bench import measure  # noqa: E402
from netdsl.deploy.onnx import export  # noqa: E402
from netdsl.runtime.session import Model, open_model  # noqa: E402
from tests.handwritten import ResNet18  # noqa: E402

MODELS = [("resnet18", 1.8), ("mobilenet_v2", 3.5)]  # (spec, goal for eager / onnxruntime at batch 1)
BATCHES = (1, 32)
ROUNDS = 6
THREADS = os.cpu_count() or 1


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    """The best float32 matmul rate of this machine (torch's and numpy's BLAS, THREADS threads): the dense-compute ceiling."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    x, y = a.numpy(), b.numpy()
    rates = []
    for fn in (lambda: torch.mm(a, b), lambda: x @ y):
        fn()
        rates.append(2 * n**3 / min(_timed(fn) for _ in range(repeats)) / 1e9)
    return max(rates)


def _timed(fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


def alternate(engines: dict[str, Callable[[], object]], min_time: float, min_runs: int) -> dict[str, list[float]]:
    """Per engine, the median seconds per call of each round; the engines take turns, round after round."""
    medians: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(ROUNDS):
        for name, run in engines.items():
            medians[name].append(statistics.median(measure(run, min_time, min_runs)))
    return medians


def spread(a: list[float], b: list[float]) -> str:
    """The per-round ratios a/b as 'min-max', to show how much the machine drifted."""
    ratios = [x / y for x, y in zip(a, b)]
    return f"{min(ratios):.2f}-{max(ratios):.2f}"


def op_counts(path: Path) -> str:
    return ", ".join(f"{op} {n}" for op, n in sorted(Counter(node.op_type for node in onnx.load(str(path)).graph.node).items()))


def calls(model: Model, x: np.ndarray) -> Callable[[], object]:
    return partial(model.session.run, None, {model.input_name: x})


def hand_export(folder: Path) -> Path:
    """ResNet-18 written by hand as torchvision writes it, exported with torch.onnx's defaults: the graph to match."""
    model = ResNet18().eval()
    model.load_state_dict(build_module(netdsl.load(ROOT / "specs" / "resnet18.yaml"), seed=0).state_dict())
    program = torch.onnx.export(model, (torch.randn(1, 3, 224, 224),), dynamo=True, verbose=False)
    assert program is not None
    program.save(str(folder / "hand_resnet18.onnx"))
    return folder / "hand_resnet18.onnx"


def compare(name: str, goal: float, peak: float, folder: Path) -> None:
    graph = netdsl.load(ROOT / "specs" / f"{name}.yaml")
    macs = analyze(graph).macs
    path = export(graph, folder / f"{name}.onnx").path  # verified: onnx.checker, onnxruntime vs PyTorch
    session = open_model(path, "cpu", threads=THREADS)
    hand = open_model(hand_export(folder), "cpu", threads=THREADS) if name == "resnet18" else None
    model = build_module(graph, seed=0).eval()  # the weights export() used (seed 0)
    for batch in BATCHES:
        x = np.random.default_rng(0).standard_normal((batch, *graph.input_shape), dtype=np.float32)
        engines: dict[str, Callable[[], object]] = {"ort": calls(session, x), "eager": partial(model, torch.from_numpy(x))}
        if hand is not None and batch == 1:  # the hand export has a fixed batch of 1
            engines["hand"] = calls(hand, x)
        with torch.inference_mode():
            rounds = alternate(engines, *((0.5, 10) if batch == 1 else (1.0, 2)))
        t = {engine: statistics.median(r) for engine, r in rounds.items()}
        flops = 2 * macs * batch
        ratio = t["eager"] / t["ort"]
        verdict = f"goal >= {goal}x: {'met' if ratio >= goal else 'MISSED'}" if batch == 1 else ""
        print(
            f"{name:13s} batch {batch:2d}  onnxruntime {t['ort'] * 1000:8.2f} ms  eager {t['eager'] * 1000:8.2f} ms  "
            f"ratio {ratio:5.2f}x (rounds {spread(rounds['eager'], rounds['ort'])})  "
            f"GFLOP/s: onnxruntime {flops / t['ort'] / 1e9:6.1f} ({flops / t['ort'] / 1e9 / peak:.0%} of matmul), "
            f"eager {flops / t['eager'] / 1e9:6.1f} ({flops / t['eager'] / 1e9 / peak:.0%})  {verdict}",
            flush=True,
        )
        if "hand" in t:
            print(
                f"{'':13s} hand-written ResNet-18 exported with torch.onnx's defaults: {t['hand'] * 1000:.2f} ms; "
                f"netdsl / hand {t['ort'] / t['hand']:.2f} (rounds {spread(rounds['ort'], rounds['hand'])})",
                flush=True,
            )
    if hand is not None:
        same = op_counts(path) == op_counts(Path(hand.path))
        print(f"{'':13s} ONNX nodes: netdsl {op_counts(path)}; hand export {'the same' if same else op_counts(Path(hand.path))}")


def main() -> None:
    import onnxruntime

    torch.set_num_threads(THREADS)
    peak = matmul_gflops()
    print(
        f"onnxruntime {onnxruntime.__version__} (CPUExecutionProvider) vs torch {torch.__version__} eager, float32, {THREADS} threads each; "
        f"float32 matmul (2048^3, best of torch and numpy): {peak:.1f} GFLOP/s"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name, goal in MODELS:
            compare(name, goal, peak, Path(tmp))
    print(f"float32 matmul again: {matmul_gflops():.1f} GFLOP/s (drift check)")


if __name__ == "__main__":
    main()
