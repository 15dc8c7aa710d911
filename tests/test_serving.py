"""netdsl infer by task: the task recorded at export, what each task prints and writes, --json, and outputs it refuses."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image

import netdsl
from netdsl.backends.pytorch import build_module
from netdsl.cli.main import main
from netdsl.deploy.onnx import export
from netdsl.runtime.model_info import ModelInfo
from tests.conftest import ROOT
from tests.onnx_registry import shared_onnx_registry  # noqa: F401 (an autouse fixture)

torch.set_num_threads(2)

NET = "netdsl: 1\nname: {name}\ninput: {input}\nlayers:\n{layers}"
SPECS = {
    "seg": NET.format(name="seg", input="3x16x16", layers="  - conv: {name: head, out: 4, k: 1}\n")
    + "train:\n  task: segmentation\n  data: {source: synthetic, classes: [sky, road, car, tree], normalize: {mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}}\n",
    # no train section: the output has the input's shape, so the exporter infers reconstruction as the trainer would
    "recon": NET.format(name="recon", input="1x8x8", layers="  - conv: {out: 1, k: 3, p: 1}\n  - sigmoid\n"),
    "reg": NET.format(name="reg", input="3x8x8", layers="  - gap\n  - linear: {out: 2}\n") + "train: {task: regression}\n",
    "multi": NET.format(name="multi", input="3x8x8", layers="  - gap\n  - linear: {out: 3}\n")
    + "train:\n  task: {name: multilabel, threshold: 0.5}\n  data: {source: synthetic, classes: [red, green, blue]}\n",
    # 2x4x4 for 3x8x8: no task fits this output, so none is recorded
    "notask": NET.format(name="notask", input="3x8x8", layers="  - conv: {out: 2, k: 3, s: 2, p: 1}\n"),
    "dense_cls": NET.format(name="dense_cls", input="3x8x8", layers="  - conv: {out: 2, k: 3, s: 2, p: 1}\n") + "train: {task: classification}\n",
}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Each spec exported by `netdsl export` (random weights); the printed lines under 'NAME.stdout'."""
    folder = tmp_path_factory.mktemp("models")
    paths: dict[str, Path] = {}
    for name, text in SPECS.items():
        (folder / f"{name}.yaml").write_text(text)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert main(["export", str(folder / f"{name}.yaml"), "-o", str(folder / f"{name}.onnx")]) == 0
        paths[name] = folder / f"{name}.onnx"
        (folder / f"{name}.stdout").write_text(printed.getvalue())
    return paths


def raw_outputs(path: Path, x: np.ndarray, mean: float = 0.0, std: float = 1.0) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input": ((x - mean) / std).astype(np.float32)})[0]


def recorded_task(path: Path) -> tuple[str, dict | None]:
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    info = ModelInfo.from_metadata(props)
    assert info is not None
    return props["task"], info.task


def test_export_records_the_settled_or_inferred_task(models):
    assert recorded_task(models["seg"]) == ('{"name": "segmentation", "ignore_index": 255}', {"name": "segmentation", "ignore_index": 255})
    assert recorded_task(models["recon"]) == ('{"name": "reconstruction"}', {"name": "reconstruction"})
    assert recorded_task(models["reg"])[1] == {"name": "regression"}
    assert recorded_task(models["multi"])[1] == {"name": "multilabel", "threshold": 0.5}
    assert recorded_task(models["notask"]) == ("null", None)  # the trainer could not tell either: nothing recorded, the export still works
    assert recorded_task(models["dense_cls"])[1] == {"name": "classification"}
    wrote = (models["seg"].parent / "seg.stdout").read_text().splitlines()[-2]
    assert wrote.startswith(f"wrote {models['seg']}: seg, input 3x16x16, ") and wrote.endswith("; task: segmentation")
    assert "; task:" not in (models["notask"].parent / "notask.stdout").read_text().splitlines()[-2]


