"""The text format (.net): each construct reads to the raw tree its YAML twin reads to; syntax errors are located lines."""

from __future__ import annotations

import pytest

import netdsl
from netdsl.errors import SpecError
from netdsl.graph.load import load_net_text
from netdsl.lang.convert import same_tree
from netdsl.lang.text import parse_net, parse_value
from netdsl.lang.yaml_tree import load_yaml

HEAD_NET = "netdsl: 1\nname: t\ninput: 3x32x32\n"
HEAD_YAML = "netdsl: 1\nname: t\ninput: 3x32x32\nlayers:\n"

# (text body, YAML `layers:` body with the same meaning)
TWINS = {
    "type word": ("relu\n", "  - relu\n"),
    "bare primary value": ("linear(10)\n", "  - linear: 10\n"),
    "options": ("conv(out=8)\n", "  - conv: {out: 8}\n"),
    "primary and options": ("conv(8, k=3, p=1, bias=false)\n", "  - conv: {out: 8, k: 3, p: 1, bias: false}\n"),
    "empty options": ("relu()\n", "  - relu: {}\n"),
    "null value": ("relu(null)\n", "  - relu:\n"),
    "name": ("conv(8) as c1 -> bn as bn1\n", "  - conv: {name: c1, out: 8}\n  - bn: {name: bn1}\n"),
    "interpolated name": ('repeat(2) { conv(8) as "c{i}" }\n', '  - repeat: {n: 2, layers: [conv: {name: "c{i}", out: 8}]}\n'),
    "chain": ("conv(8, k=3, p=1) -> bn -> relu\n", "  - conv: {out: 8, k: 3, p: 1}\n  - bn\n  - relu\n"),
    "chain over lines": ("conv(8) ->\n  relu\n", "  - conv: 8\n  - relu\n"),
    "from one": ("conv(8) as a\nconv(8) as b from input\n", "  - conv: {name: a, out: 8}\n  - conv: {name: b, from: input, out: 8}\n"),
    "merge": (
        "conv(8) as a\nconv(8) as b from input\nadd from a, b\n",
        "  - conv: {name: a, out: 8}\n  - conv: {name: b, from: input, out: 8}\n  - add: {from: [a, b]}\n",
    ),
    "from a one-item list": ("relu as a\nrelu from [a]\n", "  - relu: {name: a}\n  - relu: {from: [a]}\n"),
    "from an absolute path and an index": ("relu\nrelu from /0 -> relu from 0\n", "  - relu\n  - relu: {from: /0}\n  - relu: {from: 0}\n"),
    "group": (
        "group as features {\n  conv(8) -> relu\n}\n",
        "  - group:\n      name: features\n      layers:\n        - conv: 8\n        - relu\n",
    ),
    "conditional group": (
        "group(when=false) as g from input { relu }\nadd from input, g\n",
        "  - group: {name: g, from: input, when: false, layers: [relu]}\n  - add: {from: [input, g]}\n",
    ),
    "repeat": (
        'repeat(3, each="stage{i}") { conv(8 * (i + 1), s=2 if first else 1) }\n',
        '  - repeat: {n: 3, each: "stage{i}", layers: [conv: {out: 8 * (i + 1), s: "2 if first else 1"}]}\n',
    ),
    "expressions": (
        "conv(max(8, 16 // 2), k=[1, 3], p=[0, 1]) -> dropout(0.5 if true else 0.1)\n",
        '  - conv: {out: "max(8, 16 // 2)", k: [1, 3], p: [0, 1]}\n  - dropout: 0.5 if true else 0.1\n',
    ),
    "words and quoted strings": (
        "conv(8, p=same) -> relu(init='x') -> gelu(approximate=\"tanh\")\n",
        "  - conv: {out: 8, p: same}\n  - relu: {init: x}\n  - gelu: {approximate: tanh}\n",
    ),
    "negative numbers and floats": ("softmax(-1) -> leaky_relu(1e-05)\n", "  - softmax: -1\n  - leaky_relu: 0.00001\n"),
    "mapping value": ("conv(8, init={kind: kaiming, gain: 2})\n", "  - conv: {out: 8, init: {kind: kaiming, gain: 2}}\n"),
    "arguments over lines": ("conv(\n  8,\n  k=3,\n)\n", "  - conv: {out: 8, k: 3}\n"),
}


@pytest.mark.parametrize("name", sorted(TWINS))
def test_text_reads_to_the_tree_of_its_yaml_twin(name):
    net, yaml_body = TWINS[name]
    text_tree = parse_net(HEAD_NET + net, "t.net")
    yaml_tree = load_yaml(HEAD_YAML + yaml_body, "t.yaml")
    assert same_tree(text_tree, yaml_tree), (text_tree, yaml_tree)


