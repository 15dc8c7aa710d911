"""netdsl infer and bench: inputs, normalization and class names from the metadata, provider choice, bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image

import netdsl
from netdsl.backends.pytorch import build_module
from netdsl.deploy.bench import bench
from netdsl.deploy.onnx import Labels, export
from netdsl.runtime import session as session_module
from netdsl.runtime.infer import infer
from tests.conftest import ROOT
from tests.onnx_registry import shared_onnx_registry  # noqa: F401 (an autouse fixture)

torch.set_num_threads(2)

TINY = """netdsl: 1
name: tiny
input: 3x8x8
layers:
  - conv: {name: conv, out: 4, k: 3, p: 1}
  - relu
  - gap
  - linear: {name: head, out: 3}
"""
CLASSES = ["cat", "dog", "emu"]
MEAN, STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(the ONNX file, the PyTorch model it came from), with class names and normalization recorded."""
    folder = tmp_path_factory.mktemp("model")
    graph = netdsl.load_text(TINY)
    model = build_module(graph, seed=5).eval()
    torch.save(model.state_dict(), folder / "w.pt")
    export(graph, folder / "tiny.onnx", weights=folder / "w.pt", labels=Labels(CLASSES, {"mean": MEAN, "std": STD}))
    return folder / "tiny.onnx", model


