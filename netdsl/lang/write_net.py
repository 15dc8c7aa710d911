"""Write a raw spec tree in the text format (.net): the inverse of netdsl/lang/text.py.

Every construct is written the way the parser reads it back to the same tree: `{conv: {name: c1, out: 64, k: 3}}`
is `conv(64, k=3) as c1`, a repeat's `layers` is its `{ ... }` body, `blocks` are `block` definitions. A tree the
text format cannot hold (a layer item that is not a one-key mapping, a key that is not a word) is refused with
its position. Layout: a body sits on one line when its source list did; items the source put on one line form a
chain, and with `chains=True` (converting from YAML) a chain also runs on through layers without weights and
normalizations: `conv(64, k=3, p=1) -> bn -> relu`.
"""

from __future__ import annotations

import json
import math
import re
from functools import lru_cache
from typing import Any

from netdsl.errors import Diagnostic, Loc, SpecError
from netdsl.lang.layout import Line, Note, blank, is_inline
from netdsl.lang.text import primary_option
from netdsl.lang.yaml_tree import YList, YMap
from netdsl.layers import LAYERS, canonical

CHAIN_WIDTH = 100  # a chain grown by `chains=True` stops before this column
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+")
_REF = re.compile(r"/?[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")
_PATH = re.compile(r"[A-Za-z0-9_.\/\-]*[A-Za-z0-9_\-]\.(yaml|yml|net)")
RESERVED = ("block", "import")  # statement keywords: not usable as a layer type or setting name


