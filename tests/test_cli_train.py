"""The training-side command line: eval/predict on a run folder, per-class report, folders and globs, shortcut flags, --json, file modes."""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from netdsl.atomic import write_atomic
from netdsl.cli.main import main
from netdsl.train.evaluation import classification_report, report_lines

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = """netdsl: 1
name: tiny
input: 1x8x8
params: {classes: 3}
layers:
  - conv: {name: conv, out: 4, k: 3, p: 1}
  - relu
  - maxpool: 2
  - flatten
  - linear: {name: head, out: classes}
train:
  data: {source: synthetic, samples: 120, num_classes: 3, seed: 1}
  optimizer: {name: sgd, lr: 0.05, momentum: 0.9}
  batch_size: 64
  epochs: 3
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One run made through the CLI with every shortcut flag and --json, under umask 022."""
    folder = tmp_path_factory.mktemp("cli_train")
    spec = folder / "tiny.yaml"
    spec.write_text(TINY)
    argv = ["train", str(spec), "--out", str(folder / "runs"), "--epochs", "1", "--json"]
    argv += ["--lr", "2e-3", "--batch-size", "32", "--device", "cpu", "--workers", "0"]
    out, err = io.StringIO(), io.StringIO()
    previous = os.umask(0o022)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    finally:
        os.umask(previous)
    assert code == 0, err.getvalue()
    summary = json.loads(out.getvalue())  # stdout holds the JSON alone: the progress lines went to stderr
    yield {"spec": spec, "run": Path(summary["run"]), "summary": summary, "stderr": err.getvalue(), "folder": folder}


@pytest.fixture(scope="module")
def images(trained: dict[str, Any]) -> Path:
    """A folder of three 8x8 PNGs, a stack of two .npy samples and a file that is neither."""
    folder = trained["folder"] / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("b.png", "a.png", "c.jpg"):
        Image.fromarray((rng.random((8, 8)) * 255).astype("uint8")).save(folder / name)
    np.save(folder / "stack.npy", rng.random((2, 1, 8, 8)).astype("float32"))
    (folder / "notes.txt").write_text("not an input")
    (folder / ".hidden.png").write_bytes(b"")
    return folder


# -- train: shortcut flags and --json --------------------------------------------------------------------------------


def test_train_shortcut_flags_set_the_train_settings_and_json_prints_the_summary(trained):
    run, summary = trained["run"], trained["summary"]
    resolved = yaml.safe_load((run / "resolved.yaml").read_text())["train"]
    assert (resolved["optimizer"]["lr"], resolved["batch_size"], resolved["device"], resolved["workers"]) == (0.002, 32, "cpu", 0)
    assert summary["state"] == "finished" and summary["epochs_run"] == 1 and summary["test_samples"] == 24
    assert summary["files"]["best.pt"] == str(run / "best.pt") and Path(summary["files"]["best.safetensors"]).is_file()
    assert "epoch 1/1 " in trained["stderr"] and "lr 2.00e-03" in trained["stderr"]


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--lr", "-1", "--lr: train.optimizer.lr must be a number > 0; got -1"),
        ("--lr", "fast", "--lr: train.optimizer.lr must be a number > 0; got 'fast'"),
        ("--lr", "inf", "--lr: train.optimizer.lr must be a number > 0; got 'inf'"),
        ("--batch-size", "0", "--batch-size: train.batch_size must be an integer >= 1; got 0"),
        ("--batch-size", "2.5", "--batch-size: train.batch_size must be an integer >= 1; got 2.5"),
        ("--device", "gpu", "--device: train.device must be one of 'auto', 'cpu', 'cuda'; got 'gpu'; did you mean 'cpu'?"),
        ("--workers", "x", "--workers: train.workers must be an integer >= 0 or one of 'auto'; got 'x'"),
    ],
)
def test_bad_shortcut_values_are_one_line_before_any_run(trained, tmp_path, cli, flag, value, message):
    code, out, err = cli("train", str(trained["spec"]), "--out", str(tmp_path / "runs"), flag, value)
    assert (code, out, err) == (2, "", message + "\n")
    assert not (tmp_path / "runs").exists()
    if flag != "--lr":  # eval and predict check them the same way, before reading weights or data
        assert cli("eval", str(trained["run"]), flag, value) == (2, "", message + "\n")


