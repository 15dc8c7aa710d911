"""The language server's view of a document without a client: analysis, hover, inlay hints, quick fixes, formatting
(netdsl.lsp.document, hover, inlay, actions). End-to-end tests over stdio are in tests/test_lsp.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from netdsl.lang.fmt import format_text
from netdsl.lsp.actions import formatted, quick_fix
from netdsl.lsp.document import analyze, word_range
from netdsl.lsp.hover import hover
from netdsl.lsp.inlay import compact, inlay_hints

ROOT = Path(__file__).resolve().parent.parent

SMALL = """\
netdsl: 1
name: small
input: 3x32x32
blocks:
  unit:
    doc: conv, bn, relu
    params: {c: null, s: 1}
    layers:
      - conv: {name: conv, out: c, k: 3, s: s, p: 1, bias: false}
      - bn: {name: bn}
      - relu
layers:
  - conv: {name: stem, out: 8, k: 3, p: 1}
  - repeat: {name: stage, n: 2, layers: [unit: {c: 16, s: 2 if first else 1}]}
  - global_avgpool
  - linear: {name: fc, out: 10}
"""

SMALL_NET = """\
netdsl: 1
name: small
input: 3x32x32

block unit(c, s=1) {
  conv(c, k=3, s=s, p=1, bias=false) as conv -> bn as bn -> relu
}

