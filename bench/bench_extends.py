"""`extends:` cost: `netdsl summarize` of ResNet-50 written flat against the same network through a three-level chain.

The chain, written to a temporary folder: base.yaml (specs/resnet50.yaml as it is) <- child.yaml (a new name, 10
classes, the head replaced by name) <- grandchild.yaml (the name and 1000 classes back), so both summaries are the same
network and print the same table (checked). Prints medians and the ratio chain / flat for
  - process: a whole `netdsl summarize` process each, interleaved flat, chain, flat, chain, ...;
  - compose: netdsl.lang.extends.compose() of the grandchild alone, the first in a fresh process (its two bases read
    and parsed) and again in the same process (parsed trees kept).
Goal (issue 19): the chain adds at most 10% to the flat spec's summarize (ratio <= 1.10).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_text import medians  # noqa: E402  (bench/ is on sys.path when a bench runs)

from netdsl.lang.extends import compose  # noqa: E402
from netdsl.lang.formats import parse_tree  # noqa: E402

PROCESS_REPEATS = 15
COMPOSE_REPEATS = 201
CHILD = "extends: base.yaml\nname: resnet50_10\nparams: {num_classes: 10}\nlayers: {replace: {fc: {linear: {out: num_classes}}}}\n"
GRANDCHILD = "extends: child.yaml\nname: resnet50\nparams: {num_classes: 1000}\n"
FIRST_COMPOSE = """import sys, time
from netdsl.lang.extends import compose
from netdsl.lang.formats import parse_tree
tree = parse_tree(open('grandchild.yaml').read(), 'grandchild.yaml')
start = time.perf_counter()
composed = compose(tree, 'grandchild.yaml')
assert not composed.problems and len(composed.sources) == 2, composed.problems
print(time.perf_counter() - start)
"""


def summarize(folder: Path, spec: str) -> str:
    return subprocess.run([sys.executable, "-m", "netdsl", "summarize", spec], check=True, capture_output=True, text=True, cwd=folder).stdout


def first_compose(folder: Path) -> float:
    """compose() of the grandchild as the first thing a fresh process composes."""
    out = subprocess.run([sys.executable, "-c", FIRST_COMPOSE], check=True, capture_output=True, text=True, cwd=folder)
    return float(out.stdout)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "flat.yaml").write_text((ROOT / "specs" / "resnet50.yaml").read_text())
        (folder / "base.yaml").write_text((ROOT / "specs" / "resnet50.yaml").read_text())
        (folder / "child.yaml").write_text(CHILD)
        (folder / "grandchild.yaml").write_text(GRANDCHILD)
        flat, chain = summarize(folder, "flat.yaml"), summarize(folder, "grandchild.yaml")
        assert flat == chain, "the chain should summarize to the flat spec's table"
        print(f"resnet50: flat.yaml vs grandchild.yaml -> child.yaml -> base.yaml (same table, {len(flat.splitlines())} lines)")
        result = medians({"flat": lambda: summarize(folder, "flat.yaml"), "chain": lambda: summarize(folder, "grandchild.yaml")}, PROCESS_REPEATS)
        ratio = result["chain"] / result["flat"]
        print(
            f"process  ({PROCESS_REPEATS} interleaved runs each, medians): flat {result['flat'] * 1000:6.1f} ms   chain {result['chain'] * 1000:6.1f} ms   chain/flat {ratio:5.3f}x"
        )
        cold = statistics.median(first_compose(folder) for _ in range(PROCESS_REPEATS))
        text = (folder / "grandchild.yaml").read_text()
        tree = parse_tree(text, str(folder / "grandchild.yaml"))
        compose(tree, str(folder / "grandchild.yaml"))
        warm = medians({"compose": lambda: compose(tree, str(folder / "grandchild.yaml"))}, COMPOSE_REPEATS)["compose"]
        print(f"compose  first in a process {cold * 1000:6.2f} ms (median of {PROCESS_REPEATS})   again {warm * 1000:6.3f} ms (median of {COMPOSE_REPEATS})")
        print(f"goal: chain/flat <= 1.10: {'met' if ratio <= 1.10 else 'MISSED'} ({ratio:.3f}x)")


if __name__ == "__main__":
    main()
