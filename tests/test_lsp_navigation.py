"""Go to definition, find references and the outline (netdsl.lsp.navigation), called directly on analyses of small texts
and zoo specs in both formats. Positions are found by searching the text (zoo files may gain header lines)."""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

import pytest

from netdsl.lsp.document import Analysis, Pos, analyze
from netdsl.lsp.navigation import Target, definition, references
from netdsl.lsp.outline import Symbol, symbols

ROOT = Path(__file__).resolve().parent.parent
RESNET_LIBRARY = os.path.realpath(ROOT / "netdsl" / "blocks" / "resnet.yaml")

TINY_YAML = """\
netdsl: 1
name: tiny
input: 3x8x8
blocks:
  pair:
    doc: a two-input block
    params: {c: null}
    inputs: [x, h]
    layers:
      - conv: {name: a, from: x, out: c, k: 3, p: 1}
      - add: {name: s, from: [a, h]}
layers:
  - conv: {name: stem, out: 4, k: 3, p: 1}
  - relu: {name: act}
  - pair: {name: p1, from: [stem, act], c: 4}
  - maxpool: {name: mp, k: 2}
  - pad: {name: up, to: stem}
  - group:
      name: g
      layers:
        - conv: {name: a, out: 4, k: 1}
        - relu
        - add: {from: [a, stem]}
  - repeat:
      n: 1
      layers:
        - relu: {name: r}
  - add: {name: out, from: [g, r]}
outputs: [out, p1]
"""

TINY_NET = """\
netdsl: 1
name: tiny
input: 3x8x8

block pair(c) from x, h {
  "a two-input block"
  conv(c, k=3, p=1) as a from x
  add as s from a, h
}

conv(4, k=3, p=1) as stem -> relu as act
pair(c=4) as p1 from stem, act
maxpool(k=2) as mp
pad(to=stem) as up
group as g {
  conv(4, k=1) as a
  relu
  add from a, stem
}
repeat(1) { relu as r }
add as out from g, r
outputs: out, p1
"""

TINY = {"yaml": (TINY_YAML, "tiny.yaml"), "net": (TINY_NET, "tiny.net")}
# Where each name is declared and read, as (text of the line, the name's occurrence in it), per format.
DECLARED = {
    "yaml": {
        "x": ("inputs: [x, h]", "x"),
        "h": ("inputs: [x, h]", "h"),
        "block a": ("{name: a, from: x", "a"),
        "stem": ("name: stem", "stem"),
        "act": ("name: act", "act"),
        "p1": ("name: p1", "p1"),
        "g": ("name: g", "g"),
        "group a": ("{name: a, out: 4", "a"),
        "r": ("name: r", "r"),
        "out": ("name: out", "out"),
    },
    "net": {
        "x": ("from x, h {", "x"),
        "h": ("from x, h {", "h"),
        "block a": ("as a from x", "a"),
        "stem": ("as stem", "stem"),
        "act": ("as act", "act"),
        "p1": ("as p1", "p1"),
        "g": ("as g {", "g"),
        "group a": ("as a\n", "a"),
        "r": ("as r", "r"),
        "out": ("as out", "out"),
    },
}
READ = {
    "yaml": {
        "x in block": ("from: x", "x"),
        "a in block": ("from: [a, h]", "a"),
        "h in block": ("from: [a, h]", "h"),
        "stem in use": ("from: [stem, act]", "stem"),
        "act in use": ("from: [stem, act]", "act"),
        "stem in to": ("to: stem", "stem"),
        "a in group": ("from: [a, stem]", "a"),
        "stem in group": ("from: [a, stem]", "stem"),
        "g": ("from: [g, r]", "g"),
        "r": ("from: [g, r]", "r"),
        "out in outputs": ("outputs: [out, p1]", "out"),
        "p1 in outputs": ("outputs: [out, p1]", "p1"),
    },
    "net": {
        "x in block": ("a from x", "x"),
        "a in block": ("from a, h", "a"),
        "h in block": ("from a, h", "h"),
        "stem in use": ("from stem, act", "stem"),
        "act in use": ("from stem, act", "act"),
        "stem in to": ("to=stem", "stem"),
        "a in group": ("from a, stem", "a"),
        "stem in group": ("from a, stem", "stem"),
        "g": ("from g, r", "g"),
        "r": ("from g, r", "r"),
        "out in outputs": ("outputs: out, p1", "out"),
        "p1 in outputs": ("outputs: out, p1", "p1"),
    },
}
# what each read resolves to: the builder's scoping (own list first, then enclosing lists; a block sees only itself)
RESOLVES = {
    "x in block": "x",
    "a in block": "block a",
    "h in block": "h",
    "stem in use": "stem",
    "act in use": "act",
    "stem in to": "stem",
    "a in group": "group a",
    "stem in group": "stem",
    "g": "g",
    "r": "r",  # in an unnamed repeat, spliced into the top-level list
    "out in outputs": "out",
    "p1 in outputs": "p1",
}


