"""Training at real scale: memory, throughput, data workers, processes and the demo of `netdsl train`, each against a baseline measured in the same run.

Every figure comes from `netdsl train` run as its own process (`python -m netdsl train`), on data generated in a temporary
folder (removed at the end); the baselines run in fresh processes too, so both sides start equally cold.

- memory: one epoch of a small CNN (two convolutions, global average pool, linear 4; batch 64, --workers workers) on
  folders of --small and --large 64x64 RGB PNGs (4 classes: noise plus a class colour), --rounds alternating rounds,
  medians. Peak resident memory of the process tree (the trainer and its DataLoader workers: VmRSS summed every 50 ms;
  a forked worker's RSS counts the parent's pages it maps, so shared pages count once per process) and the trainer's
  own peak (its VmHWM; ru_maxrss from wait4, the largest of it and the children it reaped, is listed per run).
  Goal: the large folder needs <= 1.15x the small one's memory (memory flat in the data set's size).
- throughput: images/s of netdsl's training epoch on the large folder (metrics.jsonl samples_per_s: from the first batch
  requested, worker start included, to the last step) against a hand-written Dataset (PIL decode, [0, 1], normalized
  with the mean/std netdsl recorded in resolved.yaml) + DataLoader(shuffle, persistent workers) + plain loop, timed the
  same way: same model (netdsl.compile, seed 0), Adam 1e-3, cross-entropy, workers, batch 64 and training images,
  one epoch, --rounds alternating rounds. Goal: >= 0.95x.
- workers: images/s of netdsl's training epoch with --workers workers against 0 where decoding dominates (--decode-images
  256x256 JPEGs, quality 90, resized to 64x64 by netdsl; an 8x8 average pool, flatten, linear 4). Goal: >= 1.5x.
- processes: `netdsl train specs/lenet5.yaml --epochs 4` with 1 process and with --nproc 2: the same test metrics
  (|difference| <= 1e-6) and the per-epoch wall times (the `time` column: training and validation).
- demo: whole-process time of `netdsl train specs/lenet5.yaml` (median of --demo-runs) and its test accuracy (goal >= 0.97);
  with --baseline-python/--baseline-root (another checkout), the same command there, alternating. Goal: <= 1.1x.

    .venv/bin/python bench/bench_data.py [--only memory,throughput,workers,processes,demo] [--small 2000 --large 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("memory", "throughput", "workers", "processes", "demo")
CLASS_COLOURS = np.array([(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40)], dtype=np.float32)

CNN_LAYERS = """\
  - conv: {out: 16, kernel: 3, stride: 2, padding: 1}   # 16x32x32
  - relu
  - conv: {out: 32, kernel: 3, stride: 2, padding: 1}   # 32x16x16
  - relu
  - global_avgpool
  - linear: {out: 4}
"""
TINY_LAYERS = """\
  - avgpool: {kernel: 8}   # 3x8x8
  - flatten
  - linear: {out: 4}
"""

HAND_LOOP = """
import json, sys, time
import numpy as np, torch, torch.nn.functional as F
from PIL import Image
import netdsl

job = json.loads(open(sys.argv[1]).read())

class Images(torch.utils.data.Dataset):
    def __init__(self, files, labels, mean, std):
        self.files, self.labels = files, labels
        self.mean, self.std = torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1)

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        with Image.open(self.files[i]) as img:
            x = torch.from_numpy(np.asarray(img.convert("RGB"))).permute(2, 0, 1).float() / 255
        return (x - self.mean) / self.std, self.labels[i]

model = netdsl.compile(netdsl.load(job["spec"]), seed=0)
opt = torch.optim.Adam(model.parameters(), 1e-3)
workers = job["workers"]
loader = torch.utils.data.DataLoader(
    Images(job["files"], job["labels"], job["mean"], job["std"]), batch_size=job["batch_size"], shuffle=True,
    num_workers=workers, persistent_workers=workers > 0, generator=torch.Generator().manual_seed(0),
)
model.train()
start, seen = time.perf_counter(), 0
for x, y in loader:
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    opt.step()
    seen += len(y)