conv(8, k=3, p=1) as stem
repeat(2) as stage { unit(c=16, s=2 if first else 1) }
global_avgpool -> linear(10) as fc
"""


def at(text: str, needle: str, offset: int = 0) -> tuple[int, int]:
    """The (line, column) of the first occurrence of `needle` plus `offset` characters, 1-based."""
    i = text.index(needle) + offset
    return text.count("\n", 0, i) + 1, i - (text.rfind("\n", 0, i) + 1) + 1


def test_analysis_maps_items_to_nodes_and_instances():
    a = analyze(SMALL, "small.yaml")
    assert a.kind == "spec" and a.complete and a.diagnostics == []
    words = [(item.word, item.name, item.block) for item in a.items]
    assert words == [
        ("conv", "conv", "unit"),
        ("bn", "bn", "unit"),
        ("relu", None, "unit"),
        ("conv", "stem", None),
        ("repeat", "stage", None),
        ("unit", None, None),
        ("global_avgpool", None, None),
        ("linear", "fc", None),
    ]
    conv_in_block = a.items[0]
    assert [n.name for n in a.nodes_of(conv_in_block)] == ["stage.0.conv", "stage.1.conv"]
    unit_use = a.items[5]
    assert [(g.path, dict(g.args)) for g in a.groups_of(unit_use)] == [("stage.0", {"c": 16, "s": 2}), ("stage.1", {"c": 16, "s": 1})]
    assert a.totals["stage"].last.shape == (16, 16, 16)
    assert a.totals["stage.0"].params == 8 * 16 * 9 + 2 * 16  # conv without bias, bn's weight and bias


def test_a_shape_error_keeps_the_layers_built_before_it():
    text = SMALL.replace("out: 8, k: 3, p: 1", "out: 8, k: 40, p: 1")
    a = analyze(text, "small.yaml")
    assert not a.complete
    assert [str(d) for d in a.diagnostics] == [
        "small.yaml:13:5: conv 'stem': kernel 40 exceeds padded input 34x34 (input 32x32, padding 1);"
        " the input 3x32x32 is too small: the network accepts H, W >= 38 (smallest: 3x38x38)"
    ]
    assert a.graph is not None and a.graph.nodes == ()


def test_a_block_library_is_checked_as_one():
    path = ROOT / "netdsl" / "blocks" / "resnet.yaml"
    a = analyze(path.read_text(), str(path))
    assert a.kind == "library" and a.diagnostics == [] and "basic" in a.blocks
    broken = path.read_text().replace("params: {c: null, stride: 1}", "params: {c: null, stride: 1}\n    colour: red", 1)
    b = analyze(broken, str(path))
    assert len(b.diagnostics) == 1 and "colour" in b.diagnostics[0].message


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "a spec must be a mapping with keys netdsl, name, input, layers; got an empty document"),
        ("- 1\n- 2\n", "a spec must be a mapping with keys netdsl, name, input, layers; got a list [1, 2]"),
        ("a: [1, 2\n", "YAML syntax error: "),
        ("netdsl: 1\nname: x\ninput: 3x8x8\nlayers:\n  - conv: {out: 4, k: 3\x00}\n", "control character U+0000 is not allowed in YAML text"),
    ],
)
def test_any_text_gets_diagnostics_not_an_exception(text, message):
    a = analyze(text, "doc.yaml")
    assert a.diagnostics and a.diagnostics[0].message.startswith(message)


def test_a_document_over_the_size_limit_is_refused_at_its_start():
    a = analyze("#" * 1_000_001, "big.yaml")
    assert [str(d) for d in a.diagnostics] == ["big.yaml:1:1: the document has more than 1 MB (netdsl reads at most that; NETDSL_MAX_SPEC_BYTES raises it)"]


def test_hover_on_a_layer_gives_shapes_parameters_and_paths():
    text, span = hover(analyze(SMALL, "small.yaml"), at(SMALL, "conv: {name: stem"))
    assert span == (at(SMALL, "conv: {name: stem"), at(SMALL, "conv: {name: stem", 4))
    lines = text.splitlines()
    assert lines[0].startswith("**conv** (conv2d) — 2-D convolution")
    assert lines[2] == "`stem`: 3x32x32 → 8x32x32 · 224 parameters · 221.2k MACs"
    assert lines[-2:] == ["- `stem.weight` 8x3x3x3", "- `stem.bias` 8"]


def test_hover_on_a_layer_in_a_block_lists_its_instances():
    text, _ = hover(analyze(SMALL, "small.yaml"), at(SMALL, "conv: {name: conv,"))
    assert text.splitlines()[0].startswith("**conv** (conv2d, in block `unit`) — ")
    assert text.splitlines()[2:] == [
        "2 instances · 3,456 parameters · 884.7k MACs in all",
        "",
        "- `stage.0.conv`: 8x32x32 → 16x16x16 · 1,152 parameters",
        "- `stage.1.conv`: 16x16x16 → 16x16x16 · 2,304 parameters",
    ]


def test_hover_on_a_block_use_gives_each_instances_values():
    text, _ = hover(analyze(SMALL, "small.yaml"), at(SMALL, "unit: {c: 16"))
    assert text.splitlines() == [
        "**unit** (defined at small.yaml:5) — conv, bn, relu",
        "",
        "2 instances",
        "",
        "- `stage.0`: c=16, s=2 → 16x16x16 · 1,184 parameters",
        "- `stage.1`: c=16, s=1 → 16x16x16 · 2,336 parameters",
    ]


def test_hover_on_a_repeat_gives_each_iteration():
    text, _ = hover(analyze(SMALL, "small.yaml"), at(SMALL, "repeat:"))
    assert text.splitlines()[2:] == [
        "`stage` → 16x16x16 · 3,520 parameters · 884.7k MACs",
        "",
        "- `stage.0`: i=0, c=16, s=2 → 16x16x16 · 1,184 parameters",
        "- `stage.1`: i=1, c=16, s=1 → 16x16x16 · 2,336 parameters",
    ]


def test_hover_on_an_expression_gives_its_value_per_instance():
    a = analyze(SMALL, "small.yaml")
    text, span = hover(a, at(SMALL, "s: 2 if first", 4))
    assert span[0] == at(SMALL, "s: 2 if first", 3)
    assert text.splitlines()[-2:] == ["- `stage.0`: `2`", "- `stage.1`: `1`"]
    text, _ = hover(a, at(SMALL, "out: c, k: 3", 5))
    assert text.splitlines()[-1] == "= `16` in all 2 instances"


def test_hover_on_the_name_gives_the_network():
    text, _ = hover(analyze(SMALL, "small.yaml"), at(SMALL, "small"))
    assert text == "**small**: 3x32x32 → 10 · 3,914 parameters · 1.1M MACs · 9 layers"


def test_hover_is_the_same_in_both_formats():
    yaml, net = analyze(SMALL, "small.yaml"), analyze(SMALL_NET, "small.net")
    assert net.complete, net.diagnostics
    assert hover(yaml, at(SMALL, "conv: {name: stem"))[0] == hover(net, at(SMALL_NET, "conv(8"))[0]
    assert hover(yaml, at(SMALL, "unit: {c"))[0].splitlines()[2:] == hover(net, at(SMALL_NET, "unit(c=16"))[0].splitlines()[2:]


def test_inlay_hints_end_each_layer_line():
    a = analyze(SMALL, "small.yaml")
    lines = SMALL.splitlines()
    shown = [(lines[h.at[0] - 1][: h.at[1] - 1].strip()[-12:], h.label) for h in inlay_hints(a)]
    assert shown == [
        ("bias: false}", "→ 16x16x16 ×2"),
        (": {name: bn}", "→ 16x16x16 ×2"),
        ("- relu", "→ 16x16x16 ×2"),
        (" k: 3, p: 1}", "→ 8x32x32"),
        ("st else 1}]}", "→ 16x16x16"),
        ("obal_avgpool", "→ 16"),
        ("fc, out: 10}", "→ 10"),
    ]


def test_inlay_hints_sit_between_chained_layers_in_the_text_format():
    a = analyze(SMALL_NET, "small.net")
    line = SMALL_NET.splitlines()[10]
    hints = [h for h in inlay_hints(a, params=True) if h.at[0] == 11]
    assert [(line[: h.at[1] - 1], h.label) for h in hints] == [("global_avgpool", "→ 16"), ("global_avgpool -> linear(10) as fc", "→ 10 · 170")]


def test_inlay_hints_keep_to_the_range_asked():
    a = analyze(SMALL, "small.yaml")
    assert [h.at[0] for h in inlay_hints(a, 13, 14)] == [13, 14]


def test_compact_counts():
    assert [compact(n) for n in (0, 999, 9408, 11_689_512, 3_000_000_000)] == ["0", "999", "9.4k", "11.7M", "3.0G"]


def test_a_did_you_mean_becomes_a_quick_fix_for_the_word_it_quotes():
    text = SMALL.replace("k: 3, p: 1}", "kernal: 3, p: 1}")
    a = analyze(text, "small.yaml")
    (d,) = a.diagnostics
    span = word_range(a.lines, (d.loc.line, d.loc.col))
    assert quick_fix(d.message, a.lines, span) == ("Change 'kernal' to 'kernel'", "kernel")
    assert quick_fix(d.message, a.lines, (span[0], (span[1][0], span[1][1] - 1))) is None  # the range must hold the word
    assert quick_fix("unknown key 'x'", a.lines, span) is None


def test_formatting_is_netdsl_fmt():
    messy = SMALL.replace("  - global_avgpool", "  -   global_avgpool")
    assert formatted(analyze(messy, "small.yaml")) == format_text(messy, "small.yaml") != messy
    assert formatted(analyze("a: [1", "bad.yaml")) is None


def test_word_range_covers_the_token():
    lines = ["  - conv: {name: c1, out: 6, kernal: 5}", 'x: "quoted text" y']
    assert word_range(lines, (1, 30)) == ((1, 30), (1, 36))
    assert word_range(lines, (2, 4)) == ((2, 4), (2, 17))
    assert word_range(lines, (1, 11)) == ((1, 11), (1, 12))  # `{`: one character
    assert word_range(lines, (5, 1)) == ((5, 1), (5, 1))


def test_the_server_forgets_each_notification_once_handled():
    """pygls 2.1 keeps every notification's future (~2 KiB a keystroke, never freed); the server's protocol drops them."""
    from lsprotocol import types
    from pygls.protocol import LanguageServerProtocol

    from netdsl.lsp.server import server

    protocol = server.protocol
    for _ in range(3):
        protocol._handle_notification(types.INITIALIZED, types.InitializedParams())
    assert protocol._request_futures == {}
    LanguageServerProtocol._handle_notification(protocol, types.INITIALIZED, types.InitializedParams())  # pygls's own keeps one
    assert len(protocol._request_futures) == 1
    protocol._request_futures.clear()


def test_documents_break_lines_where_lsp_does():
    """LSP counts lines at \\n, \\r\\n and \\r only; str.splitlines (pygls's) also breaks at \\x0c, \\x85, \\u2028, ..."""
    from pygls.workspace.text_document import TextDocument

    import netdsl.lsp.server  # noqa: F401  (sets TextDocument.lines)

    doc = TextDocument("file:///t.net", "# a\x0cb\x85c\u2028d\r\nx\ry\nlast")
    assert list(doc.lines) == ["# a\x0cb\x85c\u2028d\r\n", "x\r", "y\n", "last"]