def find(text: str, context: str, word: str) -> tuple[Pos, Pos]:
    """The span of `word` (a whole word) inside the only place `context` occurs in the text."""
    assert text.count(context) == 1, context
    at = text.index(context) + re.search(rf"(?<!\w){re.escape(word)}(?!\w)", context).start()  # type: ignore[union-attr]
    line = text.count("\n", 0, at) + 1
    col = at - (text.rfind("\n", 0, at) + 1) + 1
    return (line, col), (line, col + len(word))


@functools.cache
def tiny(fmt: str) -> Analysis:
    text, name = TINY[fmt]
    a = analyze(text, name)
    assert a.diagnostics == []
    return a


@functools.cache
def zoo(path: str) -> Analysis:
    a = analyze((ROOT / path).read_text(), path)
    assert a.diagnostics == []
    return a


def middle(span: tuple[Pos, Pos]) -> Pos:
    """A position inside a span (the cursor rarely sits on a word's first character)."""
    (line, start), (_, end) = span
    return line, (start + end) // 2


@pytest.mark.parametrize("fmt", ["yaml", "net"])
@pytest.mark.parametrize("read", list(RESOLVES))
def test_definition_of_a_name_read(fmt: str, read: str) -> None:
    a = tiny(fmt)
    at = find(a.text, *READ[fmt][read])
    expected = [Target("tiny." + fmt, find(a.text, *DECLARED[fmt][RESOLVES[read]]))]
    assert definition(a, at[0]) == expected
    assert definition(a, middle(at)) == expected


@pytest.mark.parametrize("fmt", ["yaml", "net"])
def test_definition_of_a_local_block_use(fmt: str) -> None:
    a = tiny(fmt)
    use = find(a.text, "pair: {name: p1" if fmt == "yaml" else "pair(c=4)", "pair")
    key = find(a.text, "  pair:\n" if fmt == "yaml" else "block pair", "pair")
    assert definition(a, middle(use)) == [Target("tiny." + fmt, key)]


@pytest.mark.parametrize("path", ["specs/resnet18.yaml", "specs/resnet18.net"])
def test_definition_of_a_library_block_goes_to_its_key(path: str) -> None:
    a = zoo(path)
    use = find(a.text, "basic: {c: 64}" if path.endswith(".yaml") else "basic(c=64)", "basic")
    library = Path(RESNET_LIBRARY).read_text()
    assert definition(a, middle(use)) == [Target(RESNET_LIBRARY, find(library, "\n  basic:\n", "basic"))]


@pytest.mark.parametrize("path", ["specs/resnet18.yaml", "specs/resnet18.net"])
def test_definition_of_an_import_is_the_library_file(path: str) -> None:
    a = zoo(path)
    entry = find(a.text, "import: [resnet]" if path.endswith(".yaml") else "import: resnet", "resnet")
    assert definition(a, middle(entry)) == [Target(RESNET_LIBRARY, ((1, 1), (1, 1)))]