print(json.dumps({"images_per_s": seen / (time.perf_counter() - start), "images": seen}))
"""


# ---------------------------------------------------------------- data and specs


def write_image(job: tuple[str, int, int, int, str]) -> None:
    """One deterministic image: noise (seeded by its index) blended with its class colour."""
    from PIL import Image

    path, index, label, size, kind = job
    noise = np.random.default_rng(index).integers(0, 256, (size, size, 3)).astype(np.float32)
    pixels = (0.5 * noise + 0.5 * CLASS_COLOURS[label]).astype(np.uint8)
    if kind == "png":
        Image.fromarray(pixels).save(path)
    else:
        Image.fromarray(pixels).save(path, quality=90)


def make_folder(root: Path, count: int, size: int, kind: str) -> Path:
    """`count` images of size x size in 4 class folders (image i in class i % 4), written by a process pool."""
    jobs = []
    for label in range(len(CLASS_COLOURS)):
        (root / f"class{label}").mkdir(parents=True)
    for i in range(count):
        label = i % len(CLASS_COLOURS)
        jobs.append((str(root / f"class{label}" / f"{i:06d}.{kind}"), i, label, size, kind))
    with Pool(os.cpu_count() or 1) as pool:
        pool.map(write_image, jobs, chunksize=256)
    return root


def write_spec(path: Path, name: str, layers: str, folder: Path, workers: int) -> Path:
    path.write_text(
        f"netdsl: 1\nname: {name}\ninput: 3x64x64\nlayers:\n{layers}"
        f"train:\n  data: {{source: image_folder, path: {folder}}}\n  epochs: 1\n  batch_size: 64\n  workers: {workers}\n"
    )
    return path


class Workspace:
    """The temporary folder: image folders and specs, each made once when a part first needs it."""

    def __init__(self, root: Path, workers: int) -> None:
        self.root, self.workers = root, workers
        self.made: dict[tuple[Any, ...], Path] = {}
        self.runs = 0

    def once(self, key: tuple[Any, ...], make: Callable[[], Path]) -> Path:
        if key not in self.made:
            self.made[key] = make()
        return self.made[key]

    def png_folder(self, count: int) -> Path:
        return self.once(("png", count), lambda: make_folder(self.root / f"png{count}", count, 64, "png"))

    def jpeg_folder(self, count: int) -> Path:
        return self.once(("jpeg", count), lambda: make_folder(self.root / f"jpeg{count}", count, 256, "jpg"))

    def cnn_spec(self, count: int) -> Path:
        folder = self.png_folder(count)
        return self.once(("cnn", count), lambda: write_spec(self.root / f"cnn{count}.yaml", "cnn4", CNN_LAYERS, folder, self.workers))

    def tiny_spec(self, count: int, workers: int) -> Path:
        folder = self.jpeg_folder(count)
        return self.once(("tiny", count, workers), lambda: write_spec(self.root / f"tiny{count}-w{workers}.yaml", "tiny", TINY_LAYERS, folder, workers))

    def out_dir(self) -> Path:
        self.runs += 1
        return self.root / "runs" / str(self.runs)


# ---------------------------------------------------------------- running processes


def descendants(pid: int) -> list[int]:
    """The process and all its descendants, from /proc/<pid>/task/<tid>/children."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:  # it has just exited
            continue
    return found


