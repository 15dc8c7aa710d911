"""`netdsl summarize`: golden tables and JSON (a formatting change is a visible diff), and columns that sum to the footer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import netdsl
from netdsl.analysis.counts import analyze
from tests.conftest import ROOT, SPECS

GOLDEN = Path(__file__).resolve().parent / "golden"
CASES = [
    ("lenet5.txt", ["specs/lenet5.yaml"]),
    ("lenet5.json", ["specs/lenet5.yaml", "--json"]),
    ("vgg16_bn_depth1.txt", ["specs/vgg16_bn.yaml", "--depth", "1"]),
    ("resnet18_depth2.txt", ["specs/resnet18.yaml", "--depth", "2"]),
    ("resnet18_depth2.json", ["specs/resnet18.yaml", "--depth", "2", "--json"]),
]


@pytest.mark.parametrize(("golden", "args"), CASES, ids=[c[0] for c in CASES])
def test_golden_output(cli, monkeypatch, golden, args):
    monkeypatch.chdir(ROOT)
    code, out, err = cli("summarize", *args)
    assert code == 0, err
    path = GOLDEN / golden
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(out)
    assert out == path.read_text()


@pytest.mark.parametrize("name", ["lenet5", "vgg16_bn", "resnet18", "resnet50"])
@pytest.mark.parametrize("depth", [1, 2, 3, None])
def test_rows_sum_to_totals(name, depth):
    report = analyze(netdsl.load(SPECS / f"{name}.yaml"), depth)
    rows = [r for r in report.rows if not r.is_header]
    assert sum(r.params for r in rows) == report.params
    assert sum(r.trainable for r in rows) == report.trainable
    assert sum(r.buffers for r in rows) == report.buffers
    assert sum(r.macs for r in rows) == report.macs
    if depth is not None:
        assert max(r.depth for r in report.rows) <= depth


def test_table_total_row_matches_json(cli):
    _, table, _ = cli("summarize", str(SPECS / "resnet50.yaml"), "--depth", "1")
    _, raw, _ = cli("summarize", str(SPECS / "resnet50.yaml"), "--depth", "1", "--json")
    data = json.loads(raw)
    total_line = next(line for line in table.splitlines() if line.startswith("Total"))
    assert f"{data['params']['total']:,}" in total_line and f"{data['macs']:,}" in total_line
    assert data["params"]["total"] == 25_557_032  # torchvision resnet50


def test_json_has_the_documented_keys(cli):
    _, raw, _ = cli("summarize", str(SPECS / "lenet5.yaml"), "--json")
    data = json.loads(raw)
    assert list(data) == ["name", "input_shape", "output_shape", "outputs", "params", "buffers", "macs", "memory", "accepted_input", "layers"]
    assert data["outputs"] == [{"name": "output", "layer": "output", "shape": [10]}]
    assert list(data["params"]) == ["total", "trainable", "frozen"]
    assert set(data["layers"][0]) >= {"name", "type", "output_shape", "params", "macs"}


def test_memory_estimate():
    report = analyze(netdsl.load(SPECS / "lenet5.yaml"))
    m = report.memory
    assert m.param_bytes == 4 * 61_706
    assert m.input_bytes == 4 * 32 * 32
    # outputs: 6x28x28 twice (conv, tanh), 6x14x14, 16x10x10 twice, 16x5x5, 400, 120 twice, 84 twice, 10
    assert m.activation_bytes == 4 * (2 * 4704 + 1176 + 2 * 1600 + 400 + 400 + 240 + 168 + 10)
    assert m.total_bytes == m.param_bytes + m.input_bytes + m.activation_bytes


def test_frozen_layers_are_counted_apart(spec_file, cli):
    path = spec_file(
        "netdsl: 1\nname: t\ninput: 3x8x8\nlayers:\n  - group: {name: backbone, frozen: true, layers: [conv: 4, relu]}\n  - flatten\n  - linear: 2\n"
    )
    _, raw, _ = cli("summarize", str(path), "--json")
    data = json.loads(raw)
    conv = 4 * 3 * 9 + 4
    assert data["params"] == {"total": conv + 4 * 36 * 2 + 2, "trainable": 4 * 36 * 2 + 2, "frozen": conv}


def test_front_end_never_imports_torch():
    code = "import sys; from netdsl.cli.main import main; main(['summarize', 'specs/resnet50.yaml', '--json']); heavy = [m for m in ('torch', 'onnx', 'onnxruntime') if m in sys.modules]; print(heavy, file=sys.stderr)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "[]"
