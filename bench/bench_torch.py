"""PyTorch backend speed: compiled specs against hand-written torchvision-style models, same batch, same run, CPU.

Prints the median forward+backward step time of each and the ratio netdsl / hand-written (goal <= 1.02),
then model construction time (from the IR, and from the spec file) against the hand-written constructor.
The two models of a pair run alternately, step by step, so drift on the machine hits both alike.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import netdsl  # noqa: E402
from netdsl.backends.pytorch import build_module  # noqa: E402
from tests.handwritten import DenseNet121, ResNet18  # noqa: E402

BATCH, SIZE, STEPS, WARMUP = 8, 112, 21, 3


def step(model: torch.nn.Module, x: torch.Tensor) -> float:
    start = time.perf_counter()
    model.zero_grad(set_to_none=True)
    model(x).sum().backward()
    return time.perf_counter() - start


def compare(name: str, spec: str, hand: type[torch.nn.Module]) -> None:
    torch.manual_seed(0)
    theirs, twin = hand().train(), hand().train()  # the twin measures the noise floor: same model, same code
    ours = netdsl.compile(ROOT / spec, input_shape=f"3x{SIZE}x{SIZE}").train()
    ours.load_state_dict(theirs.state_dict())
    twin.load_state_dict(theirs.state_dict())
    x = torch.randn(BATCH, 3, SIZE, SIZE)
    runs = [("netdsl", ours), ("hand", theirs), ("twin", twin)]
    times: dict[str, list[float]] = {label: [] for label, _ in runs}
    for i in range(WARMUP + STEPS):
        for label, model in runs[i % 3 :] + runs[: i % 3]:  # rotate who goes first
            t = step(model, x)
            if i >= WARMUP:
                times[label].append(t)
    a, b, c = (statistics.median(times[k]) for k in ("netdsl", "hand", "twin"))
    print(f"{name:12s} fwd+bwd  netdsl {a * 1000:7.1f} ms  hand-written {b * 1000:7.1f} ms  ratio {a / b:.3f}  (noise: hand-written twin {c / b:.3f})")
    graph = netdsl.load(ROOT / spec)
    build = statistics.median(_timed(lambda: build_module(graph)) for _ in range(5))
    full = statistics.median(_timed(lambda: netdsl.compile(ROOT / spec)) for _ in range(5))
    ctor = statistics.median(_timed(hand) for _ in range(5))
    print(
        f"{name:12s} build    from IR {build * 1000:6.1f} ms  from file {full * 1000:6.1f} ms  hand-written {ctor * 1000:6.1f} ms  ratios {build / ctor:.2f} / {full / ctor:.2f}"
    )


def _timed(fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {BATCH}, input 3x{SIZE}x{SIZE}, median of {STEPS} steps")
    compare("resnet18", "specs/resnet18.yaml", ResNet18)
    compare("densenet121", "specs/densenet121.yaml", DenseNet121)


if __name__ == "__main__":
    main()
