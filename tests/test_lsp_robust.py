"""`netdsl lsp` on bad input, over stdio: text that is not a spec, a binary file, a half-typed line, an import that
cannot be read, a 2 MB document, and 1,000 random incremental edits sent without waiting. Each gets diagnostics and
the server keeps answering. One server per module."""

from __future__ import annotations

import random
import re
import time
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types

from netdsl.lsp.document import analyze
from tests.lsp_client import CONFIG, Client, start

pytestmark = pytest.mark.asyncio(loop_scope="module")
MAPPING = "a spec must be a mapping with keys netdsl, name, input, layers; got"
HALF = {
    "yaml": "netdsl: 1\nname: t\ninput: 3x8x8\nlayers:\n  - conv: {out: 8, k: 3}\n  - conv: {out: 8, k\n",
    "net": "netdsl: 1\nname: t\ninput: 3x8x8\n\nconv(8, k=3)\nconv(8, k=\n",
}
MISSING = {"yaml": "import: [./missing.yaml]", "net": "import: ./missing.yaml"}
SPEC = "netdsl: 1\nname: t\ninput: 3x8x8\n{import}\nlayers:\n  - conv: {name: c1, out: 8, k: 3, p: 1}\n  - relu\n"
SPEC_NET = "netdsl: 1\nname: t\ninput: 3x8x8\n{import}\n\nconv(8, k=3, p=1) as c1\nrelu\n"
# (first message, its 0-based start (line, character)) for each bad document, per format.
EXPECTED: dict[str, dict[str, tuple[str, tuple[int, int]]]] = {
    "not a spec": {"yaml": ("YAML syntax error: did not find expected ',' or ']'", (0, 8)), "net": ("unexpected end of file; expected ',' or ']'", (0, 8))},
    "any yaml": {
        "yaml": (f"{MAPPING} a list [1, 2]", (0, 0)),
        "net": ("unexpected '-'; expected a name or a new line", (0, 0)),
    },
    "half-typed": {
        "yaml": ("YAML syntax error: did not find expected ',' or '}'", (6, 0)),
        "net": ("unexpected end of file; expected a value", (5, 10)),
    },
    "missing import": {
        "yaml": ("cannot read block library './missing.yaml': no such file", (3, 9)),
        "net": ("cannot read block library './missing.yaml': no such file", (3, 8)),
    },
}
DOCUMENTS = {
    "not a spec": {"yaml": "a: [1, 2", "net": "a: [1, 2"},
    "any yaml": {"yaml": "- 1\n- 2\n", "net": "- 1\n- 2\n"},
    "half-typed": HALF,
    "missing import": {"yaml": SPEC.replace("{import}", MISSING["yaml"]), "net": SPEC_NET.replace("{import}", MISSING["net"])},
}


@pytest_lsp.fixture(config=CONFIG, scope="module")
async def client(lsp_client: Client):  # type: ignore[no-untyped-def]
    await start(lsp_client)
    yield
    await lsp_client.shutdown_session()


async def still_answers(client: Client, uri: str) -> None:
    """A hover right after: the server answers (None or a hover) within 3 s (a second when idle)."""
    start_s = time.perf_counter()
    found = await client.hover_at(uri, 0, 0)
    assert found is None or isinstance(found, types.Hover)
    assert time.perf_counter() - start_s < 3.0


@pytest.mark.parametrize("fmt", ["yaml", "net"])
@pytest.mark.parametrize("case", list(DOCUMENTS))
async def test_bad_documents_get_located_diagnostics(client: Client, tmp_path: Path, case: str, fmt: str) -> None:
    text = DOCUMENTS[case][fmt]
    uri = (tmp_path / f"bad.{fmt}").as_uri()
    client.open(uri, text)
    diagnostics = await client.diagnostics_of(uri, 1)
    message, (line, character) = EXPECTED[case][fmt]
    assert diagnostics, case
    first = diagnostics[0]
    assert (first.message, first.range.start.line, first.range.start.character) == (message, line, character)
    assert first.severity == types.DiagnosticSeverity.Error
    await still_answers(client, uri)
    client.close(uri)