def torch_probabilities(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    normalized = (torch.from_numpy(x) - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        return model(normalized).softmax(1).numpy()


def test_npy_inputs_are_normalized_as_recorded_and_named(exported, tmp_path):
    path, model = exported
    x = np.random.default_rng(1).random((5, 3, 8, 8), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "one.npy", x[0])
    loaded, predictions = infer(path, [str(tmp_path / "x.npy"), str(tmp_path / "one.npy")], provider="cpu", top=3)
    assert loaded.provider == "cpu"
    assert [p.source for p in predictions] == [f"{tmp_path / 'x.npy'}[{i}]" for i in range(5)] + [str(tmp_path / "one.npy")]
    want = torch_probabilities(model, np.concatenate([x, x[:1]]))
    for prediction, row in zip(predictions, want):
        assert [i for i, _, _ in prediction.top] == list(np.argsort(-row, kind="stable"))
        assert [name for _, name, _ in prediction.top] == [CLASSES[i] for i, _, _ in prediction.top]
        np.testing.assert_allclose([p for _, _, p in prediction.top], np.sort(row)[::-1], rtol=1e-4)


def test_images_are_read_resized_and_normalized(exported, tmp_path):
    path, model = exported
    pixels = (np.random.default_rng(2).random((8, 8, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "exact.png")
    Image.fromarray(np.repeat(np.repeat(pixels, 2, 0), 2, 1)).save(tmp_path / "double.png")  # 16x16: resized to 8x8
    _, predictions = infer(path, [str(tmp_path / "exact.png"), str(tmp_path / "double.png")], provider="cpu", top=3)
    want = torch_probabilities(model, (pixels.astype(np.float32) / 255).transpose(2, 0, 1)[None])[0]
    np.testing.assert_allclose([p for _, _, p in predictions[0].top], np.sort(want)[::-1], rtol=1e-4)
    assert len(predictions[1].top) == 3


def test_cli_prints_the_provider_and_top_classes(exported, tmp_path, cli):
    path, _ = exported
    np.save(tmp_path / "x.npy", np.full((3, 8, 8), 0.5, np.float32))
    code, stdout, stderr = cli("infer", str(path), str(tmp_path / "x.npy"), "--provider", "cpu", "--top", "2")
    assert code == 0, stderr
    first, second = stdout.splitlines()
    assert first == "provider: cpu (CPUExecutionProvider)"
    assert second.startswith(f"{tmp_path / 'x.npy'}: ") and second.count("%)") == 2


def test_cli_json_gives_the_top_classes_per_input(exported, tmp_path, cli):
    path, model = exported
    x = np.random.default_rng(6).random((2, 3, 8, 8), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    code, stdout, stderr = cli("infer", str(path), str(tmp_path / "x.npy"), "--top", "2", "--json")
    assert code == 0, stderr
    results = json.loads(stdout)  # the JSON list alone, no provider line
    want = torch_probabilities(model, x)
    for i, (result, row) in enumerate(zip(results, want)):
        best = np.argsort(-row, kind="stable")[:2]
        assert result == {
            "input": f"{tmp_path / 'x.npy'}[{i}]",
            "top": [{"class": CLASSES[c], "index": int(c), "p": result["top"][j]["p"]} for j, c in enumerate(best)],
        }
        np.testing.assert_allclose([t["p"] for t in result["top"]], row[best], atol=1e-4)  # rounded to 4 places


def test_an_export_from_before_tasks_is_read_as_a_classifier_with_its_class_names(exported, tmp_path):
    path, _ = exported
    model = onnx.load(str(path))
    kept = [p for p in model.metadata_props if p.key != "task"]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    onnx.save(model, str(tmp_path / "old.onnx"))
    np.save(tmp_path / "x.npy", np.zeros((3, 8, 8), np.float32))
    _, (prediction,) = infer(tmp_path / "old.onnx", [str(tmp_path / "x.npy")], provider="cpu", top=3)
    assert sorted(name for _, name, _ in prediction.top) == CLASSES


def test_a_nan_input_is_an_error_not_nan_percent(exported, tmp_path, cli):
    path, _ = exported
    np.save(tmp_path / "x.npy", np.full((3, 8, 8), np.nan, np.float32))
    code, stdout, stderr = cli("infer", str(path), str(tmp_path / "x.npy"))
    assert (code, stdout) == (2, "")
    assert stderr == f"{tmp_path / 'x.npy'}:1:1: the input holds NaN or infinite values (192 of its 192 values); give finite values in [0, 1]\n"


def test_auto_says_which_provider_ran(exported, tmp_path, cli):
    path, _ = exported
    np.save(tmp_path / "x.npy", np.zeros((3, 8, 8), np.float32))
    code, stdout, _ = cli("infer", str(path), str(tmp_path / "x.npy"))
    ran = ort.InferenceSession(str(path), providers=ort.get_available_providers()).get_providers()[0]
    assert code == 0 and stdout.startswith(f"provider: {session_module.short_name(ran)} ({ran}; auto: ")


def test_a_provider_that_does_not_start_is_an_error_not_a_fallback(exported, tmp_path, cli, monkeypatch):
    path, _ = exported

    class CpuOnly(ort.InferenceSession):  # what onnxruntime-gpu does on a machine without a usable GPU
        def __init__(self, model, options, providers):
            super().__init__(model, options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", CpuOnly)
    np.save(tmp_path / "x.npy", np.zeros((3, 8, 8), np.float32))
    code, stdout, stderr = cli("infer", str(path), str(tmp_path / "x.npy"), "--provider", "cuda")
    assert (code, stdout) == (2, "")
    assert stderr == (
        "--provider: cuda: onnxruntime lists CUDAExecutionProvider but could not start it here (no usable GPU, or its CUDA/TensorRT "
        "libraries are missing); it would have run on CPUExecutionProvider (use --provider auto to accept the fastest that starts)\n"
    )
    code, stdout, _ = cli("infer", str(path), str(tmp_path / "x.npy"))  # auto accepts it and says so
    assert code == 0 and stdout.startswith("provider: cpu (CPUExecutionProvider; auto: cuda could not start here)\n")


def test_a_provider_missing_from_the_build(exported, tmp_path, cli, monkeypatch):
    path, _ = exported
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    np.save(tmp_path / "x.npy", np.zeros((3, 8, 8), np.float32))
    code, _, stderr = cli("infer", str(path), str(tmp_path / "x.npy"), "--provider", "tensorrt")
    assert (code, stderr) == (2, "--provider: tensorrt: TensorrtExecutionProvider is not in this onnxruntime build (it has: cpu)\n")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"hello, I am text", "not a usable ONNX model (InvalidProtobuf: Protobuf parsing failed.)"),
        (None, "no such file"),
    ],
)
def test_a_file_that_is_not_a_model(tmp_path, cli, content, message):
    path = tmp_path / "m.onnx"
    if content is not None:
        path.write_bytes(content)
    np.save(tmp_path / "x.npy", np.zeros((3, 8, 8), np.float32))
    code, stdout, stderr = cli("infer", str(path), str(tmp_path / "x.npy"))
    assert (code, stdout, stderr) == (2, "", f"{path}:1:1: {message}\n")


def test_a_truncated_model(exported, tmp_path, cli):
    path, _ = exported
    (tmp_path / "cut.onnx").write_bytes(path.read_bytes()[:200])
    np.save(tmp_path / "x.npy", np.zeros((3, 8, 8), np.float32))
    code, _, stderr = cli("infer", str(tmp_path / "cut.onnx"), str(tmp_path / "x.npy"))
    assert code == 2 and stderr.startswith(f"{tmp_path / 'cut.onnx'}:1:1: not a usable ONNX model (") and stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((1, 8, 8), np.float32), "shape 1x8x8 does not fit the model's input 3x8x8 (give 3x8x8 or Nx3x8x8)"),
        (np.zeros((2, 3, 9, 8), np.float32), "shape 2x3x9x8 does not fit the model's input 3x8x8 (give 3x8x8 or Nx3x8x8)"),
        (np.zeros((3, 8, 8), np.int64), "dtype int64 is not supported; give float values in [0, 1] or uint8 pixels"),
    ],
)
def test_wrong_input_shape_or_dtype(exported, tmp_path, cli, array, message):
    path, _ = exported
    np.save(tmp_path / "x.npy", array)
    code, _, stderr = cli("infer", str(path), str(tmp_path / "x.npy"))
    assert (code, stderr) == (2, f"{tmp_path / 'x.npy'}:1:1: {message}\n")


