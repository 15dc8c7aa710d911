"""netdsl train: run directories, settings, resume, interruption, transfer learning, bad input."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from netdsl.errors import SpecError
from netdsl.train.api import train
from netdsl.train.checkpoint import load_checkpoint
from netdsl.train.loop import MEASURED
from tests.conftest import ROOT

TINY = """netdsl: 1
name: tiny
input: 1x12x12
params: {classes: 4}
layers:
  - conv: {name: conv, out: 8, k: 3, p: 1}
  - relu
  - maxpool: 2
  - flatten
  - linear: {name: hidden, out: 32}
  - relu
  - dropout: 0.1
  - linear: {name: head, out: classes}
train:
  data: {source: synthetic, samples: 240, num_classes: 4, seed: 1}
  optimizer: {name: sgd, lr: 0.05, momentum: 0.9}
  batch_size: 16
  epochs: 3
"""


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def quiet(*_: object) -> None:
    return None


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "last.pt")["model"]


def test_run_directory_has_every_file(tiny, tmp_path):
    lines: list[str] = []
    run = train(tiny, out=tmp_path / "runs", log=lines.append)
    assert lines[-1].startswith("best val_loss ") and lines[-1].endswith(f": {run / 'best.pt'}; learning curves: {run / 'curves.png'}")
    assert run.parent == tmp_path / "runs" and run.name.startswith("tiny-")
    names = {p.name for p in run.iterdir()}
    assert {
        "spec.yaml",
        "resolved.yaml",
        "env.json",
        "metrics.csv",
        "metrics.jsonl",
        "last.pt",
        "best.pt",
        "best.safetensors",
        "curves.png",
        "results.json",
        "status.json",
    } <= names
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "time", "samples_per_s", "rss_mb"} <= set(rows[0])
    assert (run / "metrics.csv").read_text().splitlines()[0].startswith("epoch,lr,train_loss")
    results = json.loads((run / "results.json").read_text())
    assert results["test_samples"] == 48 and 0 <= results["test_accuracy"] <= 1
    best = min(rows, key=lambda r: r["val_loss"])  # the default monitor, val_loss, min; the first epoch on a tie
    assert (results["monitor"], results["best"], results["best_epoch"]) == ("val_loss", best["val_loss"], best["epoch"])
    assert load_checkpoint(run / "best.pt")["epoch"] == best["epoch"]
    env = json.loads((run / "env.json").read_text())
    assert env["torch"] == torch.__version__ and env["device"] == "cpu"
    assert (run / "spec.yaml").read_text() == TINY
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resolved_spec_fills_defaults_and_reproduces_the_run(tiny, tmp_path):
    run = train(tiny, out=tmp_path / "a", log=quiet, settings={"train.optimizer.lr": 0.02})
    resolved = yaml.safe_load((run / "resolved.yaml").read_text())
    assert resolved["train"]["optimizer"] == {
        "name": "sgd",
        "lr": 0.02,
        "momentum": 0.9,
        "nesterov": False,
        "betas": [0.9, 0.999],
        "weight_decay": 0.0,
        "l1": 0.0,
        "groups": [],
        "accumulate": 1,
    }
    assert resolved["train"]["seed"] == 0 and resolved["train"]["data"]["classes"] == ["class0", "class1", "class2", "class3"]
    assert set(resolved["train"]["data"]["normalize"]) == {"mean", "std"}
    again = train(run / "resolved.yaml", out=tmp_path / "b", log=quiet)
    a, b = final_weights(run), final_weights(again)
    assert all(torch.equal(a[k], b[k]) for k in a)  # deterministic: the resolved spec is the whole recipe


def test_output_width_must_match_the_classes(tiny, tmp_path):
    with pytest.raises(SpecError) as info:
        train(tiny, out=tmp_path, variables={"classes": 3}, log=quiet)
    (message,) = [str(d) for d in info.value.diagnostics]
    assert message == (
        f"{tiny}:13:5: linear 'head': the network outputs 3 but the data has 4 classes; "
        "make the last layer output 4 (its out option, or the spec parameter behind it: --set NAME=4), "
        "or start from other weights with train.transfer (replace_head)"
    )
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("train_section", ["", "train:\n  epochs: 2\n", "train:\n  data: {split: {train: 0.8, val: 0.2}}\n"])
def test_a_spec_without_a_data_source_is_an_error_naming_the_key(tmp_path, cli, train_section):
    # it used to train on the bundled digits without a word (a CIFAR ResNet ran on digits upscaled to 3x32x32)
    spec = tmp_path / "nodata.yaml"
    spec.write_text(TINY.split("train:")[0] + train_section)
    code, out, err = cli("train", str(spec), "--out", str(tmp_path / "runs"))
    line = 1 if not train_section else TINY.split("train:")[0].count("\n") + 1  # the train: key, or the file when there is none
    col = 1
    assert (code, out) == (2, "")
    assert err == (
        f"{spec}:{line}:{col}: no training data: add train.data.source to the spec (digits, synthetic, shapes, mnist_idx, cifar10_bin, npz, npy, "
        "csv, image_folder, webdataset), e.g. `data: {source: image_folder, path: photos/}`, or pass --set train.data.source=...\n"
    )
    assert not (tmp_path / "runs").exists()
    code, out, err = cli("train", str(spec), "--out", str(tmp_path / "runs"), "--epochs", "1", "--set", "train.data.source=synthetic", "--set", "classes=10")
    assert code == 0, err  # naming it on the command line is enough


def test_missing_data_fails_before_a_run_directory_exists(tiny, tmp_path):
    with pytest.raises(SpecError, match=r"no such file or folder \(train.data.path\)"):
        train(tiny, out=tmp_path / "runs", settings={"train.data.source": "npz", "train.data.path": "nothing.npz"}, log=quiet)
    assert not (tmp_path / "runs").exists()


def test_unwritable_output_directory(tiny, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SpecError, match="cannot create the run directory"):
        train(tiny, out=blocker / "runs", log=quiet)


def test_unknown_setting_suggests(tiny, tmp_path):
    with pytest.raises(SpecError) as info:
        train(tiny, out=tmp_path, settings={"train.optimizer.lrr": 0.1}, log=quiet)
    assert (
        str(info.value)
        == "--set train.optimizer.lrr=0.1: train.optimizer has no setting 'lrr'; did you mean 'lr'? (settings: name, lr, momentum, nesterov, betas, weight_decay, l1, groups, clip_grad_norm, accumulate)"
    )


def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tiny, tmp_path):
    with pytest.raises(SpecError, match="training stopped: the loss became"):
        train(tiny, out=tmp_path, settings={"train.optimizer.lr": 1e30, "train.optimizer.momentum": 0.0}, log=quiet)
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "failed" and "the loss became" in status["reason"]


def test_resume_refuses_a_changed_spec_and_lists_the_keys(tiny, tmp_path):
    run = train(tiny, out=tmp_path, log=quiet)
    with pytest.raises(SpecError) as info:
        train(tiny, resume=run, settings={"train.epochs": 5, "train.optimizer.lr": 0.01}, log=quiet)
    assert str(info.value).endswith("the spec differs from the run's in: train.epochs, train.optimizer.lr; resume with --allow-changes to accept that")
    more = train(tiny, resume=run, settings={"train.epochs": 5}, allow_changes=True, log=quiet)
    assert [json.loads(x)["epoch"] for x in (more / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4, 5]


def run_cli(args: list[str], **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "netdsl", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def wait_for_rows(run_parent: Path, rows: int, proc: subprocess.Popen, timeout: float = 120) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for metrics in run_parent.glob("*/metrics.jsonl"):
            if len(metrics.read_text().splitlines()) >= rows:
                return metrics.parent
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        time.sleep(0.02)
    raise AssertionError("training did not get that far")


def image_folder(root: Path, classes: int = 4, per_class: int = 40) -> Path:
    """Small class folders of 16x16 PNGs whose brightness depends on the class (learnable), one nested level deep."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        for i in range(per_class):
            folder = root / f"c{c}" / f"part{i % 2}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray((rng.random((16, 16, 3)) * 60 + 50 * c).astype("uint8")).save(folder / f"{i}.png")
    return root


