"""Training throughput: `netdsl train` against a hand-written PyTorch loop, same model, data and settings, same run.

Both train the same compiled module on the same in-memory digits (70/10/20 split, Adam 1e-3, batch 64) on the CPU.
The netdsl figure is the samples/s it records per epoch; the hand loop is timed over the same epochs.
Also the whole `netdsl train specs/lenet5.yaml` process (the demo) against a hand-written script. Goal: >= 0.95x.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import netdsl  # noqa: E402
from netdsl.train.api import prepare, train  # noqa: E402
from netdsl.train.sources import load_splits  # noqa: E402
from netdsl.train.splits import Reading  # noqa: E402

HAND_SCRIPT = """
import time; t0 = time.perf_counter()
import torch, torch.nn as nn, torch.nn.functional as F
from netdsl.train.sources import read_digits
x, y, _ = read_digits()
x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0)); tr, te = perm[:1258], perm[1438:]
x = (x - x[tr].mean()) / x[tr].std()
m = nn.Sequential(nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Flatten(),
                  nn.Linear(400, 120), nn.Tanh(), nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, 10))
opt = torch.optim.Adam(m.parameters(), 1e-3)
for epoch in range(15):
    p = tr[torch.randperm(len(tr))]
    for i in range(0, len(p), 64):
        b = p[i:i + 64]; opt.zero_grad(); F.cross_entropy(m(x[b]), y[b]).backward(); opt.step()
with torch.no_grad(): acc = (m(x[te]).argmax(1) == y[te]).float().mean().item()
print(f"{acc:.4f} {time.perf_counter() - t0:.2f}")
"""


def hand_loop(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, batch: int) -> list[float]:
    """Samples/s per epoch of a plain loop: shuffle, slice, forward, cross-entropy, backward, Adam step."""
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    model.train()
    rates = []
    for epoch in range(epochs):
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(epoch))
        start = time.perf_counter()
        for i in range(0, len(order), batch):
            idx = order[i : i + batch]
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        rates.append(len(y) / (time.perf_counter() - start))
    return rates


def compare(name: str, spec: str, epochs: int, rounds: int, input_shape: str | None) -> None:
    """Median samples/s over `rounds` alternating runs of each (hand loop first, then netdsl first, ...).

    Each run's first epoch (allocator and kernel warm-up) is left out when a run has more than two epochs.
    """
    settings = {"train.epochs": epochs, "train.optimizer.name": "adam", "train.optimizer.lr": 0.001, "train.batch_size": 64, "train.data.source": "digits"}
    variables = {"num_classes": 10} if "num_classes" in (ROOT / spec).read_text() else {}
    prep = prepare(ROOT / spec, settings=settings, variables=variables, input_shape=input_shape)
    data = load_splits(prep.cfg["data"], prep.graph.input_shape, prep.base)
    batches = list(data.train.batches(Reading(batch_size=256), epoch=0, seed=0, shuffle=False))  # the training split in stored order
    data.close()
    mean, std = torch.tensor(data.mean).view(1, -1, 1, 1), torch.tensor(data.std).view(1, -1, 1, 1)
    x = (torch.cat([b[0] for b in batches]) - mean) / std
    y = torch.cat([b[1] for b in batches])
    skip = 1 if epochs > 2 else 0
    ours: list[float] = []
    theirs: list[float] = []

    def netdsl_run() -> None:
        with tempfile.TemporaryDirectory() as out:
            run = train(ROOT / spec, out=out, settings=settings, variables=variables, input_shape=input_shape, log=lambda *_: None)
            rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        ours.extend(r["samples_per_s"] for r in rows[skip:])

    def hand_run() -> None:
        theirs.extend(hand_loop(netdsl.compile(prep.graph, seed=0), x, y, epochs, 64)[skip:])

    for i in range(rounds):
        for run in (hand_run, netdsl_run) if i % 2 == 0 else (netdsl_run, hand_run):
            run()
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"{name:10s} netdsl train {a:8,.0f} samples/s   hand-written loop {b:8,.0f} samples/s   ratio {a / b:.3f}   ({len(ours)} epochs each)")


def demo() -> None:
    runs = []
    for _ in range(3):
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "netdsl", "train", "specs/lenet5.yaml", "--out", out], cwd=ROOT, capture_output=True, text=True, check=True
            )
            ours = time.perf_counter() - start
        accuracy = proc.stdout.split("test_accuracy ")[1].split()[0]
        start = time.perf_counter()
        hand = subprocess.run([sys.executable, "-c", HAND_SCRIPT], capture_output=True, text=True, check=True).stdout.split()
        runs.append((ours, time.perf_counter() - start, accuracy, hand[0]))
    ours, theirs = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
    print(
        f"demo       netdsl train specs/lenet5.yaml {ours:.2f} s (test accuracy {runs[-1][2]})   hand-written script {theirs:.2f} s (accuracy {runs[-1][3]})   ratio {theirs / ours:.3f}"
    )


def main() -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    compare("lenet5", "specs/lenet5.yaml", 6, 4, None)
    compare("resnet18", "specs/resnet18.yaml", 2, 2, "3x32x32")  # digits at 32x32, 3 channels: CPU-sized
    demo()


if __name__ == "__main__":
    main()
