"""`netdsl lsp` end to end: a real LSP client (pytest-lsp) talks to `python -m netdsl lsp` over stdio, for a small
spec written in YAML and in the text format (.net), and for a built-in block library. One server per module."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types

from netdsl.lang.fmt import format_text
from tests.lsp_client import CONFIG, Client, apply_edits, start

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.asyncio(loop_scope="module")

TINY = {
    "yaml": """netdsl: 1
name: tiny
input: 3x8x8
import: [resnet]
layers:
  - conv: {name: stem, out: 8, k: 3, p: 1}
  - relu
  - basic: {c: 8}
  - conv: {name: head, out: 4, k: 3}
  - global_avgpool
  - linear: {name: fc, out: 10}
""",
    "net": """netdsl: 1
name: tiny
input: 3x8x8
import: resnet

conv(8, k=3, p=1) as stem
relu
basic(c=8)
conv(4, k=3) as head
global_avgpool
linear(10) as fc
""",
}
# Where layer `head` sets its kernel size (3); the tests edit it to 9, larger than the layer's 8x8 input.
HEAD_K = {"yaml": "{name: head, out: 4, k: 3}", "net": "conv(4, k=3) as head"}
SHAPE_ERROR = (
    "conv 'head': kernel 9 exceeds padded input 8x8 (input 8x8, padding 0); the input 3x8x8 is too small: the network accepts H, W >= 9 (smallest: 3x9x9)"
)
OPTIONS = "(options: out, kernel, stride, padding, dilation, groups, bias, init, name, from, frozen, when)"
HOVER_HEAD = """**conv** (conv2d) — 2-D convolution over C x H x W.

`head`: 8x8x8 → 4x6x6 · 292 parameters · 10.4k MACs

`conv2d(4, k=3, s=1, p=0, d=1)`