def test_unreadable_inputs(exported, tmp_path, cli):
    path, _ = exported
    (tmp_path / "fake.png").write_text("not an image")
    code, _, stderr = cli("infer", str(path), str(tmp_path / "fake.png"))
    assert code == 2 and stderr.startswith(f"{tmp_path / 'fake.png'}:1:1: cannot read as an image (cannot identify image file")
    code, _, stderr = cli("infer", str(path), str(tmp_path / "none.npy"))
    assert (code, stderr) == (2, f"{tmp_path / 'none.npy'}:1:1: no such file\n")
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    code, _, stderr = cli("infer", str(path), str(tmp_path / "bad.npy"))
    assert code == 2 and stderr.startswith(f"{tmp_path / 'bad.npy'}:1:1: not a readable .npy array (")


def test_bad_options(exported, tmp_path, cli):
    path, _ = exported
    np.save(tmp_path / "x.npy", np.zeros((3, 8, 8), np.float32))
    assert cli("infer", str(path), str(tmp_path / "x.npy"), "--top", "0")[2] == "--top: --top must be >= 1; got 0\n"
    assert cli("infer", str(path), str(tmp_path / "x.npy"), "--batch", "0")[2] == "--batch: --batch must be >= 1; got 0\n"


def test_fixed_batch_model_pads_the_last_batch(tmp_path):
    graph = netdsl.load_text(TINY)
    export(graph, tmp_path / "b2.onnx", batch=2)
    x = np.random.default_rng(3).random((3, 3, 8, 8), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    model, predictions = infer(tmp_path / "b2.onnx", [str(tmp_path / "x.npy")], provider="cpu", top=1)
    assert model.fixed_batch == 2 and len(predictions) == 3
    assert [name for p in predictions for _, name, _ in p.top] == [str(i) for p in predictions for i, _, _ in p.top]  # no class names
    with pytest.raises(netdsl.SpecError, match="was exported with a fixed batch of 2"):
        infer(tmp_path / "b2.onnx", [str(tmp_path / "x.npy")], batch=3)


def test_a_foreign_model_without_netdsl_metadata(tmp_path):
    node = onnx.helper.make_node("Flatten", ["pixels"], ["scores"])
    graph = onnx.helper.make_graph(
        [node],
        "flat",
        [onnx.helper.make_tensor_value_info("pixels", onnx.TensorProto.FLOAT, ["n", 1, 2, 2])],
        [onnx.helper.make_tensor_value_info("scores", onnx.TensorProto.FLOAT, ["n", 4])],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)])
    model.ir_version = 10  # onnx.helper's default is newer than onnxruntime 1.31 reads
    onnx.save(model, str(tmp_path / "flat.onnx"))
    np.save(tmp_path / "x.npy", np.array([[[0.1, 0.9], [0.3, 0.2]]], np.float32))
    _, predictions = infer(tmp_path / "flat.onnx", [str(tmp_path / "x.npy")], provider="cpu", top=2)
    assert [(i, name) for i, name, _ in predictions[0].top] == [(1, "1"), (2, "2")]  # raw values, index names


