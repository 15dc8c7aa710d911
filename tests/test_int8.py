"""`netdsl export --int8`: static QDQ quantization calibrated on a run's training data, verified by top-1 agreement."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from netdsl.cli.main import main
from netdsl.runtime.model_info import ModelInfo
from netdsl.train.api import train
from tests.onnx_registry import shared_onnx_registry  # noqa: F401 (an autouse fixture)

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = """netdsl: 1
name: tiny8
input: 1x8x8
layers:
  - conv: {out: 8, kernel: 3, padding: 1}
  - relu
  - maxpool: 2
  - flatten
  - linear: 10
"""
TRAIN = """train:
  data: {source: digits, split: {train: 0.7, val: 0.1, test: 0.2}}
  optimizer: {name: adam, lr: 0.01}
  batch_size: 64
  epochs: 2
"""


def run_cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path | str]:
    """A tiny conv net trained 2 epochs on the bundled digits (8x8), exported as int8 from its run folder."""
    tmp = tmp_path_factory.mktemp("int8")
    (tmp / "tiny8.yaml").write_text(TINY + TRAIN)
    (tmp / "bare.yaml").write_text(TINY)
    run = train(tmp / "tiny8.yaml", out=tmp / "runs", log=lambda _: None)
    code, stdout, stderr = run_cli("export", str(run), "--int8", "--calibration", "64", "-o", str(tmp / "tiny8.int8.onnx"))
    assert code == 0, stderr
    return {"tmp": tmp, "run": run, "model": tmp / "tiny8.int8.onnx", "stdout": stdout}


def test_the_int8_file_has_qdq_nodes_and_per_channel_weight_scales(trained):
    model = onnx.load(str(trained["model"]))
    ops = [n.op_type for n in model.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    weight_dq = next(n for n in model.graph.node if n.output[0] == conv.input[1])  # the conv's weight comes through a DequantizeLinear
    assert weight_dq.op_type == "DequantizeLinear"
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert inits[weight_dq.input[0]].dtype == np.int8 and inits[weight_dq.input[0]].shape == (8, 1, 3, 3)
    scales = inits[weight_dq.input[1]]
    assert scales.shape == (8,) and len(set(scales.tolist())) > 1  # one scale per output channel


def test_metadata_records_precision_and_calibration(trained):
    props = {p.key: p.value for p in onnx.load(str(trained["model"])).metadata_props}
    assert props["precision"] == "int8" and props["name"] == "tiny8"  # plain strings
    info = ModelInfo.from_metadata(props)
    assert info is not None and info.precision == "int8"
    assert info.calibration == {
        "samples": 64,
        "source": f"train split of {trained['run'] / 'resolved.yaml'}",
        "format": "QDQ",
        "activations": "uint8",
        "weights": "int8 (7-bit range), per channel",
    }


def test_verification_reports_top1_agreement_with_fp32(trained):
    lines = trained["stdout"].splitlines()
    assert lines[0] == "onnx.checker (full check): ok"
    assert lines[1].startswith("onnxruntime vs PyTorch, batch 1: ") and lines[1].endswith(": ok")  # the fp32 file against PyTorch first
    assert lines[3] == "onnx.checker (full check, int8): ok"
    agreement = lines[4]
    assert agreement.startswith("int8 agrees with fp32 on ") and agreement.endswith("% of 359 test samples (top-1)")  # 1,797 digits x 0.2
    assert float(agreement.split(" on ")[1].split("%")[0]) >= 98.0
    assert lines[5].startswith(f"wrote {trained['model']}: tiny8, input 1x8x8, batch dynamic, opset 18, int8, dynamo exporter, ")
    assert lines[7] == f"calibration: 64 samples of the train split of {trained['run'] / 'resolved.yaml'}, QDQ, per-channel weights"


def test_infer_runs_the_int8_model(trained):
    x = np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32)
    np.save(trained["tmp"] / "x.npy", x)
    code, stdout, stderr = run_cli("infer", str(trained["model"]), str(trained["tmp"] / "x.npy"), "--provider", "cpu", "--json", "--top", "1")
    assert code == 0, stderr
    results = json.loads(stdout)
    assert [r["input"] for r in results] == [f"{trained['tmp'] / 'x.npy'}[{i}]" for i in range(4)]
    assert all(r["top"][0]["class"] in [str(d) for d in range(10)] and 0 < r["top"][0]["p"] <= 1 for r in results)


def test_spec_file_with_run_weights_calibrates_on_the_run_at_a_fixed_batch(trained, tmp_path):
    out = tmp_path / "m.onnx"
    bare = str(trained["tmp"] / "bare.yaml")  # no train: section; the run folder given as --weights has one
    code, stdout, stderr = run_cli("export", bare, "--weights", str(trained["run"]), "--int8", "--calibration", "10", "--batch", "4", "-o", str(out))
    assert code == 0, stderr
    assert "% of 359 test samples (top-1)" in stdout  # 359 = 89 batches of 4 and a last one padded, its extra results dropped
    info = ModelInfo.from_metadata({p.key: p.value for p in onnx.load(str(out)).metadata_props})
    assert info is not None and info.calibration is not None and info.calibration["samples"] == 10
    assert info.inputs[0].shape == [4, 1, 8, 8]


def test_bad_inputs_are_one_line_each(trained, tmp_path):
    bare = str(trained["tmp"] / "bare.yaml")
    out = str(tmp_path / "x.onnx")
    for args, message in [
        ((bare, "--int8"), "--int8: calibration needs data: the spec has no train.data; give a run folder or a spec with train.data"),
        ((str(trained["run"]), "--int8", "--fp16"), "--int8: --int8 and --fp16 exclude each other: choose one precision"),
        ((str(trained["run"]), "--int8", "--calibration", "0"), "--calibration: --calibration must be >= 1 samples; got 0"),
    ]:
        code, _stdout, stderr = run_cli("export", *args, "-o", out)
        assert (code, stderr) == (2, message + "\n"), args
    assert not (tmp_path / "x.onnx").exists()


def test_agreement_below_the_threshold_fails_with_one_line_and_writes_nothing(trained, tmp_path, monkeypatch):
    from netdsl.deploy import quantize

    monkeypatch.setattr(quantize, "MIN_AGREEMENT", 1.01)  # no model reaches it
    out = tmp_path / "low.onnx"
    code, _stdout, stderr = run_cli("export", str(trained["run"]), "--int8", "--calibration", "8", "-o", str(out))
    assert code == 2 and len(stderr.splitlines()) == 1
    assert stderr.startswith(f"{out}:1:1: verification failed: int8 agrees with fp32 on ")
    assert stderr.endswith("% of 359 test samples (top-1), below 101%; nothing written (--no-verify writes it anyway)\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no temporary folder left either
    code, _, stderr = run_cli("export", str(trained["run"]), "--int8", "--calibration", "8", "--no-verify", "-o", str(out))
    assert code == 0 and out.is_file(), stderr


def test_bench_compares_precisions_with_labelled_rows(trained, tmp_path):
    spec = str(trained["tmp"] / "tiny8.yaml")
    code, stdout, stderr = run_cli("bench", spec, "--precisions", "fp32,fp16,int8", "--provider", "cpu", "--batch", "2", "--time", "0.01", "--no-compile")
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert lines[0].startswith("tiny8 (input 1x8x8, fp32, fp16, int8) on cpu: ")
    assert lines[1].split()[:3] == ["batch", "engine", "precision"]
    rows = [line.split()[:3] for line in lines[2:]]
    assert rows == [
        ["2", "onnxruntime", "fp32"],
        ["2", "torch", "eager"],
        ["2", "torch.compile", "fp32"],
        ["2", "onnxruntime", "fp16"],
        ["2", "onnxruntime", "int8"],
    ]
    assert lines[5].endswith(
        "fp16       skipped: fp16 is timed on a GPU only (on a CPU onnxruntime and PyTorch emulate float16 arithmetic, so the figures would mislead)"
    )
    assert float(lines[6].split()[3]) > 0  # int8: a p50 in ms


def test_bench_an_int8_file_against_fp32_from_its_metadata(trained):
    from netdsl.deploy.bench import bench

    report = bench(trained["model"], provider="cpu", batches=(1,), compile=False, min_time=0.01, precisions=("int8", "fp32"))
    assert [(r.precision, r.engine) for r in report.rows] == [
        ("int8", "onnxruntime"),
        ("fp32", "onnxruntime"),
        ("fp32", "torch eager"),
        ("fp32", "torch.compile"),
    ]
    assert all(r.p50_ms and r.p50_ms > 0 for r in report.rows[:3])
    own = bench(trained["model"], provider="cpu", batches=(1,), compile=False, min_time=0.01)  # default: the file's own precision
    assert [(r.precision, r.engine) for r in own.rows] == [("int8", "onnxruntime")] and own.precision == "int8"


def test_bench_int8_without_data_says_why_and_bad_precisions(trained):
    bare = str(trained["tmp"] / "bare.yaml")
    code, stdout, stderr = run_cli("bench", bare, "--precisions", "int8", "--provider", "cpu", "--batch", "1", "--time", "0.01", "--no-compile")
    assert code == 0, stderr
    assert stdout.splitlines()[2].split(None, 2)[2] == (
        "skipped: int8 needs calibration data and the spec has no train.data (or bench an int8 .onnx from netdsl export --int8)"
    )
    for value, message in [
        ("fp32,int4", "--precisions: unknown precision 'int4'; choose from fp32, fp16, int8; did you mean 'int8'?"),
        ("int8,int8", "--precisions: --precisions names a precision twice: 'int8,int8'"),
    ]:
        assert run_cli("bench", bare, "--precisions", value) == (2, "", message + "\n")
    assert run_cli("bench", bare, "--precisions", "fp32", "--fp16") == (
        2,
        "",
        "--precisions: --precisions and --fp16 exclude each other: add fp16 to --precisions instead\n",
    )
