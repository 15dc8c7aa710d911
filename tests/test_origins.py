"""Origins of composed specs (`extends:`): expand's comments, diff's settings and locations, summarize's source column."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import netdsl
from netdsl.analysis.counts import analyze
from netdsl.analysis.expand import expand_text, spec_origins
from netdsl.analysis.summary import parse_columns
from netdsl.errors import SpecError
from netdsl.lang.formats import parse_tree
from tests.conftest import SPECS
from tests.test_extends import BASE  # the exact lines below follow its line numbers

MID = "extends: base.yaml\nname: mid\nparams: {classes: 7}\nlayers: {replace: {hidden: {linear: 32}}}\n"
TOP = "extends: mid.yaml\ninput: 1x16x16\nparams: {act: tanh}\ntrain: {extends: recipe.yaml, batch_size: 32}\n"
RECIPE = "optimizer: {name: adam, lr: 0.001}\nschedule: {name: none}\n"


@pytest.fixture
def chain(tmp_path, monkeypatch) -> Path:
    """top.yaml -> mid.yaml -> base.yaml, and a recipe, in tmp_path as the current folder."""
    monkeypatch.chdir(tmp_path)
    for name, text in (("base.yaml", BASE), ("mid.yaml", MID), ("top.yaml", TOP), ("recipe.yaml", RECIPE)):
        (tmp_path / name).write_text(text)
    return tmp_path


# ---- expand --------------------------------------------------------------------------------------------------------------


def test_expand_of_a_three_level_chain_names_where_each_key_and_layer_came_from(cli, chain):
    code, out, err = cli("expand", "top.yaml")
    assert code == 0, err
    assert out.splitlines() == [
        "# top.yaml expanded by netdsl: every block and repeat unrolled, every default filled in",
        "# 65,879 params (65,879 trainable), 0 buffer elements, 84,192 MACs per sample",
        "# composed from top.yaml -> mid.yaml -> base.yaml (each extends the next), with recipe.yaml",
        "# params.classes: from mid.yaml:3, over base.yaml:4",
        "# params.act: top.yaml:3, over base.yaml:4",
        "# train.data: from base.yaml:12",
        "# train.optimizer: from recipe.yaml:1, over base.yaml:13",
        "# train.batch_size: top.yaml:4, over base.yaml:14",
        "# train.epochs: from base.yaml:15",
        "# train.schedule: from recipe.yaml:2",
        "netdsl: 1",
        "name: mid  # from mid.yaml:2, over base.yaml:2",
        "input: 1x16x16  # top.yaml:2, over base.yaml:3",
        "layers:  # from mid.yaml:4, over base.yaml:6",
        "  - conv2d: {name: conv, out: 8, kernel: 3, stride: 1, padding: 1, dilation: 1, groups: 1, bias: true}  # 8x16x16, 80 params; from base.yaml:6",
        "  - tanh: {name: act1}  # 8x16x16; from base.yaml:7",
        "  - flatten: {name: flat, start: 0, end: -1}  # 2048; from base.yaml:8",
        "  - linear: {name: hidden, out: 32, bias: true}  # 32, 65,568 params; from mid.yaml:4, over base.yaml:9",
        "  - linear: {name: head, out: 7, bias: true}  # 7, 231 params; from base.yaml:10",
    ]
    (chain / "again.yaml").write_text(out)
    assert [(n.name, n.layer, n.shape) for n in netdsl.load("again.yaml")] == [(n.name, n.layer, n.shape) for n in netdsl.load("top.yaml")]


def test_a_value_the_given_file_writes_anew_has_no_comment_and_input_from_the_command_line_none(cli, chain):
    (chain / "child.yaml").write_text("extends: base.yaml\nlayers: {insert: {after: head, layers: [relu: {name: out}]}}\n")
    _, out, _ = cli("expand", "child.yaml", "--input", "1x8x8")
    lines = out.splitlines()
    assert "input: 1x8x8" in lines and lines[-1] == "  - relu: {name: out}  # 4"
    assert "layers:  # child.yaml:2, over base.yaml:6" in lines


def test_expand_shows_files_relative_to_the_current_folder_when_shorter(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lib").mkdir()
    (tmp_path / "exp").mkdir()
    (tmp_path / "lib" / "base.yaml").write_text("netdsl: 1\nname: b\ninput: 4\nlayers: [linear: {name: fc, out: 2}]\n")
    (tmp_path / "exp" / "child.yaml").write_text("extends: ../lib/base.yaml\nname: c\n")
    _, out, _ = cli("expand", str(tmp_path / "exp" / "child.yaml"))  # given as an absolute path
    assert out.splitlines()[2:6] == [
        "# composed from exp/child.yaml -> lib/base.yaml (each extends the next)",
        "netdsl: 1",
        "name: c  # exp/child.yaml:2, over lib/base.yaml:2",
        "input: 4  # from lib/base.yaml:3",
    ]


def test_a_spec_from_one_file_expands_as_before_without_origins(cli):
    path = SPECS / "resnet18.yaml"
    code, out, _ = cli("expand", str(path))
    graph = netdsl.load(path)
    assert code == 0 and out == expand_text(graph, analyze(graph, 1), str(path))
    assert not any(" from " in line or "over " in line or "composed" in line for line in out.splitlines())
    raw = parse_tree(path.read_text(), str(path))
    assert spec_origins(raw, raw, str(path), []) is None


# ---- diff ----------------------------------------------------------------------------------------------------------------


def test_diff_shows_the_layers_params_and_train_settings_the_child_changed_and_where(cli, chain):
    code, out, _ = cli("diff", "base.yaml", "top.yaml")
    assert code == 1
    assert out.splitlines() == [
        "--- base.yaml",
        "+++ top.yaml",
        "~ conv: output 8x12x12 -> 8x16x16  # base.yaml:6",
        "~ act1: type relu -> tanh; output 8x12x12 -> 8x16x16  # base.yaml:7",
        "~ flat: output 1152 -> 2048  # base.yaml:8",
        "~ hidden: out 16 -> 32; output 16 -> 32; params 18,448 -> 65,568 [+47,120 params]  # mid.yaml:4",
        "~ head: out 4 -> 7; output 4 -> 7; params 68 -> 231 [+163 params]  # base.yaml:10",
        "~ input: 1x12x12 -> 1x16x16  # top.yaml:2",
        "~ params.classes: 4 -> 7  # mid.yaml:3",
        "~ params.act: relu -> tanh  # top.yaml:3",
        "~ train.optimizer.name: sgd -> adam  # recipe.yaml:1",
        "~ train.optimizer.lr: 0.05 -> 0.001  # recipe.yaml:1",
        "~ train.batch_size: 16 -> 32  # top.yaml:4",
        "params: 18,596 -> 65,879 (+47,283)",
        "MACs:   28,864 -> 84,192 (+55,328)",
        "layers: 0 added, 0 removed, 5 changed",
    ]


def test_diff_of_a_train_setting_alone_exits_1_and_a_deleted_one_is_the_default(cli, chain):
    (chain / "child.yaml").write_text("extends: base.yaml\ntrain: {epochs: 3, batch_size: _delete_}\nlayers: {remove: [act1]}\n")
    code, out, _ = cli("diff", "base.yaml", "child.yaml")
    assert code == 1
    assert out.splitlines()[2:6] == [
        "- act1: relu() -> 8x12x12, 0 params  # child.yaml:3",
        "~ flat: from act1 -> conv  # base.yaml:8",
        "~ train.epochs: 1 -> 3  # child.yaml:2",
        "~ train.batch_size: 16 -> 64  # default",
    ]


def test_data_paths_compare_by_the_folder_they_name(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lib").mkdir()
    (tmp_path / "exp").mkdir()
    base = "netdsl: 1\nname: b\ninput: 4\nlayers: [linear: 2]\ntrain: {data: {source: image_folder, path: imgs}}\n"
    (tmp_path / "lib" / "base.yaml").write_text(base)
    (tmp_path / "exp" / "same.yaml").write_text("extends: ../lib/base.yaml\n")
    (tmp_path / "exp" / "other.yaml").write_text("extends: ../lib/base.yaml\ntrain: {data: {path: imgs}}\n")
    code, out, _ = cli("diff", "lib/base.yaml", "exp/same.yaml")
    assert code == 0 and "no differences" in out.splitlines()
    code, out, _ = cli("diff", "lib/base.yaml", "exp/other.yaml")
    assert code == 1 and '~ train.data.path: "lib/imgs" -> "exp/imgs"  # exp/other.yaml:2' in out.splitlines()


def test_a_diff_of_specs_from_one_file_each_names_no_files(cli, spec_file):
    text = (SPECS / "lenet5.yaml").read_text()
    assert "epochs: 15" in text
    changed = spec_file(text.replace("epochs: 15", "epochs: 3").replace("f5, out: 120", "f5, out: 100"), "lenet_b.yaml")
    code, out, _ = cli("diff", str(SPECS / "lenet5.yaml"), str(changed))
    assert code == 1
    assert [line for line in out.splitlines() if line.startswith("~ train") or line.startswith("~ f5")] == [
        "~ f5: out 120 -> 100; output 120 -> 100; params 48,120 -> 40,100 [-8,020 params]",
        "~ train.epochs: 15 -> 3",
    ]
    assert not any("#" in line for line in out.splitlines())


# ---- summarize -----------------------------------------------------------------------------------------------------------


def test_the_source_column_gives_each_rows_file_and_line(cli, chain):
    code, out, _ = cli("summarize", "top.yaml", "--columns", "output,source", "--depth", "0")
    assert code == 0
    assert out.splitlines()[1:10] == [
        "Layer   Type     Output shape  Source",
        "------  -------  ------------  ------------",
        "conv    conv2d   8x16x16       base.yaml:6",
        "act1    tanh     8x16x16       base.yaml:7",
        "flat    flatten  2048          base.yaml:8",
        "hidden  linear   32            mid.yaml:4",
        "head    linear   7             base.yaml:10",
        "------  -------  ------------  ------------",
        "Total            7",
    ]
    _, default, _ = cli("summarize", "top.yaml")
    assert default.splitlines()[1].split() == ["Layer", "Type", "Output", "shape", "Params", "MACs"]  # no source unless asked


def test_every_json_row_has_its_source_and_a_rolled_up_group_its_own(cli, chain):
    _, raw, _ = cli("summarize", "top.yaml", "--json")
    assert [(row["name"], row["source"]) for row in json.loads(raw)["layers"]] == [
        ("conv", "base.yaml:6"),
        ("act1", "base.yaml:7"),
        ("flat", "base.yaml:8"),
        ("hidden", "mid.yaml:4"),
        ("head", "base.yaml:10"),
    ]
    _, raw, _ = cli("summarize", str(SPECS / "resnet18.yaml"), "--json", "--depth", "1")
    sources = {row["name"]: row["source"] for row in json.loads(raw)["layers"]}
    assert sources["layer2"].endswith("specs/resnet18.yaml:15") and sources["fc"].endswith("specs/resnet18.yaml:19")


def test_source_is_a_column_to_choose():
    assert parse_columns("output,source") == ("output", "source")
    with pytest.raises(SpecError) as info:
        parse_columns("output,sorce")
    assert str(info.value) == (
        "--columns: unknown column 'sorce'; did you mean 'source'? (columns: input, output, params, trainable, buffers, macs, connected, source)"
    )
