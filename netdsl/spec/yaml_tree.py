"""Safe YAML loading into plain dicts and lists that remember where each value was written."""

from __future__ import annotations

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
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Loc(file, mark.line + 1, mark.column + 1) if mark else Loc(file, 1, 1)
        raise SpecError([Diagnostic(loc, f"YAML syntax error: {exc.problem or exc.context}")]) from None
    except yaml.YAMLError as exc:
        raise SpecError([Diagnostic(Loc(file, 1, 1), f"YAML error: {exc}")]) from None
    if node is None:
        return None
    return _Converter(file).convert(node)
