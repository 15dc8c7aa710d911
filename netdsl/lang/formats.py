"""The two spellings of a spec, chosen by file suffix: `.net` is the text format, anything else YAML."""

from __future__ import annotations

import os
from typing import Any, Literal

from netdsl.lang.yaml_tree import load_yaml

Format = Literal["yaml", "net"]
TEXT_SUFFIX = ".net"


def format_of(path: str | os.PathLike[str]) -> Format:
    """'net' for a .net file, 'yaml' otherwise (.yaml, .yml, or anything else)."""
    return "net" if str(path).endswith(TEXT_SUFFIX) else "yaml"


def parse_tree(text: str, file: str, fmt: Format | None = None) -> Any:
    """The raw tree (YMap/YList/scalars with positions) of spec text in either format; raises SpecError."""
    if (fmt or format_of(file)) == "net":
        from netdsl.lang.text import parse_net  # lark is imported only when a .net file is read

        return parse_net(text, file)
    return load_yaml(text, file)
