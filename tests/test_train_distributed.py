"""Distributed training on CPU processes (gloo): N processes compute what one does, on one machine or two "machines"."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from netdsl.train.api import train
from netdsl.train.checkpoint import load_checkpoint
from tests.conftest import ROOT
from tests.test_train import TINY

NO_DROPOUT = TINY.replace("  - dropout: 0.1\n", "")  # dropout masks differ per process by design
# best.pt is the epoch with the LOWEST validation accuracy: epoch 1, not the last one. A process that tested with
# the last epoch's weights (or an older best.pt) would report other test metrics than one process does.
BEST_IS_FIRST = {"train.epochs": 3, "train.checkpoint": {"monitor": "val_accuracy", "mode": "min"}}
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
SETS = [arg for k, v in BEST_IS_FIRST.items() for arg in ("--set", f"{k}={json.dumps(v)}")]


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def only_run(folder: Path) -> Path:
    (run,) = [p for p in folder.iterdir() if p.is_dir()]
    return run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("dist") / "tiny.yaml"
    path.write_text(NO_DROPOUT)
    return path


@pytest.fixture(scope="module")
def single(spec) -> Path:
    return train(spec, out=spec.parent / "one", settings=BEST_IS_FIRST, log=lambda *_: None)


def netdsl(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netdsl", *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)


def assert_same_run(one: Path, two: Path) -> None:
    """Per-epoch losses (float summation order aside), the best epoch, and the test metrics of the best weights."""
    for a, b in zip(rows(one), rows(two), strict=True):
        # same global batch (16 = 2 x 8), gradients averaged across ranks: equal up to float summation order
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-4 and abs(a["val_loss"] - b["val_loss"]) < 1e-4
    r1, r2 = (json.loads((run / "results.json").read_text()) for run in (one, two))
    assert r1["best_epoch"] == r2["best_epoch"] == 1 and r1["epochs_run"] == 3  # best is not the last epoch
    assert r1["test_samples"] == r2["test_samples"] == 48  # every test sample counted once, none twice
    assert r2["test_accuracy"] == pytest.approx(r1["test_accuracy"], abs=1e-6)
    assert r2["test_loss"] == pytest.approx(r1["test_loss"], abs=1e-6)
    w1, w2 = load_checkpoint(one / "last.pt")["model"], load_checkpoint(two / "last.pt")["model"]
    assert all(torch.allclose(w1[k], w2[k], atol=1e-5) for k in w1)


def test_two_processes_match_one_with_the_best_epoch_not_the_last(spec, single, tmp_path):
    proc = netdsl("train", str(spec), "--out", str(tmp_path), "--nproc", "2", *SETS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = only_run(tmp_path)
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    assert_same_run(single, run)
    assert proc.stdout.count("epoch 3/3") == 1  # only rank 0 reports
    assert "2 processes" in proc.stdout
    assert json.loads((run / "env.json").read_text())["processes"] == 2


def test_two_machines_through_torchrun_match_one(spec, single, tmp_path):
    """Two torchrun "machines" (node ranks 0 and 1, one process each) meeting at 127.0.0.1:PORT, as on a real cluster."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-endpoint", f"127.0.0.1:{free_port()}"]
    nodes = [
        subprocess.Popen(
            [*torchrun, "--node-rank", str(rank), "-m", "netdsl", "train", str(spec), "--out", str(tmp_path / f"node{rank}"), *SETS],
            cwd=ROOT,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], outputs
    assert not (tmp_path / "node1").exists()  # machine 1 writes nothing: the run directory is rank 0's
    assert_same_run(single, only_run(tmp_path / "node0"))


def test_more_processes_than_cpu_cores_is_refused(spec, tmp_path):
    if torch.cuda.is_available():  # one process per GPU
        limit, message = torch.cuda.device_count(), "--nproc: --nproc {n}: this machine has {limit} GPU(s); one process per GPU\n"
    else:
        limit = len(os.sched_getaffinity(0))
        message = "--nproc: --nproc {n}: this machine has {limit} CPU core(s) and no GPU; use at most {limit} processes\n"
    proc = netdsl("train", str(spec), "--out", str(tmp_path / "runs"), "--nproc", str(limit + 1))
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == message.format(n=limit + 1, limit=limit)
    assert not (tmp_path / "runs").exists()


def test_a_rendezvous_port_in_use_is_one_line(spec, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = netdsl("train", str(spec), "--out", str(tmp_path / "runs"), "--nnodes", "2", "--node-rank", "0", "--rdzv-endpoint", f"127.0.0.1:{port}")
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == f"--rdzv-endpoint: cannot listen on 127.0.0.1:{port} for the rendezvous: Address already in use; choose another port\n"
    proc = netdsl("train", str(spec), "--nnodes", "2", "--node-rank", "2", "--rdzv-endpoint", "127.0.0.1:1")
    assert proc.returncode == 2 and proc.stderr == "--node-rank: --node-rank must be 0 .. 1 with --nnodes 2, got 2\n"
    proc = netdsl("train", str(spec), "--nnodes", "2")
    assert proc.returncode == 2 and proc.stderr == "--rdzv-endpoint: --nnodes 2 needs --rdzv-endpoint HOST:PORT (machine 0's address), got ''\n"


SEGMENT = """netdsl: 1
name: seg
input: 3x16x16
layers:
  - conv: {name: c1, out: 8, k: 3, p: 1}
  - relu
  - conv: {name: head, out: 4, k: 1}
train:
  task: segmentation
  data: {source: shapes, samples: 64}
  optimizer: {name: sgd, lr: 0.05}
  batch_size: 16
  epochs: 2
"""


def test_segmentation_metrics_are_reduced_over_processes(tmp_path):
    # mIoU and pixel accuracy come from a confusion matrix summed over every process's pixels: not a mean of per-rank figures
    spec = tmp_path / "seg.yaml"
    spec.write_text(SEGMENT)
    one = train(spec, out=tmp_path / "one", log=lambda *_: None)
    proc = netdsl("train", str(spec), "--out", str(tmp_path / "two"), "--nproc", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r1, r2 = (json.loads((run / "results.json").read_text()) for run in (one, only_run(tmp_path / "two")))
    assert r1["test_samples"] == r2["test_samples"] == 13
    for key in ("test_miou", "test_pixel_accuracy", "test_loss"):
        assert r2[key] == pytest.approx(r1[key], abs=1e-5), key
    assert [row["pixels"] for row in r2["test_per_class"]] == [row["pixels"] for row in r1["test_per_class"]]
    assert sum(row["pixels"] for row in r1["test_per_class"]) == 13 * 16 * 16
