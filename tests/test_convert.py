"""`netdsl convert`: YAML <-> text, the same tree both ways, comments kept, stable when repeated."""

from __future__ import annotations

import os
import stat

import pytest

from netdsl.lang.convert import MODELINE, rewrite, same_tree
from netdsl.lang.fmt import format_text
from netdsl.lang.formats import parse_tree
from netdsl.lang.imports import builtin_libraries
from tests.conftest import SPECS

ZOO = sorted(p.stem for p in SPECS.glob("*.yaml"))


@pytest.mark.parametrize("name", ZOO)
def test_zoo_round_trip_gives_back_the_same_text(name):
    yaml_text = (SPECS / f"{name}.yaml").read_text()
    net = rewrite(yaml_text, f"{name}.yaml", "net")
    back = rewrite(net, f"{name}.net", "yaml")
    modeline, rest = yaml_text.split("\n", 1)
    assert modeline.startswith(MODELINE) and MODELINE not in net  # the YAML editor's line stays with the YAML file
    assert back == rest
    assert rewrite(back, f"{name}.yaml", "net") == net


@pytest.mark.parametrize("name", sorted(builtin_libraries()))
def test_block_libraries_convert_both_ways_stably(name):
    path = builtin_libraries()[name]
    text = path.read_text()
    net = rewrite(text, str(path), "net")
    back = rewrite(net, f"{name}.net", "yaml")
    assert same_tree(parse_tree(net, f"{name}.net"), parse_tree(text, str(path)))
    assert back == format_text(text, str(path)).split("\n", 1)[1]  # the YAML comes back in canonical layout, without the modeline
    assert rewrite(back, str(path), "net") == net


COMMENTED_YAML = """\
# a header comment
netdsl: 1
name: commented
input: 3x32x32
params: {c: 8}  # the width

blocks:
  pair:
    doc: two convs
    params: {c: null}
    layers:
      # the first conv
      - conv: {out: c, k: 3, p: 1}
      - conv: {out: c, k: 3, p: 1}  # the second

  single:
    layers: [relu]
layers:
  - pair: {c: c}  # a block
  # a group follows
  - group:  # the group
      name: g
      layers:
        - conv: 8

        - relu  # inside
  - linear: 10
# the end
"""

COMMENTED_NET = """\
# a header comment
netdsl: 1
name: commented
input: 3x32x32
params: c=8  # the width

block pair(c) {
  "two convs"
  # the first conv
  conv(c, k=3, p=1)
  conv(c, k=3, p=1)  # the second
}

block single { relu }

pair(c=c)  # a block
# a group follows
group as g {  # the group
  conv(8)

  relu  # inside
}
linear(10)
# the end
"""


def test_comments_and_blank_lines_survive_conversion_both_ways():
    net = rewrite(COMMENTED_YAML, "c.yaml", "net")
    assert net == COMMENTED_NET.replace("block single { relu }", "block single {\n  relu\n}")
    back = rewrite(net, "c.net", "yaml")
    top_level_keys_sit_together = COMMENTED_YAML.replace("the width\n\n", "the width\n")
    assert back == top_level_keys_sit_together.replace("    layers: [relu]", "    layers:\n      - relu")
    assert rewrite(back, "c.yaml", "net") == net


def test_chains_follow_the_source_lines_of_a_text_file_and_run_on_from_yaml():
    net = "netdsl: 1\nname: t\ninput: 3x32x32\n\nconv(8) -> bn\nrelu\nconv(8) -> relu -> conv(8)\n"
    assert format_text(net, "t.net") == net  # the author's lines are kept
    yaml = rewrite(net, "t.net", "yaml")
    assert rewrite(yaml, "t.yaml", "net").endswith("\nconv(8) -> bn -> relu\nconv(8) -> relu\nconv(8)\n")  # a new line at each conv


def test_convert_command_writes_the_other_format(cli, tmp_path):
    target = tmp_path / "r18.net"
    code, out, err = cli("convert", str(SPECS / "resnet18.yaml"), "-o", str(target))
    assert code == 0 and out == f"{SPECS / 'resnet18.yaml'} -> {target}\n", err
    assert target.read_text() == (SPECS / "resnet18.net").read_text()
    code, out, _ = cli("convert", str(target))
    assert code == 0 and out == (SPECS / "resnet18.yaml").read_text().split("\n", 1)[1]  # all but the YAML modeline
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r18.net"]  # no temporary file left behind


def test_convert_keeps_the_target_file_mode(cli, tmp_path):
    target = tmp_path / "lenet5.net"
    target.write_text("old")
    target.chmod(0o640)
    assert cli("convert", str(SPECS / "lenet5.yaml"), "-o", str(target))[0] == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_what_the_text_format_cannot_hold_is_refused_with_its_position(cli, spec_file):
    path = spec_file("netdsl: 1\nname: t\ninput: 8\nlayers:\n  - relu\n  - {linear: 4, relu: null}\n")
    code, out, err = cli("convert", str(path))
    assert code == 2 and out == ""
    assert err.splitlines() == [f"{path}:6:5: cannot write this in the text format: a layer item is a type word or a one-key mapping {{type: options}}"]


def test_converting_a_broken_file_reports_its_errors(cli, spec_file):
    path = spec_file("netdsl: 1\nname: t\ninput: 8\nrelu -> \n", "t.net")
    code, _, err = cli("convert", str(path), "-o", str(path.with_suffix(".yaml")))
    assert code == 2 and err.startswith(f"{path}:4:9: unexpected end of file")
    assert not path.with_suffix(".yaml").exists()


def test_convert_gives_a_new_file_the_mode_open_would(cli, tmp_path):
    """mkstemp creates 0600; a new file written through it gets 0666 less the umask, as open() gives."""
    old = os.umask(0o022)
    try:
        assert cli("convert", str(SPECS / "lenet5.yaml"), "-o", str(tmp_path / "new.net"))[0] == 0
        os.umask(0o027)
        assert cli("convert", str(SPECS / "lenet5.yaml"), "-o", str(tmp_path / "private.net"))[0] == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.net").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "private.net").stat().st_mode) == 0o640
