"""netdsl export: the written file, its metadata, weights sources, fp16, fixed batch, opsets, the fallback, bad input."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import yaml

import netdsl
from netdsl.backends.pytorch import build_module
from netdsl.deploy import export_guard
from netdsl.deploy import onnx as onnx_backend
from netdsl.deploy.onnx import Labels, export, read_labels
from netdsl.errors import SpecError
from netdsl.runtime.model_info import ModelInfo, spec_hash
from tests.onnx_registry import shared_onnx_registry  # noqa: F401 (an autouse fixture)

torch.set_num_threads(2)

TINY = """netdsl: 1
name: tiny
input: 1x12x12
layers:
  - conv: {name: conv, out: 4, k: 3, p: 1}
  - bn: {name: bn}
  - relu
  - maxpool: 2
  - flatten
  - linear: {name: head, out: 3}
"""
TRAIN = {"data": {"source": "synthetic", "normalize": {"mean": [0.5], "std": [0.25]}, "classes": ["cat", "dog", "emu"]}, "epochs": 1}


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


@pytest.fixture
def run_dir(tmp_path):
    """A training run folder as `netdsl train` writes it: resolved.yaml (the spec with its train section) and best.pt."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "resolved.yaml").write_text(TINY + yaml.safe_dump({"train": TRAIN}))
    model = build_module(netdsl.load_text(TINY), seed=7)
    torch.save({"model": model.state_dict(), "epoch": 1}, run / "best.pt")
    return run


def metadata(path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def run_onnx(path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input": x})[0]


def test_cli_exports_verifies_and_reports(tiny, tmp_path, cli):
    out = tmp_path / "tiny.onnx"
    code, stdout, stderr = cli("export", str(tiny), "-o", str(out))
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert lines[0] == "onnx.checker (full check): ok"
    assert lines[1].startswith("onnxruntime vs PyTorch, batch 1: max abs error ") and lines[1].endswith("(tolerance 1e-04): ok")
    assert lines[2].startswith("onnxruntime vs PyTorch, batch 3: ")
    assert lines[3].startswith(f"wrote {out}: tiny, input 1x12x12, batch dynamic, opset 18, fp32, dynamo exporter, ")
    assert lines[4] == "weights: random initialization (seed 0)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.onnx", "tiny.yaml"]  # no temporary files left


def test_graph_names_dynamic_batch_and_metadata(tiny, tmp_path):
    graph = netdsl.load(tiny)
    export(graph, tmp_path / "m.onnx", labels=Labels(["cat", "dog", "emu"], {"mean": [0.5], "std": [0.25]}))
    model = onnx.load(str(tmp_path / "m.onnx"))
    assert [i.name for i in model.graph.input] == ["input"] and [o.name for o in model.graph.output] == ["logits"]
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 1, 12, 12]  # only the batch axis is dynamic
    assert model.model_version == 1 and model.producer_name == "netdsl"
    assert model.opset_import[0].version == 18
    props = metadata(tmp_path / "m.onnx")
    assert (props["name"], props["precision"], props["exporter"], props["netdsl_version"]) == ("tiny", "fp32", "dynamo", netdsl.__version__)  # plain strings
    assert json.loads(props["classes"]) == ["cat", "dog", "emu"] and json.loads(props["calibration"]) is None  # structured values as JSON
    info = ModelInfo.from_metadata(props)
    assert info is not None
    assert (info.netdsl_version, info.name, info.precision, info.exporter) == (netdsl.__version__, "tiny", "fp32", "dynamo")
    assert info.spec_sha256 == spec_hash(info.spec)
    assert info.inputs[0].name == "input" and info.inputs[0].shape == ["batch", 1, 12, 12]
    assert info.outputs[0].name == "logits" and info.outputs[0].shape == ["batch", 3]
    assert info.classes == ["cat", "dog", "emu"] and info.normalize == {"mean": [0.5], "std": [0.25]}
    again = netdsl.load_text(info.spec)  # the resolved spec stands alone
    assert [(n.name, n.layer, n.shape) for n in again.nodes] == [(n.name, n.layer, n.shape) for n in graph.nodes]


def test_metadata_written_by_earlier_netdsl_is_still_read(tiny, tmp_path):
    export(netdsl.load(tiny), tmp_path / "m.onnx", labels=Labels(["cat", "dog", "emu"]))
    props = metadata(tmp_path / "m.onnx")
    new = ModelInfo.from_metadata(props)
    old = {
        key: json.dumps(json.loads(value) if key in ("classes", "inputs", "outputs", "task", "normalize", "calibration") else value)
        for key, value in props.items()
    }
    assert old["name"] == '"tiny"'  # every value JSON-encoded, as netdsl wrote it before
    assert ModelInfo.from_metadata(old) == new
    assert ModelInfo.from_metadata({**props, "precision": "[1]"}) is not None  # a string field is taken as written
    assert ModelInfo.from_metadata({**old, "precision": "[1]"}) is None  # an old file whose string field is not a string: not netdsl's