def status_kib(pid: int, key: str = "VmRSS") -> int:
    """A memory figure of /proc/<pid>/status in KiB: VmRSS (resident now) or VmHWM (the resident peak so far)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0  # exited, or a zombie


@dataclass
class Finished:
    """A finished command: wall time, output, and its memory peaks in MiB (the tree's and the main process's: when sampled)."""

    wall: float
    output: str
    largest_peak: float  # ru_maxrss from wait4: the largest of the process and the children it reaped
    tree_peak: float = 0.0
    main_peak: float = 0.0
    run: Path | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)


def run_command(command: list[str], cwd: Path, sample_memory: bool = False) -> Finished:
    """Run to the end; with `sample_memory`, every 50 ms: the summed VmRSS of the process tree, and the process's own VmHWM."""
    with tempfile.TemporaryFile("w+") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, text=True)
        tree_peak = main_peak = 0
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG if sample_memory else 0)
                if pid:
                    break
                tree_peak = max(tree_peak, sum(status_kib(p) for p in descendants(proc.pid)))
                main_peak = max(main_peak, status_kib(proc.pid, "VmHWM"))
                time.sleep(0.05)
        except BaseException:  # Ctrl-C: leave no trainer behind (its DataLoader workers exit with it)
            proc.kill()
            proc.wait()
            raise
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        output = log.read()
    if proc.returncode:
        raise SystemExit(f"{' '.join(command)} (in {cwd}) failed with status {proc.returncode}:\n{output[-3000:]}")
    return Finished(wall, output, usage.ru_maxrss / 1024, tree_peak / 1024, main_peak / 1024)


def netdsl_train(spec: Path | str, out: Path, *options: str, python: str = sys.executable, root: Path = ROOT, sample_memory: bool = False) -> Finished:
    """`python -m netdsl train SPEC --out OUT ...` in `root`; reads the run directory's metrics.jsonl and results.json."""
    done = run_command([python, "-m", "netdsl", "train", str(spec), "--out", str(out), *options], root, sample_memory)
    runs = [p for p in out.iterdir() if p.is_dir()] if out.is_dir() else []
    if len(runs) == 1:
        done.run = runs[0]
        if (runs[0] / "metrics.jsonl").exists():
            done.metrics = [json.loads(line) for line in (runs[0] / "metrics.jsonl").read_text().splitlines()]
        if (runs[0] / "results.json").exists():
            done.results = json.loads((runs[0] / "results.json").read_text())
    return done


def test_accuracy(done: Finished) -> float:
    """From results.json, or from the printed `test_accuracy X` (another checkout may keep its run directory elsewhere)."""
    if "test_accuracy" in done.results:
        return float(done.results["test_accuracy"])
    return float(done.output.split("test_accuracy ")[1].split()[0])


# ---------------------------------------------------------------- reporting


def verdict(ratio: float, goal: str) -> str:
    bound = float(goal.split()[1].rstrip("x"))
    met = ratio <= bound if goal.startswith("<=") else ratio >= bound
    return f"(goal {goal}: {'met' if met else 'NOT met'})"


def report(name: str, figure: str, baseline: str, ratio: float, goal: str | None = None) -> None:
    goal_text = f" {verdict(ratio, goal)}" if goal else ""
    print(f"{name}: {figure}   baseline {baseline}   ratio {ratio:.3f}x{goal_text}", flush=True)


def alternate(rounds: int, first: Callable[[], None], second: Callable[[], None]) -> None:
    """Rounds of both, `first` going first in even rounds and `second` in odd ones."""
    for i in range(rounds):
        for job in (first, second) if i % 2 == 0 else (second, first):
            job()


# ---------------------------------------------------------------- the parts


def bench_memory(ws: Workspace, args: argparse.Namespace) -> None:
    done: dict[int, list[Finished]] = {args.small: [], args.large: []}

    def one_epoch(count: int) -> Callable[[], None]:
        return lambda: done[count].append(netdsl_train(ws.cnn_spec(count), ws.out_dir(), sample_memory=True))

    alternate(args.rounds, one_epoch(args.small), one_epoch(args.large))
    label, base = f"{args.large:,} images", f"{args.small:,} images"
    for name, peak in (("process tree", "tree_peak"), ("main process", "main_peak")):
        a, b = (statistics.median(getattr(d, peak) for d in done[n]) for n in (args.large, args.small))
        report(f"memory, {name} peak", f"{label} {a:,.0f} MiB", f"{base} {b:,.0f} MiB (medians of {args.rounds})", a / b, "<= 1.15x")
    for count, runs in done.items():
        wall = statistics.median(d.wall for d in runs)
        rate = statistics.median(d.metrics[0]["samples_per_s"] for d in runs)
        peaks = ", ".join(f"tree {d.tree_peak:,.0f} / main {d.main_peak:,.0f} / largest {d.largest_peak:,.0f}" for d in runs)
        print(f"memory, one epoch of {count:,} images: whole process {wall:.1f} s, training {rate:,.0f} images/s; per run MiB: {peaks}", flush=True)