def test_settings_blocks_and_imports_read_as_in_yaml():
    net = (
        "# a comment\n"
        'netdsl: 1\nname: blocks_demo\ndescription: "a demo"\ninput: [3, 32, 32]\nimport: common, ./lib.yaml\n'
        "params: width=16, act=relu6\nlimits: params=5M, macs=600M\ninit: seed=0, conv2d={mode: fan_out}\n\n"
        'block se(c, reduction=4) {\n  "squeeze and excite"\n  global_avgpool(keepdim=true) -> conv(c // reduction, k=1)\n}\n'
        "block nothing_required() { relu }\n\n"
        "se(c=width)\n"
    )
    yaml = (
        "netdsl: 1\nname: blocks_demo\ndescription: a demo\ninput: [3, 32, 32]\nimport: [common, ./lib.yaml]\n"
        "params: {width: 16, act: relu6}\nlimits: {params: 5M, macs: 600M}\ninit: {seed: 0, conv2d: {mode: fan_out}}\n"
        "blocks:\n  se:\n    doc: squeeze and excite\n    params: {c: null, reduction: 4}\n"
        "    layers: [global_avgpool: {keepdim: true}, conv: {out: c // reduction, k: 1}]\n"
        "  nothing_required:\n    params: {}\n    layers: [relu]\n"
        "layers:\n  - se: {c: width}\n"
    )
    assert same_tree(parse_net(net, "t.net"), load_yaml(yaml, "t.yaml"))


def test_positions_point_into_the_text_file():
    tree = parse_net(HEAD_NET + "conv(8, k=3) as c1 -> relu\nrepeat(2) { bn }\n", "t.net")
    layers = tree["layers"]
    assert [(at.line, at.col) for at in layers.item_locs] == [(4, 1), (4, 23), (5, 1)]
    opts = layers[0]["conv"]
    assert (opts.key_locs["k"].line, opts.key_locs["k"].col, opts.value_locs["k"].col) == (4, 9, 11)
    assert (opts.key_locs["name"].col, opts.value_locs["name"].col) == (14, 17)  # `as` and the name
    assert tree.value_locs["input"].col == 8


def test_empty_file_is_an_empty_document():
    assert parse_net("# only a comment\n\n", "t.net") is None
    with pytest.raises(SpecError) as exc:
        load_net_text("", "t.net")
    assert str(exc.value) == "t.net:1:1: a spec must be a mapping with keys netdsl, name, input, layers; got an empty document"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("64", 64),
        ("-1", -1),
        ("0.5", 0.5),
        ("1e-05", 1e-05),
        ("true", True),
        ("null", None),
        ('"64"', "64"),
        ("'relu'", "relu"),
        ("same", "same"),
        ("3x224x224", "3x224x224"),
        ("5M", "5M"),
        ("c * 4", "c * 4"),
        ("act == 'relu'", "act == 'relu'"),
        ("2 if first else 1", "2 if first else 1"),
        ("not last", "not last"),
        ("widths[i]", "widths[i]"),
        ("[1, [2, x]]", [1, [2, "x"]]),
        ("{a: 1}", {"a": 1}),
    ],
)
def test_values_read_as_their_yaml_spelling_would(text, value):
    got = parse_value(text)
    assert same_tree(got, value), got


# One test per class of syntax error: the offending token, what was expected, file:line:col.
SYNTAX_ERRORS = {
    "unexpected character": ("conv(8) @ relu\n", "t.net:4:9: unexpected character '@'; expected 'as', 'from', '{', '}', '->' or a new line"),
    "unexpected token": ("conv(8)) -> relu\n", "t.net:4:8: unexpected ')'; expected 'as', 'from', '{', '}', '->' or a new line"),
    "missing value": ("conv(8, k=) -> relu\n", "t.net:4:11: unexpected ')'; expected a value or a new line"),
    "unclosed body": ("group {\n  relu\n", "t.net:5:7: unexpected end of file; expected a name or '}'"),
    "unclosed call": ("conv(8,", "t.net:4:8: unexpected end of file; expected a value or ')'"),
    "unterminated string": ('conv(8) as "c1\n', "t.net:4:12: unterminated string (a string ends on its line with the same quote)"),
    "setting without a colon": ("params num_classes=10\n", "t.net:4:8: unexpected 'num_classes'; expected 'as', ':', 'from', '{', '(', '->' or a new line"),
    "chain ends in an arrow": ("conv(8) ->\n", "t.net:4:11: unexpected end of file; expected a name"),
    "name missing after as": ("conv(8) as\n", "t.net:4:11: unexpected end of line; expected a number, a name or a quoted string"),
    "operator where a value ends": ("conv(8 8)\n", "t.net:4:8: unexpected '8'; expected an operator, ',', '.', '(', '[', '}', ')', ']' or a new line"),
    "too deep": ("conv(" + "[" * 101 + "]" * 101 + ")\n", "t.net:4:105: nested more than 100 deep"),
}


