"""`summarize --columns`: chosen columns in order, input shapes, "connected to" for merges and rolled-up groups."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT, SPECS

MERGE = (
    "netdsl: 1\nname: m\ninput: 3x8x8\nlayers:\n"
    "  - conv: {name: stem, out: 4, k: 3, p: 1}\n"
    "  - group:\n      name: branch\n      layers: [conv: {name: c1, out: 4, k: 3, p: 1}, relu: {name: r1}]\n"
    "  - conv: {name: side, from: stem, out: 2, k: 1}\n"
    "  - concat: {name: cat, from: [branch, side]}\n"
    "  - add: {name: sum, from: [cat, cat]}\n"
)


def table(out: str) -> list[list[str]]:
    """The heading and the body rows of a summary table, cells split on runs of two or more spaces (empty cells vanish)."""
    lines = out.splitlines()
    rules = [i for i, line in enumerate(lines) if line.startswith("---")]
    return [re.split(r"\s{2,}", line.strip()) for line in [lines[1], *lines[rules[0] + 1 : rules[1]]]]


def test_default_columns_are_todays_table(cli):
    _, default, _ = cli("summarize", str(SPECS / "resnet18.yaml"), "--depth", "2")
    _, chosen, _ = cli("summarize", str(SPECS / "resnet18.yaml"), "--depth", "2", "--columns", "output,params,macs")
    assert chosen == default


def test_chosen_columns_in_order_with_merges_connected(cli, spec_file):
    code, out, err = cli("summarize", str(spec_file(MERGE)), "--columns", "connected,input,output,trainable", "--depth", "0")
    assert code == 0, err
    rows = {r[0].strip(): r for r in table(out)}
    assert rows["Layer"] == ["Layer", "Type", "Connected to", "Input shape", "Output shape", "Trainable"]
    assert rows["cat"] == ["cat", "concat", "branch.r1, side", "4x8x8, 2x8x8", "6x8x8", "0"]
    assert rows["sum"] == ["sum", "add", "cat, cat", "6x8x8, 6x8x8", "6x8x8", "0"]
    assert rows["side"] == ["side", "conv2d", "stem", "4x8x8", "2x8x8", f"{2 * 4 + 2:,}"]
    assert rows["stem"][2:4] == ["input", "3x8x8"]
    total = next(line for line in out.splitlines() if line.startswith("Total"))
    assert total.split()[-2:] == ["6x8x8", f"{(4 * 27 + 4) + (4 * 36 + 4) + 10:,}"]  # trainable sums to the footer


def test_rolled_up_group_shows_what_it_reads_from_outside(cli, spec_file):
    code, out, _ = cli("summarize", str(spec_file(MERGE)), "--columns", "input,connected", "--depth", "1")
    assert code == 0
    rows = {r[0].strip(): r for r in table(out)}
    assert rows["branch"] == ["branch", "group", "4x8x8", "stem"]
    assert rows["cat"][-1] == "branch, side"  # branch.r1 is shown as the group it is rolled up into


def test_resnet_block_at_depth_two_reads_the_previous_block(cli):
    code, out, _ = cli("summarize", str(SPECS / "resnet18.yaml"), "--depth", "2", "--columns", "input,connected")
    assert code == 0
    rows = {r[0].strip(): r for r in table(out)}
    assert rows["layer2.0"][2:] == ["64x56x56", "layer1.1"]
    assert rows["fc"][2:] == ["512", "avgpool"]


def test_json_carries_every_field_whatever_the_columns(cli, spec_file):
    path = str(spec_file(MERGE))
    _, plain, _ = cli("summarize", path, "--json", "--depth", "0")
    _, chosen, _ = cli("summarize", path, "--json", "--depth", "0", "--columns", "params")
    assert plain == chosen
    layers = {layer["name"]: layer for layer in json.loads(plain)["layers"]}
    assert layers["cat"]["connected"] == ["branch.r1", "side"]
    assert layers["cat"]["input_shapes"] == [[4, 8, 8], [2, 8, 8]]
    assert set(layers["cat"]) >= {"name", "type", "input_shapes", "output_shape", "connected", "params", "trainable", "buffers", "macs"}


def test_a_second_output_is_connected_by_its_port(cli, spec_file):
    spec = "netdsl: 1\nname: u\ninput: 4x8x8\nlayers:\n  - maxpool: {name: pool, k: 2, indices: true}\n  - max_unpool: {name: up, indices: pool, k: 2}\n"
    code, out, err = cli("summarize", str(spec_file(spec)), "--json")
    assert code == 0, err
    up = next(layer for layer in json.loads(out)["layers"] if layer["name"] == "up")
    assert up["connected"] == ["pool", "pool[1]", "input"]  # values, the pool's indices, the size to restore


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        (
            "output,parms",
            "--columns: unknown column 'parms'; did you mean 'params'? (columns: input, output, params, trainable, buffers, macs, connected, source)",
        ),
        (
            "output,,macs",
            "--columns: an empty column name in 'output,,macs'; give names separated by commas, from: input, output, params, trainable, buffers, macs, connected, source",
        ),
        ("macs,params,macs", "--columns: column 'macs' is given twice"),
    ],
)
def test_bad_columns_are_one_line(cli, columns, message):
    code, out, err = cli("summarize", str(SPECS / "lenet5.yaml"), "--columns", columns)
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [message]


def test_columns_and_training_memory_never_import_torch():
    code = (
        "import sys; from netdsl.cli.main import main; "
        "main(['summarize', 'specs/densenet121.yaml', '--columns', 'input,connected', '--batch', '8', '--train']); "
        "print([m for m in ('torch', 'onnx', 'onnxruntime', 'numpy') if m in sys.modules], file=sys.stderr)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "Training memory for a batch of 8" in proc.stdout
    assert proc.stderr.strip() == "[]"
