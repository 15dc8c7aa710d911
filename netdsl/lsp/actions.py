"""Edits the server offers: the did-you-mean of a diagnostic as a quick fix, and `netdsl fmt` as the formatter."""

from __future__ import annotations

import re
from collections.abc import Sequence

from netdsl.errors import SpecError
from netdsl.lang.fmt import format_text
from netdsl.lsp.document import Analysis, Pos

_SUGGESTION = re.compile(r"did you mean '([^']+)'\?")


def quick_fix(message: str, lines: Sequence[str], span: tuple[Pos, Pos]) -> tuple[str, str] | None:
    """(title, replacement) when the message suggests a word and the range holds the word it quotes as wrong."""
    found = _SUGGESTION.search(message)
    (line, start), (end_line, end) = span
    if found is None or line != end_line or not 1 <= line <= len(lines):
        return None
    written = lines[line - 1][start - 1 : end - 1]
    quoted = re.findall(r"'([^']+)'", message[: found.start()])
    if not written or written not in quoted:
        return None
    return f"Change '{written}' to '{found.group(1)}'", found.group(1)


def formatted(a: Analysis) -> str | None:
    """The document in `netdsl fmt`'s layout, or None when it does not parse (fmt needs a spec it can read)."""
    try:
        return format_text(a.text, a.file)
    except SpecError:
        return None