def test_a_flat_classifier_without_train_settings_records_classification(tmp_path):
    graph = netdsl.load_text(NET.format(name="flat", input="3x8x8", layers="  - gap\n  - linear: {out: 3}\n"))
    assert export(graph, tmp_path / "flat.onnx", verify=False).info.task == {"name": "classification"}


def test_segmentation_prints_pixel_fractions_and_writes_palette_masks(models, tmp_path, cli):
    x = np.random.default_rng(0).random((2, 3, 16, 16), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "masks"
    code, stdout, stderr = cli("infer", str(models["seg"]), str(tmp_path / "x.npy"), "--provider", "cpu", "--out", str(out))
    assert code == 0, stderr
    masks = raw_outputs(models["seg"], x, 0.5, 0.25).argmax(1)
    names = ["sky", "road", "car", "tree"]
    lines = stdout.splitlines()
    assert lines[0] == "provider: cpu (CPUExecutionProvider)"
    for i, (mask, line) in enumerate(zip(masks, lines[1:])):
        shares = sorted(((round(float(np.mean(mask == c)), 4), names[c]) for c in range(4) if (mask == c).any()), key=lambda s: -s[0])
        text = ", ".join(f"{name} {share:.1%}" for share, name in shares)
        assert line == f"{tmp_path / 'x.npy'}[{i}]: {text} -> {out / f'x_{i}.png'}"
        with Image.open(out / f"x_{i}.png") as png:
            assert png.mode == "P" and png.size == (16, 16)
            np.testing.assert_array_equal(np.asarray(png), mask)  # the pixel values are the class indices
            assert png.getpalette()[:9] == [0, 0, 0, 128, 0, 0, 0, 128, 0]  # PASCAL VOC colours: background black, 1 dark red, 2 green


def test_segmentation_json_and_the_default_folder_beside_the_model(models, tmp_path, cli):
    Image.fromarray((np.random.default_rng(1).random((20, 20, 3)) * 255).astype(np.uint8)).save(tmp_path / "photo.jpg")
    code, stdout, stderr = cli("infer", str(models["seg"]), str(tmp_path / "photo.jpg"), "--json")
    assert code == 0, stderr
    (result,) = json.loads(stdout)  # stdout is the JSON list alone: no provider line
    default = models["seg"].parent / "predictions" / "photo.png"
    assert list(result) == ["input", "pixels", "output_png"]
    assert result["input"] == str(tmp_path / "photo.jpg") and result["output_png"] == str(default)
    assert set(result["pixels"]) <= {"sky", "road", "car", "tree"} and sum(result["pixels"].values()) == pytest.approx(1, abs=1e-3)
    assert list(result["pixels"].values()) == sorted(result["pixels"].values(), reverse=True)
    with Image.open(default) as png:
        assert png.mode == "P" and png.size == (16, 16)  # the model's input size, not the photo's


def test_reconstruction_writes_the_output_image(models, tmp_path, cli):
    x = np.random.default_rng(2).random((1, 8, 8), dtype=np.float32)
    np.save(tmp_path / "digit.npy", x)
    code, stdout, stderr = cli("infer", str(models["recon"]), str(tmp_path / "digit.npy"), "--out", str(tmp_path / "out"), "--json")
    assert code == 0, stderr
    want = raw_outputs(models["recon"], x[None])[0]
    (result,) = json.loads(stdout)
    assert result["input"] == str(tmp_path / "digit.npy") and result["shape"] == [1, 8, 8]
    assert result["mean"] == pytest.approx(float(want.mean()), abs=1e-5) and result["output_png"] == str(tmp_path / "out" / "digit.png")
    with Image.open(tmp_path / "out" / "digit.png") as png:
        assert png.mode == "L" and png.size == (8, 8)
        np.testing.assert_allclose(np.asarray(png), want[0] * 255, atol=1)
    code, stdout, _ = cli("infer", str(models["recon"]), str(tmp_path / "digit.npy"), "--out", str(tmp_path / "out"), "--provider", "cpu")
    assert stdout.splitlines()[1] == f"{tmp_path / 'digit.npy'}: 1x8x8 output, mean {result['mean']:.4f} -> {tmp_path / 'out' / 'digit.png'}"


def test_regression_prints_the_values(models, tmp_path, cli):
    x = np.random.default_rng(3).random((3, 3, 8, 8), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    code, stdout, stderr = cli("infer", str(models["reg"]), str(tmp_path / "x.npy"), "--provider", "cpu")
    assert code == 0, stderr
    want = raw_outputs(models["reg"], x)
    assert stdout.splitlines()[1:] == [f"{tmp_path / 'x.npy'}[{i}]: " + ", ".join(f"{round(float(v), 6):.4g}" for v in row) for i, row in enumerate(want)]
    results = json.loads(cli("infer", str(models["reg"]), str(tmp_path / "x.npy"), "--json")[1])
    assert [list(r) for r in results] == [["input", "values"]] * 3
    np.testing.assert_allclose([r["values"] for r in results], want, atol=1e-6)
    assert not (models["reg"].parent / "predictions" / "x_0.png").exists()  # values only, no files


def test_multilabel_prints_the_classes_that_are_on(models, tmp_path, cli):
    x = np.random.default_rng(4).random((4, 3, 8, 8), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    code, stdout, stderr = cli("infer", str(models["multi"]), str(tmp_path / "x.npy"), "--provider", "cpu")
    assert code == 0, stderr
    p = 1 / (1 + np.exp(-raw_outputs(models["multi"], x).astype(np.float64)))
    names = ["red", "green", "blue"]
    lines = stdout.splitlines()[1:]
    for i, (row, line) in enumerate(zip(p, lines)):
        on = ", ".join(f"{names[c]} ({round(float(row[c]), 4):.1%})" for c in range(3) if row[c] >= 0.5) or "(no class)"
        assert line == f"{tmp_path / 'x.npy'}[{i}]: {on}"
    results = json.loads(cli("infer", str(models["multi"]), str(tmp_path / "x.npy"), "--json")[1])
    assert [r["on"] for r in results] == [[names[c] for c in range(3) if row[c] >= 0.5] for row in p]
    assert list(results[0]["p"]) == names


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            "notask",
            "the model outputs 2x4x4 per input, but the model records no task, so it is read as a classifier, which needs one score per class "
            "(an output of N x classes); set train.task in its spec and export it again",
        ),
        ("dense_cls", "the model outputs 2x4x4 per input, but the model's task, classification, needs one score per class (an output of N x classes)"),
    ],
)
def test_an_output_the_task_cannot_read_is_refused(models, tmp_path, cli, model, message):
    np.save(tmp_path / "x.npy", np.zeros((3, 8, 8), np.float32))
    code, stdout, stderr = cli("infer", str(models[model]), str(tmp_path / "x.npy"))
    assert (code, stdout, stderr) == (2, "", f"{models[model]}:1:1: {message}\n")  # never 32 'classes' of a 2x4x4 map


