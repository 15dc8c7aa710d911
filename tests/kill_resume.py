"""kill -9 at random moments of a LeNet-5 run, then --resume: does it finish bitwise equal to an unbroken run?

    python tests/kill_resume.py --kills 20            # prints "20/20 bitwise equal" and the timing

One uninterrupted run first (specs/lenet5.yaml on the digits shipped in netdsl, 4 epochs, a checkpoint every 7 steps as
well as at each epoch's end, CPU, one thread); then N runs, each killed with SIGKILL once, at a seeded moment:
half at a random time in the training, half while a checkpoint or run file is being written (the driver watches for the temp file
of the k-th write and kills while it is there; the child process pauses 30 ms before each rename so the kill can
land inside it), each followed by `--resume` until the run is finished (`--run-dir` from scratch when the kill came
before the first checkpoint: there is nothing to resume). Every finished run is compared with the unbroken one:
last.pt and best.pt (weights, optimizer state, epoch, step, best), best.safetensors byte for byte, metrics.jsonl
(less the machine's timings), results.json, and no temp file left behind.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "lenet5.yaml"
SETTINGS = [
    "--set",
    "train.epochs=4",
    "--set",
    "train.checkpoint.every_steps=7",
    "--set",
    "train.log=[csv]",
]  # csv: the default, spelled out (no tracking service)
PAUSE = 0.03  # seconds the child sleeps before each rename of a temp file: a kill can land while the temp file is there
SMALL = ["--set", "train.data.split={train: 0.25, val: 0.05, test: 0.05}"]  # the test suite's quick version: about 450 training samples
MEASURED = ("time", "samples_per_s", "rss_mb")


def child(argv: list[str]) -> int:
    """`netdsl ARGV` in this process, with os.replace slowed down for temp files (the kill window inside a write)."""
    import torch

    torch.set_num_threads(1)
    real = os.replace

    def slow_replace(src: Any, dst: Any, **kwargs: Any) -> None:
        if str(src).endswith(".tmp"):
            time.sleep(PAUSE)
        real(src, dst, **kwargs)

    os.replace = slow_replace
    from netdsl.cli.main import main

    return main(argv)


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--child", *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def temp_files(run: Path | None) -> set[str]:
    if run is None or not run.is_dir():
        return set()
    try:
        return {p.name for p in run.iterdir() if p.name.endswith(".tmp")}
    except OSError:
        return set()


@dataclass
class Watched:
    writes: list[str]  # temp files seen, in order of appearance
    how: str  # how the process ended
    training: float = 0.0  # seconds from status.json's appearance (training starts) to results.json's (it ended)


def watch(proc: subprocess.Popen[bytes], parent: Path, kill_at: float | None = None, kill_on_write: int | None = None) -> Watched:
    """Poll a run until it ends, or kill it `kill_at` s after its training started, or while its `kill_on_write`-th temp file exists."""
    seen: list[str] = []
    present: set[str] = set()
    started = ended = None
    while proc.poll() is None:
        runs = [p for p in parent.iterdir() if p.is_dir()] if parent.is_dir() else []
        run = runs[0] if runs else None
        now = temp_files(run)
        for name in sorted(now - present):
            seen.append(name)
            if kill_on_write is not None and len(seen) == kill_on_write:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return Watched(seen, f"killed inside write {len(seen)} ({name.split('.')[1]}.{name.split('.')[2]})")
        present = now
        if run is not None and started is None and (run / "status.json").exists():
            started = time.perf_counter()
        if run is not None and ended is None and (run / "results.json").exists():
            ended = time.perf_counter()
        if kill_at is not None and started is not None and time.perf_counter() - started >= kill_at:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return Watched(seen, f"killed {kill_at:.2f} s into training")
        time.sleep(0.002)
    return Watched(seen, f"exited {proc.returncode}", (ended or time.perf_counter()) - (started or 0.0))


def checkpoint(path: Path) -> dict[str, Any]:
    from netdsl.train.checkpoint import load_checkpoint

    return load_checkpoint(path)


def same(a: Any, b: Any) -> bool:
    """Bitwise equality of nested checkpoint values (tensors compared by bytes, dtype and shape)."""
    import torch

    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def rows(run: Path) -> list[dict[str, Any]]:
    return [{k: v for k, v in json.loads(line).items() if k not in MEASURED} for line in (run / "metrics.jsonl").read_text().splitlines()]


def differences(reference: Path, run: Path) -> list[str]:
    """What differs between a finished run and the reference (empty: bitwise equal)."""
    problems = []
    status = json.loads((run / "status.json").read_text())
    if status["state"] != "finished":
        problems.append(f"status {status['state']}")
    for name in ("last.pt", "best.pt"):
        a, b = checkpoint(reference / name), checkpoint(run / name)
        for key in ("model", "optimizer", "epoch", "step", "global_step", "best"):
            if not same(a[key], b[key]):
                problems.append(f"{name}:{key}")
    if (reference / "best.safetensors").read_bytes() != (run / "best.safetensors").read_bytes():
        problems.append("best.safetensors")
    if rows(reference) != rows(run):
        problems.append("metrics.jsonl")
    if json.loads((reference / "results.json").read_text()) != json.loads((run / "results.json").read_text()):
        problems.append("results.json")
    if left := temp_files(run):
        problems.append(f"temp files left: {sorted(left)}")
    return problems


@dataclass
class Outcome:
    how: str  # where the kill landed
    resumes: int
    problems: list[str]


def one_killed_run(parent: Path, inside_write: bool, rng: random.Random, reference: Watched, settings: list[str]) -> Outcome:
    log = parent.with_suffix(".log")
    proc = start(["train", str(SPEC), "--out", str(parent), *settings], log)
    if inside_write:
        how = watch(proc, parent, kill_on_write=rng.randint(1, len(reference.writes))).how
    else:
        how = watch(proc, parent, kill_at=rng.uniform(0.0, reference.training)).how
    (run,) = [p for p in parent.iterdir() if p.is_dir()] or [None]  # type: ignore[list-item]
    if run is None:
        return Outcome(how + ", before the run directory existed", 0, [])
    resumes = 0
    while json.loads((run / "status.json").read_text() if (run / "status.json").exists() else '{"state": "none"}')["state"] != "finished":
        resumes += 1
        if resumes > 3:
            return Outcome(how, resumes, [f"not finished after 3 resumes (see {log})"])
        fresh = not (run / "last.pt").exists() and not (run / "best.pt").exists()
        again = ["--run-dir", str(run)] if fresh else ["--resume", str(run)]
        proc = start(["train", str(SPEC), *again, *settings], log)
        if proc.wait() != 0:
            return Outcome(how, resumes, [f"the resume exited {proc.returncode} (see {log})"])
    return Outcome(how, resumes, [])


def kill_and_resume(kills: int, seed: int = 0, workdir: Path | None = None, small: bool = False, say: Any = print) -> tuple[int, list[Outcome]]:
    """The whole experiment; returns (runs bitwise equal to the reference, every outcome)."""
    settings = SETTINGS + (SMALL if small else [])
    base = Path(workdir or tempfile.mkdtemp(prefix="kill_resume-"))
    base.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    ref_parent = base / "reference"
    proc = start(["train", str(SPEC), "--out", str(ref_parent), *settings], base / "reference.log")
    unbroken = watch(proc, ref_parent)
    if proc.returncode != 0:
        raise SystemExit(f"the reference run {unbroken.how}: see {base / 'reference.log'}")
    (reference,) = [p for p in ref_parent.iterdir() if p.is_dir()]
    say(f"reference: {time.perf_counter() - began:.1f} s ({unbroken.training:.1f} s training), {len(unbroken.writes)} file writes")
    rng = random.Random(seed)
    outcomes = []
    for i in range(kills):
        outcome = one_killed_run(base / f"killed{i:02d}", i % 2 == 0, rng, unbroken, settings)  # every other kill inside a write
        if not outcome.problems:
            run = next(p for p in (base / f"killed{i:02d}").iterdir() if p.is_dir())
            outcome.problems = differences(reference, run)
        outcomes.append(outcome)
        say(
            f"run {i + 1}: {outcome.how}; {outcome.resumes} resume(s); "
            + ("bitwise equal" if not outcome.problems else "DIFFERS: " + ", ".join(outcome.problems))
        )
    equal = sum(not o.problems for o in outcomes)
    inside = sum("inside write" in o.how for o in outcomes)
    kept = workdir is not None or equal < kills  # a temp folder of a clean experiment goes; one with a difference stays to look at
    if not kept:
        shutil.rmtree(base, ignore_errors=True)
    where = f"in {base}" if kept else "work folder removed"
    say(f"{equal}/{kills} bitwise equal ({inside} killed inside a file write), {time.perf_counter() - began:.0f} s in all, {where}")
    return equal, outcomes


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", type=Path, help="work folder (default: a new temp folder)")
    parser.add_argument("--small", action="store_true", help="a quarter of the training data (the test suite's setting)")
    args = parser.parse_args()
    equal, _ = kill_and_resume(args.kills, args.seed, args.dir, args.small)
    return 0 if equal == args.kills else 1


if __name__ == "__main__":
    raise SystemExit(main())