def test_fixed_batch(tiny, tmp_path):
    result = export(netdsl.load(tiny), tmp_path / "b4.onnx", batch=4)
    assert [c.batch for c in result.comparisons] == [4]
    dims = [d.dim_value for d in onnx.load(str(tmp_path / "b4.onnx")).graph.input[0].type.tensor_type.shape.dim]
    assert dims == [4, 1, 12, 12]
    assert result.info.inputs[0].shape == [4, 1, 12, 12]


def test_fp16_keeps_float32_io_and_states_its_tolerance(tiny, tmp_path):
    result = export(netdsl.load(tiny), tmp_path / "h.onnx", fp16=True)
    assert result.info.precision == "fp16"
    assert all(c.tolerance == 1e-2 and c.ok for c in result.comparisons)
    model = onnx.load(str(tmp_path / "h.onnx"))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    floats = {i.data_type for i in model.graph.initializer} - {onnx.TensorProto.INT64}  # INT64: shapes for Reshape
    assert floats == {onnx.TensorProto.FLOAT16}


def test_higher_opset(tiny, tmp_path):
    result = export(netdsl.load(tiny), tmp_path / "o20.onnx", opset=20)
    assert result.opset == 20 and onnx.load(str(tmp_path / "o20.onnx")).opset_import[0].version == 20


@pytest.mark.parametrize("opset", ["17", "24"])
def test_opset_outside_the_exporters_range_is_refused(tiny, tmp_path, cli, opset):
    code, _, stderr = cli("export", str(tiny), "-o", str(tmp_path / "m.onnx"), "--opset", opset)
    assert code == 2
    assert stderr == f"--opset: --opset {opset} is not supported: the dynamo exporter writes opsets 18 to 23\n"


def test_bad_batch_option(tiny, tmp_path, cli):
    code, _, stderr = cli("export", str(tiny), "-o", str(tmp_path / "m.onnx"), "--batch", "many")
    assert (code, stderr) == (2, "--batch: --batch must be 'dynamic' or an integer >= 1; got 'many'\n")