def train_split(spec: Path) -> tuple[list[str], list[int]]:
    """The files and labels of netdsl's training split of an image folder (the split netdsl itself makes)."""
    from netdsl.train.api import prepare
    from netdsl.train.sources import open_source

    prep = prepare(spec)
    split = open_source(prep.cfg["data"], prep.graph.input_shape, prep.base).train
    images = split.dataset  # a MapSplit over ImageFiles: the whole listing, and this split's positions in it
    positions = split.positions if split.positions is not None else np.arange(len(images))
    return [f.decode() for f in images.files[positions]], images.labels[positions].tolist()


def bench_throughput(ws: Workspace, args: argparse.Namespace) -> None:
    spec = ws.cnn_spec(args.large)
    files, labels = train_split(spec)
    job = {"spec": str(spec), "files": files, "labels": labels, "workers": args.workers, "batch_size": 64}
    job_file = ws.root / "hand_loop.json"
    ours: list[float] = []
    theirs: list[float] = []

    def netdsl_run() -> None:
        done = netdsl_train(spec, ws.out_dir())
        normalize = yaml.safe_load((done.run / "resolved.yaml").read_text())["train"]["data"]["normalize"]
        job.update(mean=normalize["mean"], std=normalize["std"])
        ours.append(done.metrics[0]["samples_per_s"])

    def hand_run() -> None:
        job_file.write_text(json.dumps(job))
        done = run_command([sys.executable, "-c", HAND_LOOP, str(job_file)], ROOT)
        measured = json.loads(done.output.strip().splitlines()[-1])
        assert measured["images"] == len(files), measured
        theirs.append(measured["images_per_s"])

    alternate(args.rounds, netdsl_run, hand_run)  # netdsl first: the hand loop needs the statistics it records
    a, b = statistics.median(ours), statistics.median(theirs)
    figure = f"netdsl train {a:,.0f} images/s"
    baseline = f"hand-written Dataset + DataLoader loop {b:,.0f} images/s ({len(files):,} images, {args.workers} workers, median of {args.rounds})"
    report("throughput", figure, baseline, a / b, ">= 0.95x")


def bench_workers(ws: Workspace, args: argparse.Namespace) -> None:
    rates: dict[int, list[float]] = {args.workers: [], 0: []}

    def with_workers(n: int) -> Callable[[], None]:
        return lambda: rates[n].append(netdsl_train(ws.tiny_spec(args.decode_images, n), ws.out_dir()).metrics[0]["samples_per_s"])

    alternate(args.rounds, with_workers(args.workers), with_workers(0))
    a, b = statistics.median(rates[args.workers]), statistics.median(rates[0])
    what = f"{args.decode_images:,} 256x256 JPEGs resized to 64x64, median of {args.rounds}"
    report("workers", f"workers {args.workers} {a:,.0f} images/s", f"workers 0 {b:,.0f} images/s ({what})", a / b, ">= 1.5x")