def test_a_foreign_model_with_a_dense_output_is_refused(tmp_path, cli):
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["pixels"], ["map"])],
        "same",
        [onnx.helper.make_tensor_value_info("pixels", onnx.TensorProto.FLOAT, ["n", 1, 2, 2])],
        [onnx.helper.make_tensor_value_info("map", onnx.TensorProto.FLOAT, ["n", 1, 2, 2])],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)])
    model.ir_version = 10  # onnx.helper's default is newer than onnxruntime 1.31 reads
    onnx.save(model, str(tmp_path / "same.onnx"))
    np.save(tmp_path / "x.npy", np.zeros((1, 2, 2), np.float32))
    code, _, stderr = cli("infer", str(tmp_path / "same.onnx"), str(tmp_path / "x.npy"))
    assert (code, stderr) == (
        2,
        f"{tmp_path / 'same.onnx'}:1:1: the model outputs 1x2x2 per input, but a model without netdsl metadata is read as a classifier, "
        "which needs one score per class (an output of N x classes)\n",
    )


def test_non_finite_inputs_and_outputs_are_refused_by_name(models, tmp_path, cli):
    x = np.random.default_rng(5).random((3, 3, 16, 16), dtype=np.float32)
    x[1, 0, 0, :5] = np.nan
    np.save(tmp_path / "x.npy", x)
    code, stdout, stderr = cli("infer", str(models["seg"]), str(tmp_path / "x.npy"), "--out", str(tmp_path / "out"))
    assert (code, stdout) == (2, "")
    assert stderr == f"{tmp_path / 'x.npy'}[1]:1:1: the input holds NaN or infinite values (5 of its 768 values); give finite values in [0, 1]\n"
    assert not (tmp_path / "out").exists()

    graph = netdsl.load_text(SPECS["seg"])
    state = build_module(graph).state_dict()
    state = {k: torch.full_like(v, float("inf")) if k.endswith("bias") else v for k, v in state.items()}
    torch.save(state, tmp_path / "inf.pt")
    export(graph, tmp_path / "inf.onnx", weights=tmp_path / "inf.pt", verify=False)
    np.save(tmp_path / "one.npy", x[0])
    code, _, stderr = cli("infer", str(tmp_path / "inf.onnx"), str(tmp_path / "one.npy"), "--out", str(tmp_path / "out"))
    assert (code, stderr) == (
        2,
        f"{tmp_path / 'one.npy'}:1:1: the model's output for this input is not finite (1024 of its 1024 values are NaN or infinite); nothing was written\n",
    )
    assert not (tmp_path / "out").exists()