@pytest.mark.parametrize("data", ["synthetic", "image_folder"])
def test_kill_9_mid_epoch_then_resume_is_bitwise_identical(tiny, tmp_path, data):
    settings = ["--set", "train.epochs=5", "--set", "train.checkpoint.every_steps=3"]
    if data == "image_folder":  # images decoded by two DataLoader worker processes
        folder = image_folder(tmp_path / "images")
        settings += ["--set", "train.data.source=image_folder", "--set", f"train.data.path={folder}", "--set", "train.workers=2"]
    # the uninterrupted run in a fresh process too: the thread count that earlier tests left in this one would sum in
    # another order, and bitwise equality holds for equal thread counts only
    assert run_cli(["train", str(tiny), "--out", str(tmp_path / "straight"), *settings]).wait(timeout=300) == 0
    (straight,) = (tmp_path / "straight").iterdir()
    proc = run_cli(["train", str(tiny), "--out", str(tmp_path / "killed"), *settings])
    run = wait_for_rows(tmp_path / "killed", 2, proc)  # epoch 2 done: now inside epoch 3
    time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert json.loads((run / "status.json").read_text())["state"] == "running"  # killed hard: nothing marked it
    resumed = run_cli(["train", str(tiny), "--resume", str(run), *settings])
    assert resumed.wait(timeout=300) == 0, resumed.stdout.read() if resumed.stdout else ""
    a, b = final_weights(straight), final_weights(run)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (straight / "metrics.jsonl").read_text().count("\n") == (run / "metrics.jsonl").read_text().count("\n") == 5
    strip = [{k: v for k, v in json.loads(line).items() if k not in MEASURED} for line in (run / "metrics.jsonl").read_text().splitlines()]
    want = [{k: v for k, v in json.loads(line).items() if k not in MEASURED} for line in (straight / "metrics.jsonl").read_text().splitlines()]
    assert strip == want
    assert json.loads((run / "results.json").read_text())["test_accuracy"] == json.loads((straight / "results.json").read_text())["test_accuracy"]