- `head.weight` 4x8x3x3
- `head.bias` 4"""
# (line, character, label), 0-based: each layer line's output shape at its end.
HINTS = {
    "yaml": [(5, 42, "→ 8x8x8"), (6, 8, "→ 8x8x8"), (7, 17, "→ 8x8x8"), (8, 36, "→ 4x6x6"), (9, 18, "→ 4"), (10, 31, "→ 10")],
    "net": [(5, 25, "→ 8x8x8"), (6, 4, "→ 8x8x8"), (7, 10, "→ 8x8x8"), (8, 20, "→ 4x6x6"), (9, 14, "→ 4"), (10, 16, "→ 10")],
}
FORMATS = ["yaml", "net"]


@pytest_lsp.fixture(config=CONFIG, scope="module")
async def client(lsp_client: Client):  # type: ignore[no-untyped-def]
    await start(lsp_client)
    yield
    await lsp_client.shutdown_session()


def find(text: str, needle: str, offset: int = 0) -> tuple[int, int]:
    """The 0-based (line, character) of `needle` (plus `offset` characters) in text; it must occur once."""
    assert text.count(needle) == 1, needle
    at = text.index(needle) + offset
    line = text.count("\n", 0, at)
    return line, at - (text.rfind("\n", 0, at) + 1)


def span(r: types.Range) -> tuple[int, int, int, int]:
    return (r.start.line, r.start.character, r.end.line, r.end.character)


def open_tiny(client: Client, tmp_path: Path, fmt: str, name: str) -> tuple[str, str]:
    path = tmp_path / f"{name}.{fmt}"
    path.write_text(TINY[fmt])
    uri = path.as_uri()
    client.open(uri, TINY[fmt], "yaml" if fmt == "yaml" else "netdsl")
    return uri, TINY[fmt]


@pytest.mark.parametrize("fmt", FORMATS)
async def test_shape_error_appears_at_its_range_and_goes_away_on_undo(client: Client, tmp_path: Path, fmt: str) -> None:
    uri, text = open_tiny(client, tmp_path, fmt, "shape")
    assert list(await client.diagnostics_of(uri, 1)) == []
    k_at = find(text, HEAD_K[fmt], HEAD_K[fmt].index("3"))
    version = client.edit(uri, k_at, (k_at[0], k_at[1] + 1), "9")
    diagnostics = await client.diagnostics_of(uri, version)
    assert [d.message for d in diagnostics] == [SHAPE_ERROR]
    d = diagnostics[0]
    conv = find(text, HEAD_K[fmt] if fmt == "net" else "conv: {name: head")  # the front end locates the layer's type word
    assert span(d.range) == (conv[0], conv[1], conv[0], conv[1] + len("conv"))
    assert (d.severity, d.source, d.code) == (types.DiagnosticSeverity.Error, "netdsl", "shape")
    version = client.edit(uri, k_at, (k_at[0], k_at[1] + 1), "3")  # undo
    assert list(await client.diagnostics_of(uri, version)) == []
    client.close(uri)


@pytest.mark.parametrize("fmt", FORMATS)
async def test_did_you_mean_is_a_quick_fix_replacing_exactly_the_token(client: Client, tmp_path: Path, fmt: str) -> None:
    wrong = TINY[fmt].replace(HEAD_K[fmt], HEAD_K[fmt].replace("k", "kernal", 1))
    path = tmp_path / f"typo.{fmt}"
    uri = path.as_uri()
    client.open(uri, wrong, "yaml" if fmt == "yaml" else "netdsl")
    (d,) = await client.diagnostics_of(uri, 1)
    assert d.message == f"conv 'head': 'kernal' is not a conv option; did you mean 'kernel'? {OPTIONS}"
    at = find(wrong, "kernal")
    assert span(d.range) == (at[0], at[1], at[0], at[1] + len("kernal"))
    actions = await client.text_document_code_action_async(
        types.CodeActionParams(text_document=types.TextDocumentIdentifier(uri=uri), range=d.range, context=types.CodeActionContext(diagnostics=[d]))
    )
    assert actions is not None and len(actions) == 1
    (action,) = actions
    assert isinstance(action, types.CodeAction)
    assert (action.title, action.kind, action.is_preferred) == ("Change 'kernal' to 'kernel'", types.CodeActionKind.QuickFix, True)
    assert action.edit is not None and action.edit.changes is not None
    (edit,) = action.edit.changes[uri]
    assert (span(edit.range), edit.new_text) == (span(d.range), "kernel")
    fixed = apply_edits(wrong, [edit])
    assert fixed == TINY[fmt].replace(HEAD_K[fmt], HEAD_K[fmt].replace("k", "kernel", 1))
    version = client.replace_all(uri, fixed)
    assert list(await client.diagnostics_of(uri, version)) == []
    client.close(uri)


@pytest.mark.parametrize("fmt", FORMATS)
async def test_hover_on_a_layer_shows_doc_shapes_parameters_and_paths(client: Client, tmp_path: Path, fmt: str) -> None:
    uri, text = open_tiny(client, tmp_path, fmt, "hover")
    await client.diagnostics_of(uri, 1)
    conv = find(text, HEAD_K[fmt] if fmt == "net" else "conv: {name: head")
    found = await client.hover_at(uri, conv[0], conv[1] + 2)
    assert found is not None and isinstance(found.contents, types.MarkupContent)
    assert found.contents.kind == types.MarkupKind.Markdown
    assert found.contents.value == HOVER_HEAD
    assert found.range is not None and span(found.range) == (conv[0], conv[1], conv[0], conv[1] + len("conv"))
    client.close(uri)


@pytest.mark.parametrize("fmt", FORMATS)
async def test_inlay_hints_are_each_layer_lines_output_shape(client: Client, tmp_path: Path, fmt: str) -> None:
    uri, text = open_tiny(client, tmp_path, fmt, "inlay")
    await client.diagnostics_of(uri, 1)
    hints = await client.inlay_hints(uri, len(text.splitlines()))
    assert [(h.position.line, h.position.character, h.label) for h in hints] == HINTS[fmt]
    lines = text.splitlines()
    assert all(h.position.character == len(lines[h.position.line]) for h in hints)  # at the end of the line
    assert {h.kind for h in hints} == {types.InlayHintKind.Type}
    client.close(uri)


@pytest.mark.parametrize("fmt", FORMATS)
async def test_formatting_returns_the_netdsl_fmt_text(client: Client, tmp_path: Path, fmt: str) -> None:
    messy = TINY[fmt].replace("{name: stem, out: 8", "{ name: stem,out: 8").replace("conv(8, k=3, p=1)", "conv( 8,k=3,p=1 )")
    assert messy != TINY[fmt]
    path = tmp_path / f"messy.{fmt}"
    path.write_text(messy)
    uri = path.as_uri()
    client.open(uri, messy, "yaml" if fmt == "yaml" else "netdsl")
    await client.diagnostics_of(uri, 1)
    options = types.FormattingOptions(tab_size=2, insert_spaces=True)
    edits = await client.text_document_formatting_async(types.DocumentFormattingParams(text_document=types.TextDocumentIdentifier(uri=uri), options=options))
    assert edits
    expected = format_text(messy, str(path))
    assert apply_edits(messy, edits) == expected == TINY[fmt]
    version = client.replace_all(uri, expected)
    await client.diagnostics_of(uri, version)
    again = await client.text_document_formatting_async(types.DocumentFormattingParams(text_document=types.TextDocumentIdentifier(uri=uri), options=options))
    assert list(again or []) == []  # already formatted: nothing to change
    client.close(uri)


async def test_a_block_library_gets_no_diagnostics_and_hovers_on_its_layers(client: Client) -> None:
    path = ROOT / "netdsl" / "blocks" / "resnet.yaml"
    text = path.read_text()
    uri = path.as_uri()
    client.open(uri, text)
    assert list(await client.diagnostics_of(uri, 1)) == []
    at = text.index("conv: {name: conv1", text.index("\n  basic:\n"))  # the first layer of block `basic`
    conv = (text.count("\n", 0, at), at - text.rfind("\n", 0, at) - 1)
    found = await client.hover_at(uri, conv[0], conv[1] + 1)
    assert found is not None and isinstance(found.contents, types.MarkupContent)
    value = found.contents.value
    assert value.startswith("**conv** (conv2d, in block `basic`) — 2-D convolution over C x H x W.\n\n- `out`, `out_channels` (required): output channels\n")
    assert "- `kernel`, `k` (default `3`): kernel size (int or per-dim list)" in value.splitlines()
    assert found.range is not None and span(found.range) == (conv[0], conv[1], conv[0], conv[1] + len("conv"))
    client.close(uri)


@pytest.mark.parametrize("fmt", FORMATS)
async def test_completion_at_a_layer_type_offers_layer_types_and_imported_blocks(client: Client, tmp_path: Path, fmt: str) -> None:
    uri, text = open_tiny(client, tmp_path, fmt, "complete")
    await client.diagnostics_of(uri, 1)
    relu = find(text, "- relu\n" if fmt == "yaml" else "relu\n")
    typed = "\n  - " if fmt == "yaml" else "\n"  # a new item under `relu`, its type not typed yet
    end_of_relu = (relu[0], len(text.splitlines()[relu[0]]))
    client.edit(uri, end_of_relu, end_of_relu, typed)  # not waiting for its check: the editor asks at once
    at = types.Position(line=relu[0] + 1, character=len(typed) - 1)
    found = await client.text_document_completion_async(types.CompletionParams(text_document=types.TextDocumentIdentifier(uri=uri), position=at))
    assert isinstance(found, types.CompletionList)
    items = {item.label: item for item in found.items}
    conv = items["conv"]
    assert (conv.kind, conv.detail) == (types.CompletionItemKind.Class, "2-D convolution over C x H x W. (conv2d)")
    assert isinstance(conv.documentation, types.MarkupContent) and "- `out` (out_channels): output channels; required" in conv.documentation.value
    for block in ("basic", "bottleneck"):  # the blocks of `import: resnet`
        assert items[block].kind == types.CompletionItemKind.Module
    assert items["basic"].detail == "two 3x3 convs; a 1x1 projection shortcut (downsample) when stride or channels change (ResNet-18/34)"
    assert {"relu", "linear", "maxpool", "global_avgpool"} <= set(items)
    assert not {"out", "kernel", "name", "from"} & set(items)  # keys are not offered where a type goes
    client.close(uri)


@pytest.mark.parametrize("fmt", FORMATS)
async def test_definition_of_a_block_use_is_its_key_in_the_library(client: Client, tmp_path: Path, fmt: str) -> None:
    uri, text = open_tiny(client, tmp_path, fmt, "definition")
    await client.diagnostics_of(uri, 1)
    use = find(text, "basic")
    found = await client.text_document_definition_async(
        types.DefinitionParams(text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=use[0], character=use[1] + 2))
    )
    library = ROOT / "netdsl" / "blocks" / "resnet.yaml"
    library_text = library.read_text()
    key = find(library_text, "\n  basic:\n", 3)  # the `basic` of `  basic:`
    assert isinstance(found, list) and len(found) == 1
    (target,) = found
    assert isinstance(target, types.Location)
    assert target.uri == library.as_uri()
    assert span(target.range) == (key[0], key[1], key[0], key[1] + len("basic"))
    client.close(uri)


@pytest.mark.parametrize("fmt", FORMATS)
async def test_several_errors_at_once_each_with_its_quick_fix(client: Client, tmp_path: Path, fmt: str) -> None:
    wrong = TINY[fmt].replace("relu", "relux").replace("global_avgpool", "global_avgpol")
    uri = (tmp_path / f"two.{fmt}").as_uri()
    client.open(uri, wrong, "yaml" if fmt == "yaml" else "netdsl")
    diagnostics = await client.diagnostics_of(uri, 1)
    hint = "(see `netdsl schema`, or define a block named '{}')"
    assert [d.message for d in diagnostics] == [
        f"unknown layer type 'relux'; did you mean 'relu'? {hint.format('relux')}",
        f"unknown layer type 'global_avgpol'; did you mean 'global_avgpool'? {hint.format('global_avgpol')}",
    ]
    starts = [find(wrong, "relux"), find(wrong, "global_avgpol")]
    assert [span(d.range) for d in diagnostics] == [(s[0], s[1], s[0], s[1] + len(w)) for s, w in zip(starts, ["relux", "global_avgpol"])]
    whole = types.Range(start=types.Position(line=0, character=0), end=types.Position(line=len(wrong.splitlines()), character=0))
    actions = await client.text_document_code_action_async(
        types.CodeActionParams(text_document=types.TextDocumentIdentifier(uri=uri), range=whole, context=types.CodeActionContext(diagnostics=list(diagnostics)))
    )
    assert actions is not None
    assert [a.title for a in actions] == ["Change 'relux' to 'relu'", "Change 'global_avgpol' to 'global_avgpool'"]
    edits = [e for a in actions if isinstance(a, types.CodeAction) and a.edit and a.edit.changes for e in a.edit.changes[uri]]
    assert apply_edits(wrong, edits) == TINY[fmt]
    client.close(uri)


@pytest.mark.parametrize("fmt", FORMATS)
async def test_hover_on_a_block_use_shows_its_doc_values_here_and_totals(client: Client, tmp_path: Path, fmt: str) -> None:
    uri, text = open_tiny(client, tmp_path, fmt, "block")
    await client.diagnostics_of(uri, 1)
    use = find(text, "basic")
    found = await client.hover_at(uri, use[0], use[1] + 1)
    assert found is not None and isinstance(found.contents, types.MarkupContent)
    line = find((ROOT / "netdsl" / "blocks" / "resnet.yaml").read_text(), "\n  basic:\n", 3)[0] + 1
    assert found.contents.value == (
        f"**basic** (defined at resnet.yaml:{line}) — two 3x3 convs; a 1x1 projection shortcut (downsample) when stride or channels change (ResNet-18/34)\n\n"
        "`2` → 8x8x8 · 1,184 parameters · 73.7k MACs\n\n"  # 2 x (8x8x3x3 conv + 8+8 batch norm); 2 x 8x8 x 8x8x3x3 MACs
        "- `c` = `8`\n- `stride` = `1`"
    )
    assert found.range is not None and span(found.range) == (use[0], use[1], use[0], use[1] + len("basic"))
    client.close(uri)