@pytest.mark.parametrize("fmt", ["yaml", "net"])
async def test_a_binary_file_gets_a_diagnostic(client: Client, tmp_path: Path, fmt: str) -> None:
    data = random.Random(17).randbytes(2000) + b"\x00\x00PNG\x00"
    text = data.decode("utf-8", errors="replace")
    assert "\x00" in text and "\ufffd" in text
    uri = (tmp_path / f"binary.{fmt}").as_uri()
    client.open(uri, text)
    diagnostics = await client.diagnostics_of(uri, 1)
    assert len(diagnostics) >= 1
    assert [d.message for d in diagnostics] == [d.message for d in analyze(text, f"/x/binary.{fmt}").diagnostics]
    first = diagnostics[0]
    if fmt == "yaml":
        assert (first.message, first.range.start.line, first.range.start.character) == (
            "control character U+0006 is not allowed in YAML text (remove it)",
            0,
            6,
        )
    else:
        assert (first.message, first.range.start.line, first.range.start.character) == ("unexpected character '\ufffd'; expected a name or a new line", 0, 0)
    await still_answers(client, uri)
    client.close(uri)


async def test_a_2_mb_document_is_refused_with_a_diagnostic(client: Client, tmp_path: Path) -> None:
    text = "netdsl: 1\nname: t\ninput: 3x8x8\nlayers:\n" + "  - relu\n" * 230_000
    assert len(text) > 2_000_000
    uri = (tmp_path / "big.yaml").as_uri()
    client.open(uri, text)
    (d,) = await client.diagnostics_of(uri, 1)
    assert d.message == "the document has more than 1 MB (netdsl reads at most that; NETDSL_MAX_SPEC_BYTES raises it)"
    assert (d.range.start.line, d.range.start.character) == (0, 0)
    await still_answers(client, uri)
    client.close(uri)


# -- 1,000 random edits ---------------------------------------------------------------------------------------------

LINE_BREAK = re.compile(r"\r\n|\r|\n")  # what LSP counts as a line break
PIECES = [
    "conv",
    "relu",
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    " ",
    "  - ",
    "k: 3",
    "out: 9",
    "x",
    "1",
    "(",
    ")",
    "=",
    "->",
    "#",
    "'",
    '"',
    "é",
    "中",
    "→",
    "🙂",
    "\x00",
    "\t",
    "\n",
    "\r\n",
    "\r",
    "\x0c",
    "\u2028",
    "\x85",
    "\x1e",
]


def lsp_lines(text: str) -> list[str]:
    return LINE_BREAK.split(text)


def offset(lines: list[str], text: str, line: int, col: int) -> int:
    """The offset in text of (line, code-point column)."""
    at = 0
    for _ in range(line):
        m = LINE_BREAK.search(text, at)
        assert m is not None
        at = m.end()
    return at + col


