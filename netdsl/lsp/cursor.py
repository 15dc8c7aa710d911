"""Where the cursor stands in a document being typed, read from its text alone (mid-edit it seldom parses): the path of
keys from the root to the mapping or value under the cursor, the keys already written there, and the layer names in
scope. An indentation-and-bracket scan for YAML, a token scan for .net; each reads the text once, up to the cursor.

Paths spell both formats alike: `('layers', ITEM, 'conv')` is the argument mapping of a `conv` item of the spec's
layer list, whether written `- conv: {k: 3}` or `conv(k=3)`; `('blocks', 'basic', 'layers')` a block's layer list.
"""

from __future__ import annotations

import re
from dataclasses import replace

from netdsl.lsp.cursor_net import NetScan
from netdsl.lsp.cursor_scan import ITEM, POSITIONAL, Context, Scan, is_layer_list, item_word
from netdsl.lsp.cursor_yaml import YamlScan

PARTIAL = re.compile(r"[A-Za-z0-9_]*$")  # the word being typed, left out of the scan


def context(text: str, at: tuple[int, int], net: bool) -> Context | None:
    """The context at `at` (1-based line and column in code points), or None where nothing can be proposed."""
    lines = re.split(r"\r\n|\r|\n", text)
    line, col = at
    if not 1 <= line <= len(lines):
        return None
    prefix, suffix = lines[line - 1][: col - 1], lines[line - 1][col - 1 :]
    prefix = prefix[: len(prefix) - len(PARTIAL.search(prefix).group())]  # type: ignore[union-attr]
    suffix = suffix[len(re.match(r"[A-Za-z0-9_]*", suffix).group()) :]  # type: ignore[union-attr]
    scan: Scan = NetScan() if net else YamlScan()
    found = scan.run(lines[: line - 1], prefix, [suffix, *lines[line:]])
    if found is not None and not net and prefix.endswith((":", "-")):
        return replace(found, pad=" ")
    return found


__all__ = ["ITEM", "POSITIONAL", "Context", "context", "is_layer_list", "item_word"]
