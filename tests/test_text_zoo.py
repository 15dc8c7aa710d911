"""Every zoo spec has a text twin (specs/NAME.net, written by `netdsl convert`) that means exactly the same network."""

from __future__ import annotations

import pytest

import netdsl
from netdsl.analysis.counts import analyze
from netdsl.lang.convert import rewrite, same_tree
from netdsl.lang.formats import parse_tree
from tests.conftest import SPECS

ZOO = sorted(p.stem for p in SPECS.glob("*.yaml"))


def test_every_yaml_spec_has_a_text_twin_and_no_text_spec_is_alone():
    assert ZOO and sorted(p.stem for p in SPECS.glob("*.net")) == ZOO


@pytest.mark.parametrize("name", ZOO)
def test_text_twin_reads_to_the_same_tree(name):
    yaml_path, net_path = SPECS / f"{name}.yaml", SPECS / f"{name}.net"
    assert same_tree(parse_tree(net_path.read_text(), str(net_path)), parse_tree(yaml_path.read_text(), str(yaml_path)))


@pytest.mark.parametrize("name", ZOO)
def test_text_twin_is_what_convert_writes(name):
    yaml_path = SPECS / f"{name}.yaml"
    assert rewrite(yaml_path.read_text(), str(yaml_path), "net") == (SPECS / f"{name}.net").read_text()


@pytest.mark.parametrize("name", ZOO)
def test_text_twin_builds_the_same_graph(name):
    a, b = netdsl.load(SPECS / f"{name}.yaml"), netdsl.load(SPECS / f"{name}.net")
    assert [(n.name, n.op, n.layer, n.inputs, n.input_shapes, n.shape, n.frozen, n.init) for n in a] == [
        (n.name, n.op, n.layer, n.inputs, n.input_shapes, n.shape, n.frozen, n.init) for n in b
    ]
    assert (a.name, a.input_shape, a.output, [(g.path, g.kind) for g in a.groups]) == (b.name, b.input_shape, b.output, [(g.path, g.kind) for g in b.groups])
    ra, rb = analyze(a), analyze(b)
    assert (ra.params, ra.trainable, ra.frozen, ra.buffers, ra.macs) == (rb.params, rb.trainable, rb.frozen, rb.buffers, rb.macs)
    assert a.state_dict_shapes() == b.state_dict_shapes()
    assert {n.loc.file for n in b} - {n.loc.file for n in a} == {str(SPECS / f"{name}.net")}  # positions point into the text file (or a library)