def test_definition_in_a_block_library_stays_in_its_block() -> None:
    """`bn2` and `downsample` are names in several blocks of resnet.yaml: a `from:` in basic finds basic's own."""
    text = Path(RESNET_LIBRARY).read_text()
    a = analyze(text, RESNET_LIBRARY)
    assert a.kind == "library" and a.diagnostics == []
    start = text.index("\n  basic:\n")
    body = text[start : text.index("\n  bottleneck:\n")]

    read_downsample = find(text, "from: [bn2, downsample]", "downsample")
    read_bn2 = find(text, "from: [bn2, downsample]", "bn2")
    first = text[:start].count("\n") + 2  # basic's lines: from its key to the bottleneck key
    last = first + body.count("\n")
    for read, declared in ((read_downsample, "name: downsample"), (read_bn2, "- bn: {name: bn2}")):
        (target,) = definition(a, middle(read))
        (line, col), (_, end) = target.span
        assert target.file == RESNET_LIBRARY and first <= line < read[0][0] <= last
        assert declared in a.lines[line - 1] and a.lines[line - 1][col - 1 : end - 1] == declared.split("name: ")[1].rstrip("}")
    reads_input = [n for n in range(first, last) if "from: input" in a.lines[n - 1]]
    assert len(reads_input) == 1
    assert definition(a, (reads_input[0], a.lines[reads_input[0] - 1].index("input") + 2)) == []  # `input` is no layer


def test_a_name_defined_later_has_no_definition() -> None:
    """The builder refuses a `from:` naming a later layer (no cycles), so there is nothing to go to."""
    text = "netdsl: 1\nname: t\ninput: 3x8x8\nlayers:\n  - relu: {name: a, from: b}\n  - relu: {name: b}\n"
    a = analyze(text, "t.yaml")
    assert "defined later" in a.diagnostics[0].message
    assert definition(a, find(text, "from: b", "b")[0]) == []
    assert references(a, find(text, "name: b", "b")[0], True) == [Target("t.yaml", find(text, "name: b", "b"))]


@pytest.mark.parametrize("fmt", ["yaml", "net"])
def test_references_of_a_layer_name(fmt: str) -> None:
    a = tiny(fmt)
    declared = find(a.text, *DECLARED[fmt]["stem"])
    reads = [find(a.text, *READ[fmt][r]) for r in ("stem in use", "stem in to", "stem in group")]
    expected = [Target("tiny." + fmt, span) for span in reads]
    assert references(a, middle(declared), False) == expected
    assert references(a, middle(declared), True) == [Target("tiny." + fmt, declared), *expected]
    assert references(a, middle(reads[1]), True) == [Target("tiny." + fmt, declared), *expected]  # from a use, the same


@pytest.mark.parametrize("fmt", ["yaml", "net"])
def test_references_tell_same_names_apart(fmt: str) -> None:
    """Two layers named `a` (one in the block, one in group g): each has only its own reader."""
    a = tiny(fmt)
    block_a, group_a = find(a.text, *DECLARED[fmt]["block a"]), find(a.text, *DECLARED[fmt]["group a"])
    assert references(a, middle(block_a), False) == [Target("tiny." + fmt, find(a.text, *READ[fmt]["a in block"]))]
    assert references(a, middle(group_a), False) == [Target("tiny." + fmt, find(a.text, *READ[fmt]["a in group"]))]
    h = find(a.text, *DECLARED[fmt]["h"])  # a block's declared input
    assert references(a, middle(h), True) == [Target("tiny." + fmt, h), Target("tiny." + fmt, find(a.text, *READ[fmt]["h in block"]))]


@pytest.mark.parametrize("fmt", ["yaml", "net"])
def test_references_of_a_layer_on_its_type_word(fmt: str) -> None:
    a = tiny(fmt)
    word = find(a.text, "relu: {name: r}" if fmt == "yaml" else "relu as r", "relu")
    assert references(a, middle(word), False) == [Target("tiny." + fmt, find(a.text, *READ[fmt]["r"]))]


