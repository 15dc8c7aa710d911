"""Text format speed: parse + check of specs/resnet152.net against its YAML twin, in the same run.

Prints medians over interleaved repeats and the ratio text / YAML for
  - parse: the raw tree only (lark LALR vs libyaml's CSafeLoader),
  - parse + check: `netdsl.load` (parse, import the block library, schema check, expand, infer every shape),
  - process: a whole `netdsl check` process.
Goal (issue 8): parse + check of the text form at most 1.5x the YAML's.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import netdsl  # noqa: E402
from netdsl.lang.formats import parse_tree  # noqa: E402
from netdsl.lang.text import parser  # noqa: E402

REPEATS = 41
PROCESS_REPEATS = 7
SPECS = {"yaml": ROOT / "specs" / "resnet152.yaml", "net": ROOT / "specs" / "resnet152.net"}


def medians(tasks: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each task, the tasks interleaved so that drift affects them alike."""
    times: dict[str, list[float]] = {name: [] for name in tasks}
    for _ in range(repeats):
        for name, task in tasks.items():
            start = time.perf_counter()
            task()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def report(what: str, result: dict[str, float]) -> float:
    ratio = result["net"] / result["yaml"]
    print(f"{what:16s} yaml {result['yaml'] * 1000:8.2f} ms   net {result['net'] * 1000:8.2f} ms   net/yaml {ratio:5.2f}x")
    return ratio


def main() -> None:
    start = time.perf_counter()
    parser()
    print(f"text parser ready in {(time.perf_counter() - start) * 1000:.1f} ms (grammar tables from lark's cache after the first run)")
    texts = {fmt: path.read_text() for fmt, path in SPECS.items()}
    for path in SPECS.values():
        netdsl.load(path)  # warm caches (schema validator, expression parser) for both
    print(f"specs/resnet152: {len(netdsl.load(SPECS['net']).nodes)} layers; {REPEATS} interleaved repeats, medians")
    report("parse", medians({fmt: (lambda f=fmt: parse_tree(texts[f], str(SPECS[f]))) for fmt in SPECS}, REPEATS))
    ratio = report("parse + check", medians({fmt: (lambda f=fmt: netdsl.load(SPECS[f])) for fmt in SPECS}, REPEATS))
    command = [sys.executable, "-m", "netdsl", "check"]
    report(
        "process",
        medians({fmt: (lambda f=fmt: subprocess.run([*command, str(SPECS[f])], check=True, stdout=subprocess.DEVNULL)) for fmt in SPECS}, PROCESS_REPEATS),
    )
    print(f"goal: parse + check net/yaml <= 1.5x: {'met' if ratio <= 1.5 else 'MISSED'} ({ratio:.2f}x)")


if __name__ == "__main__":
    main()
