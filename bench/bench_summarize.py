"""Front-end speed: whole-process `netdsl summarize` times, and how checking cost grows with depth.

Prints medians and ratios against baselines measured in the same run:
  - process: `python -c pass` (interpreter start) and `python -c "import yaml, jsonschema"` (the front end's imports);
  - scaling: in-process load + analyze of generated pre-activation ResNets of growing depth, per layer,
    as a ratio to the smallest one (a flat ratio means cost linear in depth).
Goals (issues 3 and 4): summarize of the largest zoo spec < 0.3 s; ResNet-1001 < 1 s; linear growth.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import netdsl  # noqa: E402
from netdsl.analysis.counts import analyze  # noqa: E402
from netdsl.graph.input_sizes import input_rule  # noqa: E402

REPEATS = 7


def process_time(args: list[str]) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def deep_spec(blocks: int) -> str:
    """A CIFAR pre-activation bottleneck ResNet with `blocks` blocks per stage (depth 9 * blocks + 2)."""
    return (ROOT / "specs" / "preact_resnet164.yaml").read_text().replace("n: 18", f"n: {blocks}")


def in_process_time(text: str) -> tuple[float, int]:
    times, nodes = [], 0
    for _ in range(REPEATS):
        start = time.perf_counter()
        graph = netdsl.load_text(text, str(ROOT / "specs" / "generated.yaml"))
        analyze(graph, 3)
        input_rule(graph)
        times.append(time.perf_counter() - start)
        nodes = len(graph.nodes)
    return statistics.median(times), nodes


def main() -> None:
    python = sys.executable
    bare = process_time([python, "-c", "pass"])
    imports = process_time([python, "-c", "import yaml, jsonschema"])
    print(f"baseline: python -c pass {bare * 1000:.0f} ms; import yaml, jsonschema {imports * 1000:.0f} ms")
    print(f"{'spec':28s} {'layers':>7s} {'time':>8s} {'x pass':>7s} {'x imports':>9s}")
    for name in ("lenet5", "vgg19", "resnet152", "densenet201", "inception_v3", "preact_resnet1001"):
        spec = f"specs/{name}.yaml"
        t = process_time([python, "-m", "netdsl", "summarize", spec])
        layers = len(netdsl.load(ROOT / spec).nodes)
        print(f"{'summarize ' + name:28s} {layers:7d} {t * 1000:6.0f} ms {t / bare:7.1f} {t / imports:9.2f}")
    print("\nscaling (in process: load + analyze + input rule), pre-activation bottleneck ResNets:")
    print(f"{'depth':>6s} {'nodes':>6s} {'time':>9s} {'us/node':>8s} {'ratio':>6s}")
    first = None
    for blocks in (6, 12, 24, 48, 111, 222):
        t, nodes = in_process_time(deep_spec(blocks))
        per_node = t / nodes
        first = first or per_node
        print(f"{9 * blocks + 2:6d} {nodes:6d} {t * 1000:7.1f} ms {per_node * 1e6:8.1f} {per_node / first:6.2f}")


if __name__ == "__main__":
    main()