@pytest.mark.parametrize("path", ["specs/resnet18.yaml", "specs/resnet18.net"])
def test_references_of_a_block_are_its_uses(path: str) -> None:
    a = zoo(path)
    uses = [i for i, line in enumerate(a.lines, 1) if ("basic: {c:" if path.endswith(".yaml") else "{ basic(c=") in line]
    assert len(uses) == 4
    expected = [Target(path, ((n, a.lines[n - 1].index("basic") + 1), (n, a.lines[n - 1].index("basic") + 6))) for n in uses]
    found = references(a, expected[2].span[0], False)
    assert found == expected
    library = Path(RESNET_LIBRARY).read_text()
    assert references(a, expected[0].span[0], True) == [Target(RESNET_LIBRARY, find(library, "\n  basic:\n", "basic")), *expected]


def outline(s: Symbol) -> object:
    """A symbol's name with its children's outlines (the name alone for a leaf)."""
    return (s.name, [outline(c) for c in s.children]) if s.children else s.name


RESNET18_LAYERS = [
    "conv1",
    "bn1",
    "relu",
    "maxpool",
    ("layer1", ["basic 0"]),
    ("layer2", ["basic 0"]),
    ("layer3", ["basic 0"]),
    ("layer4", ["basic 0"]),
    "avgpool",
    "fc",
]


@pytest.mark.parametrize("path", ["specs/resnet18.yaml", "specs/resnet18.net"])
def test_outline_of_resnet18(path: str) -> None:
    a = zoo(path)
    (root,) = symbols(a)
    assert outline(root) == ("resnet18", [("params", ["num_classes"]), ("layers", RESNET18_LAYERS)])
    assert (root.kind, root.detail) == ("Module", "input 3x224x224")
    params, layers = root.children
    assert (params.kind, layers.kind, params.children[0].kind, params.children[0].detail) == ("Module", "Module", "Variable", "1000")
    conv1, layer1 = layers.children[0], layers.children[4]
    assert (conv1.kind, conv1.detail) == ("Function", "conv → 64x112x112")
    assert (layer1.kind, layer1.detail) == ("Class", "repeat → 64x56x56")
    assert (layer1.children[0].kind, layer1.children[0].detail) == ("Class", "basic → 64x56x56 ×2")
    assert layers.children[-1].detail == "linear → 1000"
    # the selection is the name as written; the span the item's text, its last line trimmed
    assert conv1.selection == find(a.text, "name: conv1" if path.endswith(".yaml") else "as conv1", "conv1")
    line = conv1.span[0][0]
    text = a.lines[line - 1]
    end = len(text) + 1 if path.endswith(".yaml") else text.index(" -> bn") + 1
    assert conv1.span == ((line, text.index("conv") + 1), (line, end))


def test_outline_of_a_block_library() -> None:
    a = analyze(Path(RESNET_LIBRARY).read_text(), RESNET_LIBRARY)
    (root,) = symbols(a)
    assert (root.name, root.detail, [s.name for s in root.children]) == ("resnet", "block library", ["blocks"])
    blocks = root.children[0].children
    assert [b.name for b in blocks] == ["basic", "bottleneck", "cifar_basic", "preact_basic", "preact_bottleneck", "pyramid_basic"]
    assert blocks[0].kind == "Class" and blocks[0].detail == "c, stride"
    assert [outline(s) for s in blocks[0].children] == ["conv1", "bn1", "relu", "conv2", "bn2", ("downsample", ["conv 0", "bn 1"]), "add 6", "relu 7"]


@pytest.mark.parametrize("fmt", ["yaml", "net"])
def test_outline_of_blocks_groups_and_repeats(fmt: str) -> None:
    (root,) = symbols(tiny(fmt))
    assert outline(root) == (
        "tiny",
        [
            ("blocks", [("pair", ["a", "s"])]),
            ("layers", ["stem", "act", "p1", "mp", "up", ("g", ["a", "relu 1", "add 2"]), ("repeat 6", ["r"]), "out"]),
        ],
    )
    layers = root.children[1].children
    assert [s.kind for s in layers] == ["Function", "Function", "Class", "Function", "Function", "Class", "Class", "Function"]
    assert [s.detail for s in layers[:3]] == ["conv → 4x8x8", "relu → 4x8x8", "pair → 4x8x8"]


def inside(inner: tuple[Pos, Pos], outer: tuple[Pos, Pos]) -> bool:
    return outer[0] <= inner[0] <= inner[1] <= outer[1]