def test_sigterm_finishes_the_step_writes_a_checkpoint_and_marks_interrupted(tiny, tmp_path):
    proc = run_cli(["train", str(tiny), "--out", str(tmp_path), "--set", "train.epochs=200"])
    run = wait_for_rows(tmp_path, 1, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "interrupted" and status["reason"] == "SIGTERM"
    state = load_checkpoint(run / "last.pt")
    assert 1 <= state["epoch"] < 200


class Opaque:
    """A Python object in a checkpoint: torch.load(weights_only=True) refuses to build it."""


def test_weights_files_that_are_not_weights(tmp_path):
    from netdsl.train.checkpoint import weights_from_file

    def message(name: str, content: bytes | None = None, obj: object = None) -> str:
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        else:
            torch.save(obj, path)
        with pytest.raises(SpecError) as info:
            weights_from_file(path)
        return str(info.value).removeprefix(f"{path}:1:1: ")

    source = "weights come from a .pt file (a state dict or a netdsl checkpoint) or a .safetensors file"
    assert message("model.onnx", b"\x08\x08\x12\x07pytorch") == f"an ONNX model; {source}"  # an ONNX protobuf's first bytes
    assert message("notes.pt", b"weights: none") == f"not a file torch.save wrote; {source}"
    assert message("pickled.pt", obj={"model": Opaque()}) == (
        "holds Python objects beyond tensors, which a safe load (weights_only=True) refuses; save model.state_dict() instead"
    )
    legacy = tmp_path / "legacy.pt"  # the pre-1.6 format (a bare pickle) still loads
    torch.save({"w": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    assert torch.equal(weights_from_file(legacy)["w"], torch.ones(2))


def test_truncated_or_corrupt_checkpoint_is_a_clear_error(tiny, tmp_path):
    from netdsl.train.checkpoint import save_checkpoint

    run = train(tiny, out=tmp_path, log=quiet)
    data = (run / "last.pt").read_bytes()
    (run / "last.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(SpecError) as info:  # a resume falls back to best.pt (tests/test_hardening_train.py)
        load_checkpoint(run / "last.pt")
    assert str(info.value) == f"{run / 'last.pt'}:1:1: checkpoint is damaged: not a valid zip archive (File is not a zip file; truncated or overwritten)"
    stored = torch.load(run / "best.pt", weights_only=True)  # with the checksum it was saved with
    stored["model"]["conv.weight"][0, 0, 0, 0] += 1.0  # a changed value under the old checksum
    torch.save(stored, run / "best.pt")
    with pytest.raises(SpecError) as info:
        load_checkpoint(run / "best.pt")
    assert str(info.value) == f"{run / 'best.pt'}:1:1: checkpoint is corrupt: its contents do not match the SHA-256 stored in it"
    del stored["sha256"]
    save_checkpoint(run / "best.pt", stored)  # re-saved: a fresh checksum that matches
    assert torch.equal(load_checkpoint(run / "best.pt")["model"]["conv.weight"], stored["model"]["conv.weight"])


def test_transfer_learning_new_head_frozen_backbone_and_unfreeze(tiny, tmp_path):
    source = train(tiny, out=tmp_path / "src", log=quiet)
    spec = tmp_path / "finetune.yaml"
    spec.write_text(
        TINY.replace("classes: 4}", "classes: 3}").replace("num_classes: 4, seed: 1", "num_classes: 3, seed: 2")
        + f"  transfer: {{weights: {source / 'best.pt'}, freeze: ['conv.*', 'hidden.*'], unfreeze_at: 3}}\n"
    )
    run = train(spec, out=tmp_path / "ft", settings={"train.epochs": 3}, log=quiet)
    before, after = load_checkpoint(source / "best.pt")["model"], final_weights(run)
    assert after["head.weight"].shape == (3, 32)
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 3
    best_epoch2 = load_checkpoint(run / "best.pt")
    assert best_epoch2["epoch"] >= 1
    assert not torch.equal(before["conv.weight"], after["conv.weight"])  # trained again from epoch 3


def test_frozen_backbone_stays_put_without_unfreeze(tiny, tmp_path):
    source = train(tiny, out=tmp_path / "src", log=quiet)
    spec = tmp_path / "frozen.yaml"
    spec.write_text(TINY + f"  transfer: {{weights: {source / 'best.pt'}, freeze: ['conv.*']}}\n")
    run = train(spec, out=tmp_path / "ft", settings={"train.epochs": 2}, log=quiet)
    assert torch.equal(load_checkpoint(source / "best.pt")["model"]["conv.weight"], final_weights(run)["conv.weight"])


def test_weights_that_do_not_fit_are_listed(tiny, tmp_path):
    weights = tmp_path / "w.pt"
    torch.save({"conv.weight": torch.zeros(8, 1, 5, 5)}, weights)
    spec = tmp_path / "bad.yaml"
    spec.write_text(TINY + f"  transfer: {{weights: {weights}}}\n")
    with pytest.raises(SpecError) as info:
        train(spec, out=tmp_path, log=quiet)
    message = str(info.value)
    assert message.startswith(f"{weights}:1:1: weights do not fit the network: missing 5: conv.bias, head.bias, head.weight, hidden.bias, hidden.weight;")
    assert "mis-shaped 1: conv.weight (expected [8, 1, 3, 3], got [8, 1, 5, 5])" in message


@pytest.mark.parametrize("schedule", ["step", "multistep", "cosine", "onecycle", "plateau"])
def test_schedules_run_and_change_the_learning_rate(tiny, tmp_path, schedule):
    settings = {
        "train.schedule.name": schedule,
        "train.schedule.step_size": 1,
        "train.schedule.milestones": [1],
        "train.schedule.warmup_epochs": 1,
        "train.schedule.patience": 0,
    }
    run = train(tiny, out=tmp_path, settings=settings, log=quiet)
    lrs = [json.loads(line)["lr"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(set(lrs)) > 1 or schedule == "plateau"


def make_trainer(spec: Path, run: Path, settings: dict) -> Any:
    """A Trainer as `netdsl train` builds it (one process), without running it."""
    from netdsl.train.api import prepare
    from netdsl.train.engine import Engine
    from netdsl.train.loop import Trainer
    from netdsl.train.sources import load_splits

    prep = prepare(spec, settings=settings)
    data = load_splits(prep.cfg["data"], prep.graph.input_shape, prep.base)
    return Trainer(prep.graph, prep.cfg, data, Engine(prep.cfg["device"], prep.cfg["precision"]), run, prep.resolved, prep.base)


def test_augmentation_only_in_training(tiny, tmp_path):
    from netdsl.train.splits import Reading

    trainer = make_trainer(tiny, tmp_path, {"train.augmentation": {"vflip": 1.0, "erasing": 1.0}})
    x, y, _ = next(trainer.data.val.batches(Reading(batch_size=4), epoch=0, seed=0, shuffle=False))
    expected = (x - trainer.mean) / trainer.std
    assert torch.equal(trainer.prepare(x, y, train=False)[0], expected)
    assert not torch.equal(trainer.prepare(x, y, train=True)[0], expected)


def test_objective_adds_l1_and_scales_for_accumulation(tiny, tmp_path):
    def trainer(l1: float, accumulate: int) -> Any:
        return make_trainer(tiny, tmp_path, {"train.optimizer.l1": l1, "train.optimizer.accumulate": accumulate})

    loss = torch.tensor(2.0, requires_grad=True)
    plain = trainer(0.0, 1)
    assert plain.objective(loss, plain.share(0)) is loss  # nothing to add: no extra autograd op on the hot path
    t = trainer(0.01, 4)
    # 168 training samples in batches of 16: steps 0-3, 4-7 are groups of 64; steps 8-10 the last group, 16 + 16 + 8 = 40
    assert [t.share(s) for s in range(11)] == [0.25] * 8 + [16 / 40, 16 / 40, 8 / 40]
    weights = sum(float(p.detach().abs().sum()) for p in t.model.parameters())
    assert float(t.objective(loss, 0.25).detach()) == pytest.approx((2.0 + 0.01 * weights) / 4, rel=1e-6)
    t.objective(loss, 0.25).backward()
    assert all(torch.allclose(p.grad, 0.01 / 4 * p.sign()) for p in t.model.parameters())  # d(l1 * |w|)/dw = l1 * sign(w)


def test_accumulating_two_half_batches_equals_one_full_batch(tmp_path):
    spec = tmp_path / "mlp.yaml"  # no dropout or batch norm: the batch split must not change the gradient
    spec.write_text(TINY.replace("  - dropout: 0.1\n", ""))
    common = {"train.epochs": 1, "train.optimizer.momentum": 0.0}
    whole = train(spec, out=tmp_path / "a", settings=common | {"train.batch_size": 16}, log=quiet)
    halves = train(spec, out=tmp_path / "b", settings=common | {"train.batch_size": 8, "train.optimizer.accumulate": 2}, log=quiet)
    a, b = final_weights(whole), final_weights(halves)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)  # mean of two half-batch means, equal up to summation order
    assert not torch.equal(
        a["head.weight"], final_weights(train(spec, out=tmp_path / "c", settings=common | {"train.batch_size": 8}, log=quiet))["head.weight"]
    )


def test_l1_accumulation_clipping_and_label_smoothing_run(tiny, tmp_path):
    settings = {
        "train.optimizer.l1": 1e-4,
        "train.optimizer.accumulate": 2,
        "train.optimizer.clip_grad_norm": 1.0,
        "train.loss.label_smoothing": 0.1,
        "train.metrics": ["accuracy", "top2"],
    }
    run = train(tiny, out=tmp_path, settings=settings, log=quiet)
    row = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["train_top2"] >= row["train_accuracy"]


def test_early_stopping(tiny, tmp_path):
    settings = {"train.epochs": 50, "train.early_stopping": {"monitor": "val_loss", "mode": "min", "patience": 1, "min_delta": 10.0}}
    run = train(tiny, out=tmp_path, settings=settings, log=quiet)
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2  # nothing beats epoch 1 by 10, so it stops after one more


def test_memory_stays_flat_from_epoch_to_epoch(tmp_path):
    # LeNet-5 on the digits, 8 epochs: flat after epoch 3 here (measured 422.7 MiB from epoch 3 to 8). Validation
    # outside inference_mode that kept its outputs (and so their autograd graphs and activations) grew it by
    # 6.5 MiB an epoch, 32 MiB from epoch 3 to 8 (measured by patching that leak in); the allowance is 12 MiB.
    run = train(ROOT / "specs" / "lenet5.yaml", out=tmp_path, settings={"train.epochs": 8}, log=quiet)
    rss = [json.loads(line)["rss_mb"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rss) == 8 and all(r > 50 for r in rss)  # a real reading: python + torch alone take more than 50 MiB
    assert max(rss[3:]) - rss[2] < 12, rss


@pytest.mark.parametrize(("option", "value"), [("--epochs", "0"), ("--nproc", "0"), ("--nproc", "-2")])
def test_counts_below_one_are_refused_before_anything_runs(tiny, tmp_path, cli, option, value):
    code, out, err = cli("train", str(tiny), "--out", str(tmp_path / "runs"), option, value)
    assert (code, out, err) == (2, "", f"{option}: {option} must be >= 1, got {value}\n")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("train.device=cuda", "train.device:1:1: device 'cuda' was asked for, but torch sees no CUDA device"),
        ("train.precision=fp16", "train.precision:1:1: fp16 mixed precision needs a CUDA device; on the CPU use bf16 or fp32"),
        ("train.transfer.weights=missing.pt", "{dir}/missing.pt:1:1: no such weights file"),
    ],
)
def test_a_setup_that_cannot_run_fails_before_making_a_run_directory(tiny, tmp_path, cli, setting, message):
    if "cuda" in setting and torch.cuda.is_available():
        setting = "train.device=bogus"  # on a CUDA machine the request would be granted; the schema refuses this one instead
        message = "--set train.device=bogus: train.device must be one of 'auto', 'cpu', 'cuda'; got 'bogus'"
    code, out, err = cli("train", str(tiny), "--out", str(tmp_path / "runs"), "--set", setting)
    assert (code, out, err) == (2, "", message.format(dir=tiny.parent) + "\n")
    assert not (tmp_path / "runs").exists()


def test_bf16_mixed_precision_on_the_cpu(tiny, tmp_path):
    trainer = make_trainer(tiny, tmp_path, {"train.precision": "bf16", "train.device": "cpu"})
    with trainer.engine.autocast():
        assert trainer.model(torch.rand(2, 1, 12, 12)).dtype == torch.bfloat16  # the layers really compute in bfloat16
    run = train(tiny, out=tmp_path, settings={"train.precision": "bf16"}, log=quiet)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]  # it learns
    assert all(v.dtype == torch.float32 for v in final_weights(run).values() if v.is_floating_point())  # weights stay float32


def test_eval_and_predict_cli(tiny, tmp_path, cli):
    run = train(tiny, out=tmp_path, log=quiet)
    code, out, err = cli("eval", str(tiny), "--weights", str(run / "best.pt"), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["test_samples"] == 48 and sum(map(sum, result["confusion_matrix"])) == 48
    assert Path(result["confusion_png"]).read_bytes()[:4] == b"\x89PNG"
    import numpy as np

    sample = tmp_path / "x.npy"
    np.save(sample, np.random.rand(1, 12, 12).astype("float32"))
    code, out, err = cli("predict", str(run / "resolved.yaml"), str(sample), "--weights", str(run / "best.safetensors"), "--top", "2")
    assert code == 0, err
    assert re.fullmatch(rf"{re.escape(str(sample))}: class\d \(\d+\.\d%\), class\d \(\d+\.\d%\)\n", out)  # as `netdsl infer` prints
    stack = tmp_path / "stack.npy"
    np.save(stack, np.random.rand(4, 1, 12, 12).astype("float32"))  # a stack of four samples: one line each
    code, out, err = cli("predict", str(run / "resolved.yaml"), str(stack), str(sample), "--weights", str(run / "best.pt"), "--top", "1")
    assert code == 0, err
    assert [line.split(":")[0] for line in out.splitlines()] == [f"{stack}[{i}]" for i in range(4)] + [str(sample)]
    code, out, err = cli("predict", str(run / "resolved.yaml"), str(tmp_path / "missing.png"), "--weights", str(run / "best.pt"))
    assert code == 2 and err.strip() == f"{tmp_path / 'missing.png'}:1:1: no such file"
    code, out, err = cli("predict", str(run / "resolved.yaml"), str(sample), "--weights", str(run / "best.pt"), "--top", "0")
    assert (code, out, err) == (2, "", "--top: --top must be >= 1; got 0\n")
    other = tmp_path / "other.yaml"  # the same network with five classes: the weights do not fit it
    other.write_text(TINY.replace("params: {classes: 4}", "params: {classes: 5}"))
    for command in (["predict", str(other), str(sample)], ["eval", str(other)]):
        code, out, err = cli(*command, "--weights", str(run / "best.pt"))
        assert code == 2 and err == (
            f"{run / 'best.pt'}:1:1: weights do not fit the network: mis-shaped 2: head.bias (expected [5], got [4]), "
            f"head.weight (expected [5, 32], got [4, 32]) (spec {other})\n"
        )


def test_per_layer_group_learning_rates_and_weight_decay(tiny, tmp_path):
    groups = [{"params": "conv.*", "lr": 0.001}, {"params": "hidden", "lr": 0.002, "weight_decay": 0.1}]
    trainer = make_trainer(tiny, tmp_path, {"train.optimizer.groups": groups, "train.optimizer.weight_decay": 0.01})
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    summary = [(sorted(names[id(p)] for p in g["params"]), g["lr"], g["weight_decay"]) for g in trainer.optimizer.param_groups]
    assert summary == [
        (["conv.bias", "conv.weight"], 0.001, 0.01),
        (["hidden.bias", "hidden.weight"], 0.002, 0.1),
        (["head.bias", "head.weight"], 0.05, 0.01),  # the rest: the optimizer's own lr
    ]


def test_progress_bar_on_a_terminal_plain_lines_otherwise(tiny, tmp_path):
    import pty

    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "netdsl", "train", str(tiny), "--out", str(tmp_path / "tty"), "--epochs", "1"], cwd=ROOT, stdout=follower, stderr=follower
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert proc.wait(timeout=120) == 0
    shown = b"".join(chunks).decode()
    assert "\r\x1b[2Kepoch 1/1 " in shown and "samples/s" in shown  # redrawn in place with loss, accuracy, lr and rate
    assert "11/11\x1b[0m loss " in shown  # 168 training samples (70% of 240) in batches of 16
    assert "ETA \x1b[36m0:00:0" in shown  # the time left in the epoch
    plain = subprocess.run(
        [sys.executable, "-m", "netdsl", "train", str(tiny), "--out", str(tmp_path / "pipe"), "--epochs", "1"], cwd=ROOT, capture_output=True, text=True
    )
    assert "\r" not in plain.stdout + plain.stderr
    assert [line.split()[0:2] for line in plain.stdout.splitlines()][2] == ["epoch", "1/1"]  # after the task and run lines


def test_corrupt_images_stop_the_run_by_name_or_are_skipped_and_listed(tiny, tmp_path, cli):
    folder = image_folder(tmp_path / "images", per_class=10)
    bad = folder / "c1" / "part0" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really" * 20)
    settings = ["--set", "train.data.source=image_folder", "--set", f"train.data.path={folder}", "--set", "train.data.split={train: 1.0}", "--epochs", "1"]
    code, out, err = cli("train", str(tiny), "--out", str(tmp_path / "a"), *settings)
    assert code == 2 and "run " not in out  # found while the normalization sample is read: before a run directory
    assert err.startswith(f"{bad}:1:1: cannot decode image: ") and err.rstrip().endswith(
        "; set train.data.skip_corrupt: true to leave such files out (they are then listed in skipped_files.txt)"
    )
    assert err.count("\n") == 1 and not (tmp_path / "a").exists()
    code, out, err = cli("train", str(tiny), "--out", str(tmp_path / "b"), *settings, "--set", "train.data.skip_corrupt=true")
    assert code == 0, err
    run = next((tmp_path / "b").iterdir())
    assert (run / "skipped_files.txt").read_text().startswith(f"{bad}\tcannot decode image: ")
    assert json.loads((run / "results.json").read_text())["skipped_files"] == 1
    assert f"left out 1 file(s) that could not be decoded: listed in {run / 'skipped_files.txt'}" in out


def test_cpu_training_leaves_cores_to_data_workers_and_gives_the_threads_back(tiny, tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    folder = image_folder(tmp_path / "images", per_class=10)
    before = torch.get_num_threads()
    settings = {"train.data.source": "image_folder", "train.data.path": str(folder), "train.workers": 1, "train.epochs": 1}
    run = train(tiny, out=tmp_path / "runs", settings=settings, log=quiet)
    cpus = len(os.sched_getaffinity(0))
    # torch's threads + 1 worker <= the CPUs (oversubscribed OpenMP threads spin while workers decode: bench_data.py)
    assert json.loads((run / "env.json").read_text())["threads"] == max(1, min(before, cpus - 1))
    assert json.loads((run / "env.json").read_text())["data_workers"] == 1
    assert torch.get_num_threads() == before  # the caller's setting is back