class NetWriter:
    """Writes one tree; `notes` (the source's comments and blank lines) keep chains from swallowing a comment."""

    def __init__(self, file: str, notes: list[Note], chains: bool):
        self.file = file
        self.chains = chains
        self.breaks = {n.line for n in notes}  # lines with a comment or a blank: a chain never runs across one

    def refuse(self, loc: Loc | None, what: str) -> SpecError:
        return SpecError([Diagnostic(loc or Loc(self.file, 1, 1), f"cannot write this in the text format: {what}")])

    # -- the file --------------------------------------------------------------------------------------------------
    def spec(self, tree: Any) -> list[Line]:
        if tree is None:
            return []
        if not isinstance(tree, YMap):
            raise self.refuse(getattr(tree, "loc", None), "a spec is a mapping of settings, blocks and layers")
        lines: list[Line] = []
        previous = ""
        for key, value in tree.items():
            kind = self.section(key, value, tree.key_locs[key])
            if lines and (kind != previous or kind == "block"):
                lines.append(blank())
            previous = kind
            if kind == "block":
                for i, (name, definition) in enumerate(value.items()):
                    if i:
                        lines.append(blank())
                    lines += self.block(name, definition, value.key_locs[name])
            elif kind == "layers":
                lines += self.items(value, 0)
            elif key == "import":
                names = ", ".join(n if _PATH.fullmatch(n) or _WORD.fullmatch(n) else json.dumps(n) for n in value)
                lines.append(Line(0, f"import: {names}".rstrip(), tree.key_locs[key]))
            elif isinstance(value, YMap) and value and not _on_key_line(value, tree.key_locs[key]):
                lines += self.mapping_lines(key, value, tree.key_locs[key])
            else:
                lines.append(Line(0, f"{key}: {self.setting(value)}".rstrip(), tree.key_locs[key]))
        return lines

    def mapping_lines(self, key: str, value: YMap, loc: Loc) -> list[Line]:
        """A setting whose mapping the source spread over lines (`train:` in YAML block style): one entry a line."""
        entries = [Line(2, f"{self.key(k)}: {self.value(v)},", value.key_locs[k]) for k, v in value.items()]
        return [Line(0, f"{key}: {{", loc), *entries, Line(0, "}", closer=True)]

    def section(self, key: str, value: Any, loc: Loc) -> str:
        if key == "blocks" and isinstance(value, YMap) and value and all(isinstance(v, YMap) for v in value.values()):
            return "block"
        if key == "layers" and isinstance(value, YList) and value:
            return "layers"
        if key == "import" and not (isinstance(value, list) and all(isinstance(n, str) for n in value)):
            raise self.refuse(loc, "'import' must be a list of names")
        if not _WORD.fullmatch(key) or key == "block":
            raise self.refuse(loc, f"the setting '{key}' is not a word")
        return "setting"

    def setting(self, value: Any) -> str:
        if isinstance(value, YMap) and value and all(isinstance(k, str) for k in value):
            return ", ".join(f"{self.key(k)}={self.value(v)}" for k, v in value.items())
        return "" if value is None else self.value(value)

    # -- blocks ----------------------------------------------------------------------------------------------------
    def block(self, name: str, definition: YMap, loc: Loc) -> list[Line]:
        unknown = [k for k in definition if k not in ("doc", "params", "inputs", "layers")]
        doc, params, layers = definition.get("doc"), definition.get("params"), definition.get("layers")
        if unknown or not _WORD.fullmatch(name) or (doc is not None and not isinstance(doc, str)) or not isinstance(layers, YList):
            raise self.refuse(loc, f"block '{name}' must have a word for a name, a string doc, params and a layers list")
        head = f"block {name}"
        if "params" in definition:
            if not isinstance(params, YMap) or not all(isinstance(k, str) and _WORD.fullmatch(k) for k in params):
                raise self.refuse(loc, f"block '{name}': params must map names to defaults")
            head += "(" + ", ".join(self.param(k, v) for k, v in params.items()) + ")"
        if "inputs" in definition:
            inputs = definition["inputs"]
            if not isinstance(inputs, list) or not inputs or not all(isinstance(n, str) for n in inputs):
                raise self.refuse(loc, f"block '{name}': inputs must be a list of names")
            head += " from " + ", ".join(n if _WORD.fullmatch(n) else json.dumps(n) for n in inputs)
        covers = (definition.key_locs["params"].line,) if "params" in definition else ()
        lines = [Line(0, head + " {", loc, covers=covers)]
        if "doc" in definition:
            lines.append(Line(2, json.dumps(doc, ensure_ascii=False), definition.key_locs["doc"]))
        lines += self.items(layers, 2)
        return [*lines, Line(0, "}", closer=True)]

    def param(self, name: str, value: Any) -> str:
        """`out`, `k=3`, or a declaration `act: [relu, relu6] "doc" = relu`."""
        if not isinstance(value, YMap):
            return name if value is None else f"{name}={self.value(value)}"
        if set(value) - {"default", "choices", "doc"} or not isinstance(value.get("doc", ""), str):
            raise self.refuse(value.loc, f"parameter '{name}': a declaration has default, choices and doc only")
        text = name
        if "choices" in value:
            text += f": {self.value(value['choices'])}"
        if "doc" in value:
            text += " " + json.dumps(value["doc"], ensure_ascii=False)
        if value.get("default") is not None:
            text += f" = {self.value(value['default'])}"
        return text

    # -- layer lists -----------------------------------------------------------------------------------------------
    def items(self, items: YList, indent: int) -> list[Line]:
        """A layer list, one chain per line."""
        lines: list[Line] = []
        chain: list[tuple[str, Loc]] = []

        def flush() -> None:
            if chain:
                lines.append(Line(indent, " -> ".join(text for text, _ in chain), chain[0][1]))
                chain.clear()

        for item, loc in zip(items, items.item_locs):
            head, body = self.item(item, loc)
            if chain and (body is not None or not self.joins(item, loc, chain[-1][1], indent + len(" -> ".join(t for t, _ in [*chain, (head, loc)])))):
                flush()
            if body is None:
                chain.append((head, loc))
            elif is_inline(next(iter(item.values()))):
                lines.append(Line(indent, f"{head} {{ {self.inline(body)} }}", loc))
            else:
                lines += [Line(indent, head + " {", loc), *self.items(body, indent + 2), Line(indent, "}", closer=True)]
        flush()
        return lines

    def inline(self, body: YList) -> str:
        parts = []
        for item, loc in zip(body, body.item_locs):
            head, inner = self.item(item, loc)
            parts.append(head if inner is None else f"{head} {{ {self.inline(inner)} }}")
        return " -> ".join(parts)

    def joins(self, item: Any, loc: Loc, previous: Loc, width: int) -> bool:
        """Whether an item continues the chain of the item before it (written `width` columns wide with it)."""
        if loc.line == previous.line:
            return True
        if not self.chains or width > CHAIN_WIDTH or any(previous.line <= n < loc.line for n in self.breaks):
            return False  # a comment or a blank line in between, or a trailing comment, ends the chain
        word = item if isinstance(item, str) else next(iter(item))
        opts = item[word] if isinstance(item, YMap) else None
        layer = canonical(word)
        if layer is None or (isinstance(opts, YMap) and "from" in opts):
            return False  # blocks, group, repeat, and layers that read another input start a line
        cls = LAYERS[layer]
        return not cls.has_weights or cls.__module__.endswith(".norm")

    def item(self, item: Any, loc: Loc) -> tuple[str, YList | None]:
        """An item's text up to its body, and the body (a layers list) if it has one."""
        if isinstance(item, str) and _WORD.fullmatch(item) and item not in RESERVED:
            return item, None
        if not (isinstance(item, YMap) and len(item) == 1):
            raise self.refuse(loc, "a layer item is a type word or a one-key mapping {type: options}")
        word, opts = next(iter(item.items()))
        if not _WORD.fullmatch(word) or word in RESERVED:
            raise self.refuse(loc, f"the layer type '{word}' is not a word")
        if not isinstance(opts, YMap):
            return f"{word}({self.value(opts)})", None
        args: list[str] = []
        tail = ""
        body = opts.get("layers") if isinstance(opts.get("layers"), YList) else None
        primary = primary_option(word)
        if primary is not None and primary in opts and len(opts) > 1:
            args.append(self.value(opts[primary]))
        for key, value in opts.items():
            if key == "name" and isinstance(value, str) and value:
                tail += f" as {value if _NAME.fullmatch(value) else json.dumps(value)}"
            elif key == "from" and self.refs(value) is not None:
                tail += f" from {self.refs(value)}"
            elif not (key == primary and len(opts) > 1) and not (key == "layers" and body is not None):
                args.append(f"{self.key(key)}={self.value(value)}")
        call = f"({', '.join(args)})" if args or not opts else ""
        return f"{word}{call}{tail}", body

    def refs(self, value: Any) -> str | None:
        """`a`, `a, b` or `[a]` for a `from` value; None when only `from=...` can say it."""
        if isinstance(value, bool):
            return None
        if isinstance(value, int) and value >= 0:
            return str(value)
        if isinstance(value, str):
            return self.ref(value)
        if isinstance(value, list) and value and all(isinstance(r, str) or (isinstance(r, int) and not isinstance(r, bool) and r >= 0) for r in value):
            refs = [str(r) if isinstance(r, int) else self.ref(r) for r in value]
            return ", ".join(refs) if len(refs) > 1 else f"[{refs[0]}]"
        return None

    @staticmethod
    def ref(name: str) -> str:
        return name if _REF.fullmatch(name) and not name.isdigit() else json.dumps(name)

    # -- values ----------------------------------------------------------------------------------------------------
    @staticmethod
    def key(key: Any) -> str:
        return key if isinstance(key, str) and _WORD.fullmatch(key) else json.dumps(str(key))

    def value(self, value: Any) -> str:
        if value is None:
            return "null"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int):
            return str(value)
        if isinstance(value, float):
            if not math.isfinite(value):
                raise self.refuse(None, f"the number {value} (write it as an expression, e.g. 1e9)")
            return repr(value)
        if isinstance(value, str):
            return value if reads_back(value) else json.dumps(value, ensure_ascii=False)
        if isinstance(value, list):
            return "[" + ", ".join(self.value(v) for v in value) + "]"
        if isinstance(value, dict):
            return "{" + ", ".join(f"{self.key(k)}: {self.value(v)}" for k, v in value.items()) + "}"
        raise self.refuse(None, f"the value {value!r}")


def _on_key_line(value: YMap, key: Loc) -> bool:
    return all(at.line == key.line for at in value.key_locs.values())


@lru_cache(maxsize=8192)
def reads_back(text: str) -> bool:
    """Whether a string can be written bare (a word or an expression) and still read back as the same string."""
    from netdsl.lang.text import parse_value

    try:
        return parse_value(text) == text
    except SpecError:
        return False


def write_net(tree: Any, file: str, notes: list[Note], chains: bool = False) -> list[Line]:
    """The lines of a tree in the text format (see NetWriter)."""
    return NetWriter(file, notes, chains).spec(tree)
