"""Safe YAML loading into plain dicts and lists that remember where each value was written."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import yaml

from netdsl.errors import Diagnostic, Loc, SpecError

try:  # libyaml's parser is several times faster and keeps the same marks
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

MAX_NODES = 200_000  # bounds alias expansion ("billion laughs")
MAX_DEPTH = 200
_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


class YMap(dict[str, Any]):
    """A mapping with the positions of the mapping, each key and each value."""

    loc: Loc
    key_locs: dict[str, Loc]
    value_locs: dict[str, Loc]


class YList(list[Any]):
    """A sequence with the positions of the sequence and each item."""

    loc: Loc
    item_locs: list[Loc]


def new_map(loc: Loc) -> YMap:
    """An empty YMap written at `loc`."""
    out = YMap()
    out.loc, out.key_locs, out.value_locs = loc, {}, {}
    return out


def copy_map(node: YMap) -> YMap:
    """A shallow copy that keeps every position."""
    out = YMap(node)
    out.loc, out.key_locs, out.value_locs = node.loc, dict(node.key_locs), dict(node.value_locs)
    return out


def plain(value: Any) -> Any:
    """The same data as plain dicts and lists, without positions."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def loc_of(tree: Any, path: tuple[Any, ...] | list[Any], *, key: bool = False) -> Loc | None:
    """The position of the value at `path` (or of its key, with key=True); None if unknown."""
    node, loc = tree, getattr(tree, "loc", None)
    for i, step in enumerate(path):
        last = i == len(path) - 1
        if isinstance(node, YMap) and step in node:
            loc = node.key_locs[step] if (last and key) else node.value_locs[step]
        elif isinstance(node, YList) and isinstance(step, int) and 0 <= step < len(node):
            loc = node.item_locs[step]
        else:
            return loc
        node = node[step]
    return loc


class _Converter:
    def __init__(self, file: str):
        self.file = file
        self.count = 0
        self.constructor = yaml.constructor.SafeConstructor()

    def loc(self, node: yaml.Node) -> Loc:
        return Loc(self.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def convert(self, node: yaml.Node, depth: int = 0) -> Any:
        self.count += 1
        if self.count > MAX_NODES or depth > MAX_DEPTH:
            raise SpecError([Diagnostic(self.loc(node), "document too large or too deeply nested (alias expansion is bounded)")])
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _PLAIN_TAGS:
            raise SpecError([Diagnostic(self.loc(node), f"unsupported YAML tag '{node.tag}' (specs are plain data)")])
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, depth)
        if isinstance(node, yaml.SequenceNode):
            out = YList(self.convert(item, depth + 1) for item in node.value)
            out.loc, out.item_locs = self.loc(node), [self.loc(item) for item in node.value]
            return out
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            raise SpecError([Diagnostic(self.loc(node), f"unsupported YAML value: {exc.problem}")]) from None

    def mapping(self, node: yaml.MappingNode, depth: int) -> YMap:
        try:
            self.constructor.flatten_mapping(node)  # YAML merge keys (<<)
        except yaml.constructor.ConstructorError as exc:
            raise SpecError([Diagnostic(self.loc(node), f"bad merge key: {exc.problem}")]) from None
        out = YMap()
        out.loc, out.key_locs, out.value_locs = self.loc(node), {}, {}
        errors = []
        for key_node, value_node in node.value:
            key = self.convert(key_node, depth + 1)
            if not isinstance(key, str):
                errors.append(Diagnostic(self.loc(key_node), f"keys must be strings, got {key!r}"))
                continue
            if key in out:
                first = out.key_locs[key]
                errors.append(Diagnostic(self.loc(key_node), f"duplicate key '{key}' (first at line {first.line})"))
                continue
            out[key] = self.convert(value_node, depth + 1)
            out.key_locs[key], out.value_locs[key] = self.loc(key_node), self.loc(value_node)
        if errors:
            raise SpecError(errors)
        return out


def load_yaml(text: str, file: str) -> Any:
    """Parse one YAML document safely (no Python tags) into YMap/YList/scalars, or raise SpecError."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except (yaml.reader.ReaderError, UnicodeEncodeError) as exc:  # libyaml encodes the text first: a lone surrogate fails there
        raise SpecError([unprintable_character(text, file, str(getattr(exc, "reason", exc)))]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = _clamped(text, file, mark.line, mark.column) if mark else Loc(file, 1, 1)
        raise SpecError([Diagnostic(loc, f"YAML syntax error: {_one_line(exc.problem or exc.context)}")]) from None
    except yaml.YAMLError as exc:
        raise SpecError([Diagnostic(Loc(file, 1, 1), f"YAML error: {_one_line(str(exc))}")]) from None
    if node is None:
        return None
    return _Converter(file).convert(node)


_UNPRINTABLE = yaml.reader.Reader.NON_PRINTABLE  # what YAML 1.1 refuses anywhere in a stream


def unprintable_character(text: str, file: str, reason: str = "a character YAML does not allow") -> Diagnostic:
    """The first character YAML refuses (a control character such as \\x00 or \\x1b), located at its line and column.

    pyyaml's ReaderError gives an offset into its own buffer (bytes for libyaml), so the text is searched again.
    """
    found = _UNPRINTABLE.search(text)
    if found is None:  # pragma: no cover - pyyaml refused something its own pattern accepts
        return Diagnostic(Loc(file, 1, 1), f"YAML error: {_one_line(reason)}")
    i = found.start()
    char = found.group()
    kind = "control character" if unicodedata.category(char) == "Cc" else "character"
    loc = Loc(file, text.count("\n", 0, i) + 1, i - (text.rfind("\n", 0, i) + 1) + 1)
    return Diagnostic(loc, f"{kind} U+{ord(char):04X} is not allowed in YAML text (remove it)")


_YAML_BREAKS = re.compile(r"\r\n|[\n\r\x85\u2028\u2029]")  # the line breaks YAML counts


def _clamped(text: str, file: str, line: int, column: int) -> Loc:
    """A mark's location; libyaml puts the end of a file without a final newline on a line after the last one."""
    lines = _YAML_BREAKS.split(text)
    if line < len(lines):
        return Loc(file, line + 1, column + 1)
    return Loc(file, len(lines), len(lines[-1]) + 1)


def _one_line(message: str | None) -> str:
    return " ".join(str(message).split())