def test_a_shortcut_flag_wins_over_set_and_accepts_what_set_accepts(trained):
    from netdsl.cli.common import split_settings
    from netdsl.cli.parser import build_parser

    args = build_parser().parse_args(["train", str(trained["spec"]), "--set", "train.optimizer.lr=0.5", "--lr", "1e-4", "--workers", "auto"])
    settings, _ = split_settings(args)
    assert settings == {"train.optimizer.lr": 1e-4, "train.workers": "auto"}


# -- run files honour the umask -------------------------------------------------------------------------------------


def test_every_file_of_a_run_is_0644_under_umask_022(trained):
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in trained["run"].iterdir() if p.is_file()}
    assert {"best.pt", "best.safetensors", "last.pt", "resolved.yaml", "results.json", "status.json", "curves.png"} <= set(modes)
    assert {name: mode for name, mode in modes.items() if mode != 0o644} == {}


def test_the_atomic_writer_honours_the_umask_as_open_does(tmp_path):
    previous = os.umask(0o027)
    try:
        write_atomic(tmp_path / "w.bin", b"x")
        with open(tmp_path / "plain.bin", "wb") as f:
            f.write(b"x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "w.bin").stat().st_mode) == stat.S_IMODE((tmp_path / "plain.bin").stat().st_mode) == 0o640


# -- eval -----------------------------------------------------------------------------------------------------------


def test_eval_of_a_run_folder_prints_loss_and_the_per_class_table_and_writes_eval_json(trained, cli):
    run = trained["run"]
    code, out, err = cli("eval", str(run))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("classification: test loss ") and lines[0].endswith(" on 24 samples")
    assert lines[1].split() == ["precision", "recall", "f1-score", "support"]
    assert [line.split()[0] for line in lines[3:6]] == ["class0", "class1", "class2"]
    assert lines[-2] == f"confusion matrix: {run / 'confusion.png'}" and lines[-1] == f"report: {run / 'eval.json'}"
    report = json.loads((run / "eval.json").read_text())
    assert sum(r["support"] for r in report["test_per_class"]) == 24 == report["test_weighted_avg"]["support"]
    assert report["weights"] == str(run / "best.pt") and report["spec"] == str(run / "resolved.yaml")
    assert stat.S_IMODE((run / "eval.json").stat().st_mode) == 0o644 & ~_umask()


def test_eval_spec_with_weights_as_a_run_folder(trained, tmp_path, cli):
    report = tmp_path / "reports" / "e.json"
    report.parent.mkdir()
    code, out, err = cli("eval", str(trained["spec"]), "--weights", str(trained["run"]), "--report", str(report), "--json", "--batch-size", "5")
    assert code == 0, err
    result = json.loads(out)
    assert result["report_json"] == str(report) and json.loads(report.read_text())["test_per_class"] == result["test_per_class"]
    matrix = result["confusion_matrix"]
    assert [r["support"] for r in result["test_per_class"]] == [sum(row) for row in matrix]  # the report comes from the matrix
    assert result["test_accuracy"] == pytest.approx(sum(matrix[i][i] for i in range(3)) / 24)
    assert result["test_loss"] > 0


def test_eval_of_a_spec_without_weights_says_what_to_give(trained, cli):
    code, out, err = cli("eval", str(trained["spec"]))
    assert (code, out) == (2, "")
    assert err == (
        f"--weights: {trained['spec']} is a spec without weights: give --weights (best.pt, last.pt, .safetensors or a run folder), "
        "or a run folder instead of the spec\n"
    )


def test_a_folder_that_is_not_a_run(trained, tmp_path, cli):
    code, _, err = cli("eval", str(tmp_path))
    assert (code, err) == (2, f"{tmp_path}:1:1: not a training run folder: it has no resolved.yaml\n")
    (tmp_path / "resolved.yaml").write_text(TINY)
    code, _, err = cli("predict", str(trained["spec"]), "x.png", "--weights", str(tmp_path))
    assert (code, err) == (2, f"{tmp_path}:1:1: not a training run folder: it has no best.pt\n")


def test_eval_device(trained, tmp_path, cli):
    code, out, err = cli("eval", str(trained["run"]), "--device", "cuda", "--out", str(tmp_path / "c.png"))
    if torch.cuda.is_available():
        assert code == 0 and json.loads((tmp_path / "eval.json").read_text())["test_samples"] == 24
    else:
        assert (code, out, err) == (2, "", "--device: device 'cuda' was asked for, but torch sees no CUDA device\n")


def test_classification_report_matches_scikit_learns_definitions():
    # rows: true class, columns: predicted. class0: 2 of 3 found, both predictions right; class1: 3 of 4, 3 of 4
    # predictions right; class2: never present, predicted once (precision and recall 0, as sklearn's zero_division=0)
    report = classification_report([[2, 1, 0], [0, 3, 1], [0, 0, 0]], ["a", "b", "c"])
    got = [(r["class"], r["precision"], r["recall"], r["f1"], r["support"]) for r in report["per_class"]]
    assert got == [("a", 1.0, pytest.approx(2 / 3), pytest.approx(0.8), 3), ("b", 0.75, 0.75, 0.75, 4), ("c", 0.0, 0.0, 0.0, 0)]
    assert report["macro_avg"]["precision"] == pytest.approx(1.75 / 3) and report["macro_avg"]["support"] == 7
    assert report["weighted_avg"]["recall"] == pytest.approx(5 / 7) and report["weighted_avg"]["f1"] == pytest.approx((3 * 0.8 + 4 * 0.75) / 7)
    lines = report_lines({f"test_{k}": v for k, v in report.items()})
    assert lines[0] == "              precision     recall   f1-score    support"
    assert lines[2] == "           a     1.0000     0.6667     0.8000          3"
    assert lines[6] == "    accuracy                           0.7143          7"
    assert lines[8] == "weighted avg     0.8571     0.7143     0.7714          7"


# -- predict ----------------------------------------------------------------------------------------------------------


def test_predict_a_folder_reads_every_input_inside_sorted_and_says_how_many(trained, images, cli):
    code, out, err = cli("predict", str(trained["run"]), str(images), "--top", "1")
    assert code == 0, err
    names = [line.split(": ")[0] for line in out.splitlines()]
    assert names == [str(images / n) for n in ("a.png", "b.png", "c.jpg")] + [f"{images / 'stack.npy'}[{i}]" for i in range(2)]
    assert err == f"{images}: 4 files (folder)\n"


def test_predict_a_quoted_glob_with_json(trained, images, cli):
    pattern = str(images / "*.png")
    code, out, err = cli("predict", str(trained["spec"]), pattern, str(images / "c.jpg"), "--weights", str(trained["run"] / "best.safetensors"), "--json")
    assert code == 0, err
    results = json.loads(out)
    assert [r["input"] for r in results] == [str(images / "a.png"), str(images / "b.png"), str(images / "c.jpg")]
    assert [len(r["top"]) for r in results] == [3, 3, 3] and all(sum(t["p"] for t in r["top"]) == pytest.approx(1, abs=1e-5) for r in results)
    assert err == f"{pattern}: 2 files (glob)\n"


def test_predict_a_folder_without_inputs_or_a_glob_matching_nothing(trained, tmp_path, cli):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no pictures here")
    code, out, err = cli("predict", str(trained["run"]), str(empty))
    assert (code, out, err) == (2, "", f"{empty}:1:1: no images or .npy arrays in folder '{empty}'\n")
    pattern = str(tmp_path / "*.png")
    code, out, err = cli("predict", str(trained["run"]), pattern)
    assert (code, out, err) == (2, "", f"{pattern}:1:1: glob '{pattern}' matches nothing\n")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_predict_reads_a_folder_a_chunk_of_files_at_a_time(trained, images, cli, monkeypatch):
    """Memory stays bounded whatever a folder holds: at most CHUNK_FILES files are read at once, and the answers are
    those of one pass."""
    import netdsl.runtime.input_paths
    import netdsl.runtime.inputs

    whole = cli("predict", str(trained["run"]), str(images), "--top", "2")
    read = netdsl.runtime.inputs.read_inputs
    sizes: list[int] = []
    monkeypatch.setattr(netdsl.runtime.input_paths, "CHUNK_FILES", 2)
    monkeypatch.setattr(netdsl.runtime.inputs, "read_inputs", lambda paths, shape: sizes.append(len(paths)) or read(paths, shape))
    assert cli("predict", str(trained["run"]), str(images), "--top", "2") == whole
    assert sizes == [2, 2]  # a.png b.png | c.jpg stack.npy (a stack of two samples is one file)
