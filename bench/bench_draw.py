"""`netdsl draw` speed: whole-process times of drawing ResNet-152, against `netdsl summarize` of the same spec in the same run.

Prints medians (of REPEATS runs) and the ratio draw / summarize, for the SVG at the default depth, every layer (depth 0)
and the HTML page. Goal (issue 16): `netdsl draw specs/resnet152.yaml -o x.svg` < 1 s for the whole process.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = "specs/resnet152.yaml"
REPEATS = 7


def process_time(args: list[str]) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "netdsl", *args], check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        summarize = process_time(["summarize", SPEC])
        print(f"netdsl summarize {SPEC}: {summarize:.3f} s (median of {REPEATS})")
        for label, extra in (("-o x.svg", []), ("-o x.svg --depth 0", ["--depth", "0"]), ("-o x.html", [])):
            out = str(Path(tmp) / ("x.html" if "html" in label else "x.svg"))
            seconds = process_time(["draw", SPEC, "-o", out, *extra])
            print(f"netdsl draw {SPEC} {label}: {seconds:.3f} s, {seconds / summarize:.2f}x summarize, {Path(out).stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