def test_fallback_to_torchscript_says_so(tiny, tmp_path, monkeypatch):
    real_export = torch.onnx.export

    def dynamo_fails(*args, **kwargs):
        if kwargs.get("dynamo"):
            raise RuntimeError("simulated exporter failure\nwith detail")
        return real_export(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", dynamo_fails)
    said = []
    result = export(netdsl.load(tiny), tmp_path / "ts.onnx", log=said.append)
    assert said[0] == "the dynamo exporter failed (RuntimeError: simulated exporter failure); falling back to the TorchScript exporter"
    assert result.info.exporter == "torchscript" and all(c.ok for c in result.comparisons)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml", "ts.onnx"]


def test_large_models_use_external_data(tiny, tmp_path):
    result = export(netdsl.load(tiny), tmp_path / "big.onnx", external_data_bytes=100)  # as if over 2 GB
    assert result.external_data and all(c.ok for c in result.comparisons)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.onnx", "big.onnx.data", "tiny.yaml"]
    x = np.ones((2, 1, 12, 12), np.float32)
    assert run_onnx(tmp_path / "big.onnx", x).shape == (2, 3)


def test_verification_failure_exits_1_and_writes_nothing(tiny, tmp_path, cli, monkeypatch):
    monkeypatch.setitem(onnx_backend.TOLERANCE, "fp32", 0.0)
    out = tmp_path / "m.onnx"
    code, stdout, stderr = cli("export", str(tiny), "-o", str(out))
    assert code == 1
    assert "batch 1: max abs error" in stdout and stdout.splitlines()[1].endswith("(tolerance 0e+00): FAILED")
    assert stderr.startswith(f"{out}: verification failed: batch 1 max relative error ") and stderr.endswith(" exceeds 0e+00; nothing written\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml"]


def test_no_verify_skips_the_checks(tiny, tmp_path, monkeypatch):
    monkeypatch.setitem(onnx_backend.TOLERANCE, "fp32", 0.0)
    result = export(netdsl.load(tiny), tmp_path / "m.onnx", verify=False)
    assert result.comparisons == [] and (tmp_path / "m.onnx").exists()


def test_a_failure_mid_export_leaves_nothing_behind(tiny, tmp_path, monkeypatch):
    def checker_crashes(path):
        raise onnx.checker.ValidationError("simulated")

    monkeypatch.setattr(onnx_backend, "check", checker_crashes)
    with pytest.raises(onnx.checker.ValidationError):
        export(netdsl.load(tiny), tmp_path / "m.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml"]


def test_weights_from_a_plain_state_dict_a_checkpoint_and_safetensors(tiny, tmp_path):
    from safetensors.torch import save_file

    graph = netdsl.load(tiny)
    model = build_module(graph, seed=3).eval()
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    torch.save({"model": model.state_dict(), "epoch": 4}, tmp_path / "checkpoint.pt")
    save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    x = np.random.default_rng(0).standard_normal((2, 1, 12, 12), dtype=np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    for name in ("plain.pt", "checkpoint.pt", "w.safetensors"):
        result = export(graph, tmp_path / f"{name}.onnx", weights=tmp_path / name)
        assert result.info.weights == str(tmp_path / name)
        np.testing.assert_allclose(run_onnx(tmp_path / f"{name}.onnx", x), want, rtol=1e-4, atol=1e-5)


def test_run_dir_gives_weights_classes_and_normalization(tiny, run_dir, tmp_path, cli):
    out = tmp_path / "run.onnx"
    code, stdout, stderr = cli("export", str(tiny), "--weights", str(run_dir), "-o", str(out))
    assert code == 0, stderr
    assert stdout.splitlines()[-1] == f"weights: {run_dir / 'best.pt'}; classes: 3; normalization recorded"
    info = ModelInfo.from_metadata(metadata(out))
    assert info is not None and info.classes == ["cat", "dog", "emu"] and info.normalize == {"mean": [0.5], "std": [0.25]}
    code, stdout, stderr = cli("export", str(run_dir), "-o", str(tmp_path / "alone.onnx"))  # the run folder alone: spec and weights
    assert code == 0, stderr
    assert ModelInfo.from_metadata(metadata(tmp_path / "alone.onnx")).classes == ["cat", "dog", "emu"]


def test_labels_from_a_best_pt_inside_a_run_folder(tiny, run_dir):
    spec, weights, labels = onnx_backend.sources(tiny, run_dir / "best.pt")
    assert (spec, weights) == (tiny, run_dir / "best.pt")
    assert labels == Labels(["cat", "dog", "emu"], {"mean": [0.5], "std": [0.25]})
    assert read_labels(tiny) == Labels()


def test_weights_that_do_not_fit(tiny, tmp_path, cli):
    model = build_module(netdsl.load(tiny))
    state = dict(model.state_dict())
    del state["head.bias"]
    state["head.weight"] = torch.zeros(3, 145)
    torch.save(state, tmp_path / "bad.pt")
    code, _, stderr = cli("export", str(tiny), "--weights", str(tmp_path / "bad.pt"), "-o", str(tmp_path / "m.onnx"))
    assert code == 2
    assert stderr == (
        f"{tmp_path / 'bad.pt'}:1:1: weights do not fit the network: missing 1: head.bias; "
        f"mis-shaped 1: head.weight (expected [3, 144], got [3, 145]) (spec {tiny})\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt", "tiny.yaml"]


def test_weights_file_that_is_not_a_checkpoint(tiny, tmp_path, cli):
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    code, _, stderr = cli("export", str(tiny), "--weights", str(tmp_path / "junk.pt"), "-o", str(tmp_path / "m.onnx"))
    assert code == 2 and stderr.startswith(f"{tmp_path / 'junk.pt'}:1:1: ") and stderr.count("\n") == 1  # worded by netdsl.train.checkpoint


def test_folder_that_is_not_a_run(tiny, tmp_path, cli):
    (tmp_path / "empty").mkdir()
    code, _, stderr = cli("export", str(tiny), "--weights", str(tmp_path / "empty"), "-o", str(tmp_path / "m.onnx"))
    assert (code, stderr) == (2, f"{tmp_path / 'empty'}:1:1: not a training run folder: it has no best.pt\n")


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("missing/m.onnx", "cannot write: folder '{tmp}/missing' does not exist"),
        ("tiny.yaml/m.onnx", "cannot write: '{tmp}/tiny.yaml' is not a folder"),
        (".", "is a folder; give a file name such as model.onnx"),
    ],
)
def test_unwritable_output(tiny, tmp_path, cli, where, message):
    target = tmp_path / where
    code, _, stderr = cli("export", str(tiny), "-o", str(target))
    assert (code, stderr) == (2, f"{target}:1:1: {message.format(tmp=tmp_path)}\n")


def test_unwritable_folder_is_reported_before_exporting(tiny, tmp_path, monkeypatch):
    def no_space(**kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export_guard.tempfile, "mkdtemp", no_space)
    with pytest.raises(SpecError) as info:
        export(netdsl.load(tiny), tmp_path / "m.onnx")
    assert str(info.value) == f"{tmp_path / 'm.onnx'}:1:1: cannot write in '{tmp_path}': No space left on device"