def check_nesting(s: Symbol) -> None:
    assert inside(s.selection, s.span), s
    for child in s.children:
        assert inside(child.span, s.span), (s.name, child)
        check_nesting(child)


@pytest.mark.parametrize("path", ["specs/resnet18.yaml", "specs/resnet18.net", "specs/googlenet.yaml", "specs/unet.net", "netdsl/blocks/nasnet.yaml"])
def test_outline_ranges_nest(path: str) -> None:
    """LSP clients drop an outline whose selection or children stray outside their symbol's range."""
    a = analyze((ROOT / path).read_text(), path)
    found = symbols(a)
    assert len(found) == 1 and found[0].children
    check_nesting(found[0])


@pytest.mark.parametrize(
    "text",
    [
        "a: [1, 2",  # not YAML
        "- 1\n- 2\n",  # YAML, not a spec
        "netdsl: 1\nname: t\ninput: 3x8x8\nlayers:\n  - conv: {name: c, out: 4, from: [",  # half-typed
        "netdsl: 1\nname: t\ninput: 3x8x8\nlayers:\n  - relu: {from: nowhere}\n  - conv: {name: c\x00}\n",
    ],
)
def test_bad_documents_get_answers_not_exceptions(text: str) -> None:
    a = analyze(text, "bad.yaml")
    for line in range(1, 7):
        for col in range(1, 30, 3):
            assert isinstance(definition(a, (line, col)), list)
            assert isinstance(references(a, (line, col), True), list)
    assert isinstance(symbols(a), list)


def test_an_unknown_name_has_no_definition() -> None:
    text = "netdsl: 1\nname: t\ninput: 3x8x8\nlayers:\n  - relu: {name: a}\n  - relu: {from: nowhere}\n"
    a = analyze(text, "t.yaml")
    assert definition(a, find(text, "nowhere", "nowhere")[0]) == []
    assert references(a, find(text, "nowhere", "nowhere")[0], True) == []


@pytest.mark.parametrize("fmt", ["yaml", "net"])
def test_definition_of_a_bare_reference_and_a_member(fmt: str) -> None:
    """`pad: stem` gives the reference as the primary option; `g.a` names layer a inside group g."""
    if fmt == "yaml":
        text = (
            "netdsl: 1\nname: t\ninput: 3x8x8\nlayers:\n  - conv: {name: stem, out: 4, k: 3, p: 1}\n"
            "  - group: {name: g, layers: [conv: {name: a, out: 4, k: 1}, relu]}\n  - maxpool: 2\n  - pad: stem\n  - add: {from: [g.a, stem]}\n"
        )
        bare, member, stem, a_ = ("pad: stem", "stem"), ("[g.a", "g.a"), ("name: stem", "stem"), ("name: a", "a")
    else:
        text = (
            "netdsl: 1\nname: t\ninput: 3x8x8\nconv(4, k=3, p=1) as stem\ngroup as g { conv(4, k=1) as a -> relu }\nmaxpool(2)\npad(stem)\nadd from g.a, stem\n"
        )
        bare, member, stem, a_ = ("pad(stem)", "stem"), ("from g.a", "g.a"), ("as stem", "stem"), ("as a", "a")
    a = analyze(text, "t." + fmt)
    assert a.diagnostics == []
    assert definition(a, middle(find(text, *bare))) == [Target("t." + fmt, find(text, *stem))]
    assert definition(a, middle(find(text, *member))) == [Target("t." + fmt, find(text, *a_))]


@pytest.mark.parametrize("path", ["specs/lenet5.yaml", "specs/lenet5.net"])
def test_outline_of_the_train_section(path: str) -> None:
    (root,) = symbols(zoo(path))
    train = root.children[-1]
    assert (train.name, train.kind) == ("train", "Module")
    assert [(s.name, s.kind, s.detail) for s in train.children] == [
        ("data", "Field", "digits"),
        ("optimizer", "Field", "adam"),
        ("batch_size", "Field", "64"),
        ("epochs", "Field", "15"),
        ("checkpoint", "Field", ""),
    ]
