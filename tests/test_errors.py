"""Bad input: one located line per problem (file:line:col: message), exit status 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from netdsl.errors import Diagnostic, Loc, render_source_line

HEAD = "netdsl: 1\nname: t\ninput: 3x32x32\nlayers:\n"


def errors(cli, path) -> list[str]:
    code, out, err = cli("check", str(path))
    assert code == 2, (out, err)
    assert "Traceback" not in err
    return err.splitlines()


def test_yaml_syntax_error_is_located(cli, spec_file):
    path = spec_file("netdsl: 1\nname: t\ninput: [3, 32\nlayers: []\n")
    assert errors(cli, path) == [f"{path}:4:7: YAML syntax error: did not find expected ',' or ']'"]


def test_unknown_layer_type_suggests_the_closest(cli, spec_file):
    path = spec_file(HEAD + "  - conv: 8\n  - rellu\n")
    assert errors(cli, path) == [f"{path}:6:5: unknown layer type 'rellu'; did you mean 'relu'? (see `netdsl schema`, or define a block named 'rellu')"]


def test_unknown_option_names_the_layer_and_lists_the_options(cli, spec_file):
    path = spec_file(HEAD + "  - conv: {name: c1, out: 6, kernal: 5}\n")
    assert errors(cli, path) == [
        f"{path}:5:30: conv 'c1': 'kernal' is not a conv option; did you mean 'kernel'? "
        "(options: out, kernel, stride, padding, dilation, groups, bias, init, name, from, frozen, when)"
    ]


def test_unknown_top_level_key(cli, spec_file):
    path = spec_file(HEAD + "  - relu\nlayerz: []\n")
    (line,) = errors(cli, path)
    assert line.startswith(f"{path}:6:1: 'layerz' is not a spec key; did you mean 'layers'? (keys: netdsl, name,")


@pytest.mark.parametrize(
    ("layer", "col", "message"),
    [
        ("conv: {out: true}", 17, "conv: 'out' must be an integer >= 1 or an expression; got true"),
        ("conv: {out: 8, bias: [1]}", 26, "conv: 'bias' must be true or false or an expression; got [1]"),
        ("conv: {out: 8, bias: maybe}", 26, "conv '0': 'bias': unknown name 'maybe' (known: depth_mult, width_mult)"),
        ("conv: {out: 0}", 17, "conv: 'out' must be an integer >= 1; got 0"),
        ("conv: {out: 8, k: -3}", 23, "conv: 'k' must be an integer >= 1; got -3"),
        ("conv: {out: 8, k: [3, 0]}", 27, "conv: 'k' must be an integer >= 1; got 0"),
        ("conv: {out: 1000000000}", 17, "conv: 'out' must be an integer >= 1; got 1000000000"),
        ("dropout: 1.5", 14, "dropout: 'p' must be a number >= 0 and <= 1; got 1.5"),
        ("upsample: {mode: bilinaer}", 22, "upsample '0': 'mode' must be one of 'nearest', 'bilinear'; got 'bilinaer'; did you mean 'bilinear'?"),
    ],
)
def test_wrong_types_and_sizes_say_what_is_allowed(cli, spec_file, layer, col, message):
    path = spec_file(HEAD + f"  - {layer}\n")
    assert errors(cli, path) == [f"{path}:5:{col}: {message}"]


def test_absurd_size_is_refused_even_if_well_typed(cli, spec_file):
    path = spec_file(HEAD + "  - conv: {out: 16777217}\n")
    assert "must be an integer >= 1" in errors(cli, path)[0]


def test_shape_error_names_layer_input_and_why(cli, spec_file):
    path = spec_file("netdsl: 1\nname: vgg\ninput: 3x3x3\nlayers:\n  - conv: {name: conv5, out: 8, k: 7, p: 1}\n")
    assert errors(cli, path) == [
        f"{path}:5:5: conv 'conv5': kernel 7 exceeds padded input 5x5 (input 3x3, padding 1); "
        "the input 3x3x3 is too small: the network accepts H, W >= 5 (smallest: 3x5x5)"
    ]


def test_rank_mismatch_is_a_shape_error(cli, spec_file):
    path = spec_file("netdsl: 1\nname: t\ninput: 10\nlayers:\n  - conv: 8\n")
    assert errors(cli, path) == [f"{path}:5:5: conv '0': conv2d needs a C x H x W input, got 10"]


def test_duplicate_names(cli, spec_file):
    path = spec_file(HEAD + "  - conv: {name: a, out: 4}\n  - conv: {name: a, out: 4}\n")
    assert errors(cli, path) == [f"{path}:6:5: duplicate name 'a' (first at line 5)"]


def test_duplicate_yaml_keys(cli, spec_file):
    path = spec_file("netdsl: 1\nname: t\nname: u\ninput: 3x32x32\nlayers: [relu]\n")
    assert errors(cli, path) == [f"{path}:3:1: duplicate key 'name' (first at line 2)"]


def test_missing_input_shape(cli, spec_file):
    path = spec_file("netdsl: 1\nname: t\nlayers: [relu]\n")
    assert errors(cli, path) == [f"{path}:1:1: missing required key 'input' (a spec needs netdsl, name, input, layers)"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("3x0x32", "bad input shape '3x0x32'; write [C, H, W], 'CxHxW', [C, L] or a feature count"),
        ("[3, 32, 32, 32]", "'input' must be a list of 1 to 3 items; got [3, 32, 32, 32]"),
        ("big", "'input' must be a shape like '3x224x224'; got 'big'"),
    ],
)
def test_malformed_input_shape(cli, spec_file, value, message):
    path = spec_file(f"netdsl: 1\nname: t\ninput: {value}\nlayers: [relu]\n")
    assert errors(cli, path) == [f"{path}:3:8: {message}"]


def test_empty_layer_list(cli, spec_file):
    path = spec_file("netdsl: 1\nname: t\ninput: 3x32x32\nlayers: []\n")
    assert errors(cli, path) == [f"{path}:4:9: 'layers' is empty; it needs at least one entry"]


@pytest.mark.parametrize(
    ("text", "got"),
    [("- a\n- b\n", "a list ['a', 'b']"), ("just text\n", "a string 'just text'"), ("", "an empty document")],
)
def test_non_mapping_document(cli, spec_file, text, got):
    path = spec_file(text)
    assert errors(cli, path) == [f"{path}:1:1: a spec must be a mapping with keys netdsl, name, input, layers; got {got}"]


def test_python_tags_are_refused(cli, spec_file):
    path = spec_file(HEAD + '  - !!python/object/apply:os.system ["echo pwned"]\n')
    assert errors(cli, path) == [f"{path}:5:5: unsupported YAML tag 'tag:yaml.org,2002:python/object/apply:os.system' (specs are plain data)"]


def test_alias_bomb_is_bounded(cli, spec_file):
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    path = spec_file("\n".join(lines) + "\n")  # 9^9 = 387M strings if expanded
    (line,) = errors(cli, path)
    assert line.endswith("document too large or too deeply nested (alias expansion is bounded)")


def test_unsupported_format_version(cli, spec_file):
    path = spec_file("netdsl: 2\nname: t\ninput: 3x32x32\nlayers: [relu]\n")
    assert errors(cli, path) == [f"{path}:1:9: unsupported format version 2; this netdsl reads version 1"]


def test_two_keys_in_one_layer_hints_at_a_missing_dash(cli, spec_file):
    path = spec_file(HEAD + "  - conv: {out: 4}\n    relu:\n")
    assert errors(cli, path) == [f"{path}:5:5: a layer is a one-key mapping {{type: options}}; got 2 keys (conv, relu); is a '-' or an indent missing?"]


def test_several_errors_are_all_reported_in_order(cli, spec_file):
    path = spec_file(HEAD + "  - conv: {out: 0}\n  - tanhh\n  - dropout: 2\nextra: 1\n")
    lines = errors(cli, path)
    assert [line.split(": ")[0] for line in lines] == [f"{path}:5:17", f"{path}:6:5", f"{path}:7:14", f"{path}:8:1"]


def test_missing_file(cli, tmp_path):
    path = tmp_path / "nope.yaml"
    assert errors(cli, path) == [f"{path}:1:1: no such file"]


def test_bad_input_override(cli):
    code, _, err = cli("summarize", "specs/lenet5.yaml", "--input", "1x32")
    assert (code, err) == (2, "specs/lenet5.yaml:8:5: conv 'c1': conv2d needs a C x H x W input, got 1x32\n")


def test_bad_input_override_text(cli):
    code, _, err = cli("summarize", "specs/lenet5.yaml", "--input", "banana")
    assert (code, err) == (2, "--input: bad input shape 'banana'; write C x H x W like 3x224x224, C x L, or a feature count\n")


def test_unknown_set_parameter_suggests(cli):
    code, _, err = cli("summarize", "specs/vgg16.yaml", "--set", "num_clases=10")
    assert code == 2
    assert err.startswith("--set num_clases=10: the spec has no parameter 'num_clases'; did you mean 'num_classes'?")


def test_usage_errors_exit_2(cli):
    code, _, err = cli("summarize")
    assert code == 2 and "error: the following arguments are required: spec" in err


def test_real_process_exit_status_and_no_traceback(spec_file):
    path = spec_file(HEAD + "  - conv: {out: 8, k: 9}\n  - groupnorm: 3\n  - conv: 4\n")
    proc = subprocess.run([sys.executable, "-m", "netdsl", "summarize", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [f"{path}:6:5: groupnorm '1': groups 3 must divide the 8 channels (input 8x24x24)"]


def test_caret_under_the_column():
    text = "a: 1\nlayers:\n  - conv: {kernal: 3}\n"
    shown = render_source_line(Diagnostic(Loc("f.yaml", 3, 13), "x"), text)
    assert shown == "  " + "  - conv: {kernal: 3}\n" + "  " + " " * 12 + "^"