@pytest.mark.parametrize("name", sorted(SYNTAX_ERRORS))
def test_syntax_errors_are_one_located_line(name, cli, spec_file):
    body, message = SYNTAX_ERRORS[name]
    path = spec_file(HEAD_NET + body, "t.net")
    code, _, err = cli("check", str(path))
    assert code == 2 and "Traceback" not in err
    assert err.splitlines() == [message.replace("t.net", str(path), 1)]


# Errors of the tree the text reads to: the text format's own (positional values), then shared ones, worded as for YAML.
TREE_ERRORS = {
    "two positional values": ("conv(8, 3)\n", "t.net:4:9: conv takes one positional value (its primary option 'out'); write the others as option=value"),
    "positional value for a block": ("foo(3, k=1)\n", "t.net:4:5: 'foo' is not a layer type, so its arguments need names: foo(param=value)"),
    "positional value for a layer without a primary option": (
        "relu(3, x=1)\n",
        "t.net:4:6: relu takes no positional value (it has no primary option); write option=value",
    ),
    "duplicate option": ("conv(8, k=3, k=5)\n", "t.net:4:14: duplicate key 'k' (first at line 4)"),
    "primary given twice": ("conv(8, out=3)\n", "t.net:4:9: duplicate key 'out' (first at line 4)"),
    "duplicate setting": ("name: u\nrelu\n", "t.net:4:1: duplicate key 'name' (first at line 2)"),
    "unknown setting": (
        "inptu: 3\nrelu\n",
        "t.net:4:1: 'inptu' is not a spec key; did you mean 'input'? (keys: netdsl, name, description, input, params, import, blocks, layers, ...",
    ),
    "unknown option": (
        "conv(8, kernal=3)\n",
        "t.net:4:9: conv: 'kernal' is not a conv option; did you mean 'kernel'? "
        "(options: out, kernel, stride, padding, dilation, groups, bias, init, name, from, frozen, when)",
    ),
    "unknown type": ("rellu\n", "t.net:4:1: unknown layer type 'rellu'; did you mean 'relu'? (see `netdsl schema`, or define a block named 'rellu')"),
    "bad value": ("dropout(1.5)\n", "t.net:4:9: dropout: 'p' must be a number >= 0 and <= 1; got 1.5"),
    "unknown reference": ("relu -> add from relu1, 0\n", "t.net:4:18: unknown layer 'relu1' in 'from' (known here: 0, input)"),
    "shape error": (
        "conv(8, k=64)\n",
        "t.net:4:1: conv '0': kernel 64 exceeds padded input 32x32 (input 32x32, padding 0); "
        "the input 3x32x32 is too small: the network accepts H, W >= 64 (smallest: 3x64x64)",
    ),
}


@pytest.mark.parametrize("name", sorted(TREE_ERRORS))
def test_spec_errors_are_located_in_the_text_file(name):
    body, message = TREE_ERRORS[name]
    with pytest.raises(SpecError) as exc:
        load_net_text(HEAD_NET + body, "t.net")
    first = str(exc.value).splitlines()[0]
    assert first.startswith(message.removesuffix("...")) if message.endswith("...") else first == message


def test_every_command_reads_either_format(cli, tmp_path):
    from tests.conftest import SPECS

    for command in (["check"], ["summarize", "--depth", "1"], ["expand"]):
        yaml_code, yaml_out, _ = cli(*command, str(SPECS / "resnet18.yaml"))
        net_code, net_out, _ = cli(*command, str(SPECS / "resnet18.net"))
        assert yaml_code == net_code == 0
        assert net_out.replace("resnet18.net", "resnet18.yaml") == yaml_out
    code, out, _ = cli("diff", str(SPECS / "resnet18.yaml"), str(SPECS / "resnet18.net"))
    assert code == 0 and "no differences" in out


def test_text_library_import(tmp_path):
    (tmp_path / "lib.net").write_text('netdsl: 1\n\nblock twice(c) {\n  "two convs"\n  conv(c, k=3, p=1) -> conv(c, k=3, p=1)\n}\n')
    spec = tmp_path / "net.yaml"
    spec.write_text("netdsl: 1\nname: t\ninput: 3x8x8\nimport: [lib.net]\nlayers: [twice: {c: 4}]\n")
    graph = netdsl.load(spec)
    assert [n.name for n in graph] == ["0.0", "0.1"]


def test_the_front_end_reads_text_without_torch():
    import subprocess
    import sys

    from tests.conftest import SPECS

    code = f"import sys, netdsl; netdsl.load({str(SPECS / 'resnet50.net')!r}); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_mapping_value_may_span_lines():
    net = HEAD_NET + "init: seed=0, conv2d={\n  mode: fan_out,\n  nonlinearity: relu\n}\nrelu\n"
    yaml = HEAD_YAML.replace("layers:\n", "init: {seed: 0, conv2d: {mode: fan_out, nonlinearity: relu}}\nlayers: [relu]\n")
    assert same_tree(parse_net(net, "t.net"), load_yaml(yaml, "t.yaml"))
