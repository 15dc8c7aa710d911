"""Distributed training: two CPU processes (gloo) match one process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from netdsl.train.api import train
from netdsl.train.checkpoint import load_checkpoint
from tests.conftest import ROOT
from tests.test_train import TINY

NO_DROPOUT = TINY.replace("  - dropout: 0.1\n", "")  # dropout masks differ per process by design


def test_two_processes_match_one(tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(NO_DROPOUT)
    single = train(spec, out=tmp_path / "one", settings={"train.epochs": 2}, log=lambda *_: None)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "netdsl", "train", str(spec), "--out", str(tmp_path / "two"), "--epochs", "2", "--nproc", "2"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run,) = list((tmp_path / "two").iterdir())
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    one = [json.loads(line) for line in (single / "metrics.jsonl").read_text().splitlines()]
    two = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for a, b in zip(one, two, strict=True):
        # same global batch (16 = 2 x 8), gradients averaged across ranks: equal up to float summation order
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-4 and abs(a["val_loss"] - b["val_loss"]) < 1e-4
    w1, w2 = load_checkpoint(single / "last.pt")["model"], load_checkpoint(run / "last.pt")["model"]
    assert all(torch.allclose(w1[k], w2[k], atol=1e-5) for k in w1)
    assert proc.stdout.count("epoch 2/2") == 1  # only rank 0 reports