def test_unknown_or_malformed_task_in_the_metadata(models, tmp_path, cli):
    np.save(tmp_path / "x.npy", np.zeros((3, 16, 16), np.float32))
    for value, message in [
        (
            '{"name": "detection"}',
            "the model records the task 'detection', which this netdsl does not serve (it serves classification, multilabel, reconstruction, "
            f"regression, segmentation); it was exported by netdsl {netdsl.__version__}",
        ),
        ('["segmentation"]', "the metadata's task is not a task name with options: ['segmentation']"),
    ]:
        model = onnx.load(str(models["seg"]))
        next(p for p in model.metadata_props if p.key == "task").value = value
        onnx.save(model, str(tmp_path / "odd.onnx"))
        code, _, stderr = cli("infer", str(tmp_path / "odd.onnx"), str(tmp_path / "x.npy"))
        assert (code, stderr) == (2, f"{tmp_path / 'odd.onnx'}:1:1: {message}\n")


def test_bad_output_folders(models, tmp_path, cli):
    Image.new("L", (8, 8)).save(tmp_path / "a.png")
    code, _, stderr = cli("infer", str(models["recon"]), str(tmp_path / "a.png"), "--out", str(tmp_path))
    assert (code, stderr) == (2, f"--out: writing a.png into '{tmp_path}' would replace the input {tmp_path / 'a.png'}; choose another --out\n")
    (tmp_path / "file").write_text("")
    code, _, stderr = cli("infer", str(models["recon"]), str(tmp_path / "a.png"), "--out", str(tmp_path / "file"))
    assert (code, stderr) == (2, f"--out: '{tmp_path / 'file'}' is not a folder; give a folder for the PNGs\n")


def test_serving_needs_no_torch(models, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((3, 16, 16), np.float32))
    code = (
        "import sys; sys.modules['torch'] = None; from netdsl.cli.main import main; "
        f"sys.exit(main(['infer', {str(models['seg'])!r}, {str(tmp_path / 'x.npy')!r}, '--out', {str(tmp_path / 'out')!r}]))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1].endswith(f" -> {tmp_path / 'out' / 'x.png'}")