def test_infer_does_not_import_torch(exported, tmp_path):
    path, _ = exported
    np.save(tmp_path / "x.npy", np.zeros((3, 8, 8), np.float32))
    code = f"import sys; from netdsl.cli.main import main; main(['infer', {str(path)!r}, {str(tmp_path / 'x.npy')!r}]); print('torch' in sys.modules, file=sys.stderr)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.stderr.strip().splitlines()[-1] == "False"


def test_bench_table_and_json(exported, tmp_path, cli, monkeypatch):
    path, _ = exported
    monkeypatch.setattr(torch, "compile", lambda model, dynamic: model)  # the real torch.compile is slow to compile; tried by hand
    code, stdout, stderr = cli("bench", str(path), "--provider", "cpu", "--batch", "1,2", "--time", "0.01")
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert lines[0].startswith("tiny (input 3x8x8, fp32) on cpu: onnxruntime ")
    assert lines[1].split() == ["batch", "engine", "p50", "ms", "p90", "ms", "p99", "ms", "samples/s", "vs", "eager"]
    assert [line.split()[:2] for line in lines[2:]] == [[b, e] for b in "12" for e in ("onnxruntime", "torch", "torch.compile")]
    code, stdout, _ = cli("bench", str(path), "--provider", "cpu", "--batch", "3", "--time", "0.01", "--json", "--no-compile")
    report = json.loads(stdout)
    assert report["device"] == "cpu" and report["provider"] == "CPUExecutionProvider"
    rows = {r["engine"]: r for r in report["rows"]}
    assert rows["torch eager"]["speedup_vs_eager"] == 1.0 and rows["onnxruntime"]["p50_ms"] > 0
    assert rows["torch.compile"]["error"] == "skipped (--no-compile)"


def test_bench_a_spec_exports_it_first(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY)
    report = bench(tmp_path / "tiny.yaml", netdsl.load(tmp_path / "tiny.yaml"), provider="cpu", batches=(2,), compile=False, min_time=0.01)
    assert [r.engine for r in report.rows] == ["onnxruntime", "torch eager", "torch.compile"]
    assert report.rows[0].samples_per_s and report.rows[0].samples_per_s > 0


def test_bench_reports_an_engine_that_fails(exported, monkeypatch):
    path, _ = exported

    def broken(model, dynamic):
        def run(x):
            raise RuntimeError("no compiler\nmore")

        return run

    monkeypatch.setattr(torch, "compile", broken)
    report = bench(path, provider="cpu", batches=(1,), min_time=0.01)
    assert report.rows[2].error == "RuntimeError: no compiler"


def test_bench_bad_batches(exported, cli):
    path, _ = exported
    code, _, stderr = cli("bench", str(path), "--batch", "1,x")
    assert (code, stderr) == (2, "--batch: --batch takes sizes >= 1 separated by commas, e.g. 1,8,32; got '1,x'\n")