def utf16(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


def random_edit(rng: random.Random, text: str) -> tuple[tuple[int, int], tuple[int, int], str, str]:
    """A random incremental edit of text: (start, end) in LSP units (UTF-16), the inserted text, and the new text."""
    lines = lsp_lines(text)
    a_line = rng.randrange(len(lines))
    a_col = rng.randint(0, len(lines[a_line]))
    kind = rng.random()
    if kind < 0.5:  # insert
        b_line, b_col = a_line, a_col
        new = "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 4)))
    elif kind < 0.8:  # delete a few characters, maybe across a line break
        b_line = min(len(lines) - 1, a_line + (rng.random() < 0.2))
        b_col = min(len(lines[b_line]), (a_col if b_line == a_line else 0) + rng.randint(0, 6))
        new = ""
    else:  # delete or duplicate whole lines
        b_line, b_col = min(len(lines) - 1, a_line + rng.randint(0, 2)), 0
        a_col = 0
        new = "" if rng.random() < 0.6 else lines[a_line] + "\n"
    start, end = offset(lines, text, a_line, a_col), offset(lines, text, b_line, b_col)
    result = text[:start] + new + text[end:]
    return (a_line, utf16(lines[a_line][:a_col])), (b_line, utf16(lines[b_line][:b_col])), new, result


@pytest.mark.parametrize("fmt", ["yaml", "net"])
async def test_1000_random_edits_then_the_server_still_answers(client: Client, tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"fuzz.{fmt}"
    text = SPEC.replace("{import}", "import: [resnet]") if fmt == "yaml" else SPEC_NET.replace("{import}", "import: resnet")
    uri = path.as_uri()
    client.open(uri, text)
    rng = random.Random(1017 if fmt == "yaml" else 2017)
    start_s = time.perf_counter()
    for _ in range(1000):
        a, b, new, text = random_edit(rng, text)
        client.edit(uri, a, b, new)
    found = await client.hover_at(uri, 0, 0)
    assert found is None or isinstance(found, types.Hover)
    version = client.versions[uri]
    assert version == 1001
    diagnostics = await client.diagnostics_of(uri, version, timeout=15)
    assert time.perf_counter() - start_s < 20
    # the server's text is ours: its diagnostics for the final version are those of the same text checked in-process
    expected = [
        (max(e.loc.line - 1, 0), e.message + (f" ({e.note})" if e.note else ""))
        for e in analyze(text, str(path)).diagnostics
        if e.loc.file == str(path) or e.loc.line == 0
    ]
    assert expected, "the edits should leave a broken document"
    assert [(d.range.start.line, d.message) for d in diagnostics if d.related_information is None] == expected
    # and it keeps working on the document: replace it with a good spec
    good = SPEC.replace("{import}", "") if fmt == "yaml" else SPEC_NET.replace("{import}", "")
    version = client.replace_all(uri, good)
    assert list(await client.diagnostics_of(uri, version)) == []
    hover = await client.hover_at(uri, *next((i, line.index("conv") + 1) for i, line in enumerate(good.splitlines()) if "conv" in line))
    assert hover is not None and "`c1`: 3x8x8 → 8x8x8 · 224 parameters" in str(hover.contents)
    client.close(uri)


@pytest.mark.parametrize("separator", ["\x0b", "\x0c", "\x1c", "\x85", "\u2028"])
async def test_an_edit_below_a_form_feed_or_unicode_line_separator_lands_where_the_editor_put_it(client: Client, tmp_path: Path, separator: str) -> None:
    """LSP breaks lines only at \\n, \\r\\n and \\r; Python's str.splitlines also at \\v, \\f, \\x1c-\\x1e, \\x85, \\u2028,
    \\u2029. A comment holding one of those must not shift where an incremental edit below it lands."""
    text = f"# a{separator}b\nnetdsl: 1\nname: t\ninput: 3x8x8\n\nconv(8, k=3) as c1\n"
    path = tmp_path / "separator.net"
    uri = path.as_uri()
    client.open(uri, text)
    assert list(await client.diagnostics_of(uri, 1)) == []
    line, character = 5, text.split("\n")[5].index("k=3") + 2
    version = client.edit(uri, (line, character), (line, character + 1), "9")
    diagnostics = await client.diagnostics_of(uri, version)
    expected = analyze(text.replace("k=3", "k=9"), str(path)).diagnostics
    assert [d.message for d in diagnostics] == [e.message for e in expected]
    assert [d.message for d in diagnostics] == [
        "conv 'c1': kernel 9 exceeds padded input 8x8 (input 8x8, padding 0); the input 3x8x8 is too small: the network accepts H, W >= 9 (smallest: 3x9x9)"
    ]
    client.close(uri)