def bench_processes(ws: Workspace, args: argparse.Namespace) -> None:
    epochs = ["--epochs", str(args.process_epochs)]
    one = netdsl_train("specs/lenet5.yaml", ws.out_dir(), *epochs)
    two = netdsl_train("specs/lenet5.yaml", ws.out_dir(), *epochs, "--nproc", "2")
    keys = ("test_accuracy", "test_loss")
    diff = max(abs(float(one.results[k]) - float(two.results[k])) for k in keys)
    met = "met" if diff <= 1e-6 else "NOT met"
    shown = {n: " ".join(f"{k} {float(d.results[k]):.6f}" for k in keys) for n, d in (("one", one), ("two", two))}
    print(f"processes, test metrics: --nproc 2 {shown['two']}   baseline 1 process {shown['one']}   |difference| {diff:.2e} (goal <= 1e-6: {met})")
    times = {n: [r["time"] for r in d.metrics] for n, d in (("one", one), ("two", two))}
    a, b = statistics.median(times["two"]), statistics.median(times["one"])
    listed = {n: ", ".join(f"{t:.2f}" for t in ts) for n, ts in times.items()}
    report("processes, epoch time", f"--nproc 2 {a:.2f} s ({listed['two']})", f"1 process {b:.2f} s ({listed['one']})", a / b)


def bench_demo(ws: Workspace, args: argparse.Namespace) -> None:
    ours: list[Finished] = []
    theirs: list[Finished] = []

    def ours_run() -> None:
        ours.append(netdsl_train("specs/lenet5.yaml", ws.out_dir()))

    def theirs_run() -> None:
        theirs.append(netdsl_train("specs/lenet5.yaml", ws.out_dir(), python=args.baseline_python, root=Path(args.baseline_root)))

    if args.baseline_python:
        alternate(args.demo_runs, ours_run, theirs_run)
    else:
        for _ in range(args.demo_runs):
            ours_run()
    wall = statistics.median(d.wall for d in ours)
    accuracy = test_accuracy(ours[-1])
    figure = f"netdsl train specs/lenet5.yaml {wall:.2f} s (median of {len(ours)}), test accuracy {accuracy:.4f} {verdict(accuracy, '>= 0.97')}"
    if not theirs:
        print(f"demo: {figure}   (no baseline: pass --baseline-python and --baseline-root)")
        return
    base = statistics.median(d.wall for d in theirs)
    report("demo", figure, f"{args.baseline_root} {base:.2f} s (test accuracy {test_accuracy(theirs[-1]):.4f})", wall / base, "<= 1.1x")


BENCHES = {"memory": bench_memory, "throughput": bench_throughput, "workers": bench_workers, "processes": bench_processes, "demo": bench_demo}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts: {','.join(PARTS)} (default: all)")
    p.add_argument("--small", type=int, default=2000, help="images in the small folder (memory)")
    p.add_argument("--large", type=int, default=20000, help="images in the large folder (memory, throughput)")
    p.add_argument("--decode-images", type=int, default=4000, help="256x256 JPEGs for the workers part")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of netdsl and the hand-written loop")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds of memory, throughput and workers")
    p.add_argument("--process-epochs", type=int, default=4, help="epochs of lenet5 in the processes part")
    p.add_argument("--demo-runs", type=int, default=3, help="runs of the demo (each side)")
    p.add_argument("--baseline-python", help="another checkout's venv python, for the demo's baseline")
    p.add_argument("--baseline-root", help="that checkout's repository root")
    args = p.parse_args()
    args.parts = [part.strip() for part in args.only.split(",") if part.strip()]
    unknown = [part for part in args.parts if part not in PARTS]
    if unknown:
        p.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    if bool(args.baseline_python) != bool(args.baseline_root):
        p.error("--baseline-python and --baseline-root go together")
    if args.baseline_python:  # absolute: the baseline runs with its own root as the working directory
        args.baseline_python, args.baseline_root = os.path.abspath(args.baseline_python), os.path.abspath(args.baseline_root)
    return args


def main() -> None:
    args = parse_args()
    import torch

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs ({usable} usable), {torch.get_num_threads()} threads; parts: {', '.join(args.parts)}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_data-") as tmp:
        ws = Workspace(Path(tmp), args.workers)
        for part in args.parts:
            BENCHES[part](ws, args)


if __name__ == "__main__":
    main()
