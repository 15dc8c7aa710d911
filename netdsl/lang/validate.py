"""Check a raw spec tree against the JSON Schema and turn jsonschema's errors into located, plain sentences."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection
from functools import cache
from typing import Any, cast

import jsonschema

from netdsl.errors import Diagnostic, Loc, did_you_mean
from netdsl.lang.schema import STRUCTURAL, library_schema, shipped_schema
from netdsl.lang.yaml_tree import YList, YMap, loc_of
from netdsl.layers import ALIASES, LAYERS, canonical


@cache
def _validator(library: bool) -> jsonschema.protocols.Validator:
    return jsonschema.Draft202012Validator(library_schema() if library else shipped_schema())


def validate_tree(tree: Any, file: str, library: bool = False, blocks: Collection[str] = ()) -> list[Diagnostic]:
    """All schema violations of a spec (or of a block library), one located diagnostic each."""
    root = Loc(file, 1, 1)
    if not isinstance(tree, YMap):
        got = "an empty document" if tree is None else f"{_type_name(tree)} {show(tree)}"
        keys = "netdsl, blocks" if library else "netdsl, name, input, layers"
        return [Diagnostic(getattr(tree, "loc", root), f"a {'block library' if library else 'spec'} must be a mapping with keys {keys}; got {got}")]
    out, unknown = unknown_types(tree, set(blocks))
    known = set(blocks)

    def reported(error: jsonschema.ValidationError) -> bool:
        """Whether an error is already said, or no error: an unknown type (reported above), a block used bare (the schema knows only layer types)."""
        path = tuple(error.absolute_path)
        if any(path[: len(p)] == p for p in unknown):
            return True
        return isinstance(error.instance, str) and error.instance in known and _is_layer_path(list(path))

    for error in _validator(library).iter_errors(tree):
        out.extend(_translate(error, tree, file, reported))
    return out


def unknown_types(tree: YMap, blocks: set[str]) -> tuple[list[Diagnostic], list[tuple[Any, ...]]]:
    """Layer items whose type is neither a layer type nor a known block, with their paths."""
    diags: list[Diagnostic] = []
    paths: list[tuple[Any, ...]] = []
    lists: list[tuple[tuple[Any, ...], Any]] = [(("layers",), tree.get("layers"))]
    lists += [(("blocks", k, "layers"), b.get("layers")) for k, b in _items(tree.get("blocks"))]
    while lists:
        path, items = lists.pop()
        if not isinstance(items, YList):
            continue
        for i, item in enumerate(items):
            if isinstance(item, str):
                word, args = item, None
            elif isinstance(item, YMap) and len(item) == 1:
                word, args = next(iter(item.items()))
            else:
                continue
            if word in STRUCTURAL:
                if isinstance(args, YMap):
                    lists.append(((*path, i, word, "layers"), args.get("layers")))
            elif not canonical(word) and word not in blocks:
                diags.append(Diagnostic(items.item_locs[i], unknown_type_message(word, blocks)))
                paths.append((*path, i))
    return diags, paths


def unknown_type_message(word: str, blocks: Collection[str]) -> str:
    choices = [*LAYERS, *ALIASES, *blocks, *STRUCTURAL]
    return f"unknown layer type '{word}'{did_you_mean(word, choices)} (see `netdsl schema`, or define a block named '{word}')"


def _items(value: Any) -> list[tuple[str, Any]]:
    return [(k, v) for k, v in value.items() if isinstance(v, YMap)] if isinstance(value, YMap) else []


def _translate(error: jsonschema.ValidationError, tree: YMap, file: str, reported: Callable[[jsonschema.ValidationError], bool]) -> list[Diagnostic]:
    if reported(error):
        return []
    path = list(error.absolute_path)
    loc = loc_of(tree, path) or Loc(file, 1, 1)
    prefix = _context(tree, path)
    v, inst = error.validator, cast(Any, error.instance)
    schema: dict[str, Any] = error.schema if isinstance(error.schema, dict) else {}
    rule: Any = error.validator_value
    if v == "anyOf" and inst in STRUCTURAL and _is_layer_path(path):
        return [Diagnostic(loc, f"{prefix}a {inst} needs its layers: write `- {inst}: {{{'n: 2, ' if inst == 'repeat' else ''}layers: [...]}}`")]
    if v in ("anyOf", "oneOf"):
        chosen = matching_branch(error)
        if chosen:
            return [d for e in chosen for d in _translate(e, tree, file, reported)]
        words = [str(w) for branch in schema.get(v, []) if isinstance(branch, dict) for w in branch.get("enum", [])]
        hint = did_you_mean(inst, words) if isinstance(inst, str) else ""
        return [Diagnostic(loc, f"{prefix}{_what(path)} must be {expected(schema)}; got {show(inst)}{hint}")]
    if v == "additionalProperties":
        allowed = [k for k in schema.get("properties", {})]
        out = []
        for key in inst:
            if key in allowed:
                continue
            key_loc = loc_of(tree, [*path, key], key=True) or loc
            out.append(Diagnostic(key_loc, f"{prefix}{_unknown_key(key, path, allowed, tree)}"))
        return out
    if v == "required":
        missing = [k for k in rule if k not in inst]
        return [Diagnostic(loc, f"{prefix}missing required key '{missing[0]}'" + ("" if path else " (a spec needs netdsl, name, input, layers)"))]
    if v == "maxProperties" and _is_layer_path(path):
        keys = ", ".join(inst)
        return [Diagnostic(loc, f"a layer is a one-key mapping {{type: options}}; got {len(inst)} keys ({keys}); is a '-' or an indent missing?")]
    if v == "minProperties":
        return [Diagnostic(loc, f"{prefix}empty mapping where a layer {{type: options}} was expected")]
    if v == "const" and path == ["netdsl"]:
        return [Diagnostic(loc, f"unsupported format version {show(inst)}; this netdsl reads version {rule}")]
    if v == "minItems" and not inst:
        return [Diagnostic(loc, f"{prefix}{_what(path)} is empty; it needs at least one entry")]
    hint = did_you_mean(inst, [str(c) for c in schema["enum"]]) if v == "enum" and isinstance(inst, str) else ""
    return [Diagnostic(loc, f"{prefix}{_what(path)} must be {expected(schema)}; got {show(inst)}{hint}")]


def matching_branch(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """Of an anyOf's failed branches, the errors of the one whose type fits the value (if exactly one does)."""
    by_branch: dict[int, list[jsonschema.ValidationError]] = defaultdict(list)
    for sub in error.context or []:
        by_branch[sub.schema_path[0]].append(sub)  # type: ignore[index]
    schema = cast(dict[str, Any], error.schema)
    branches: list[Any] = schema.get("anyOf") or schema.get("oneOf") or []
    fitting = [errs for i, errs in by_branch.items() if _fits(branches[i], error.instance)]
    return fitting[0] if len(fitting) == 1 else []


_JSON_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _fits(schema: Any, value: Any) -> bool:
    """Whether a value has the JSON type a schema branch is about (its constraints aside)."""
    if not isinstance(schema, dict):
        return True
    if "anyOf" in schema:
        return any(_fits(s, value) for s in schema["anyOf"])
    if "enum" in schema:
        return value in schema["enum"]
    kinds = schema.get("type")
    if kinds is None:
        return True
    for kind in [kinds] if isinstance(kinds, str) else kinds:
        if kind in ("integer", "number"):
            if isinstance(value, (int, float)) and not isinstance(value, bool) and (kind == "number" or float(value).is_integer()):
                return True
        elif isinstance(value, _JSON_TYPES[kind]) and not (kind != "boolean" and isinstance(value, bool)):
            return True
    return False


def _unknown_key(key: str, path: list[Any], allowed: list[str], tree: YMap) -> str:
    if not path:
        return f"'{key}' is not a spec key{did_you_mean(key, allowed)} (keys: {', '.join(allowed)})"
    layer = _layer_at(tree, path)
    if layer:
        word = layer[0]
        shown = [k for k in allowed if not k.startswith("_")]
        options = _canonical_options(word, shown)
        return f"'{key}' is not a {word} option{did_you_mean(key, shown)} (options: {', '.join(options)})"
    return f"'{key}' is not allowed in {_what(path)}{did_you_mean(key, allowed)} (allowed: {', '.join(allowed)})"


def _canonical_options(word: str, keys: list[str]) -> list[str]:
    name = canonical(word)
    if not name:
        return keys
    aliases = {a for spec in LAYERS[name].args() for a in spec.alias}
    return [k for k in keys if k not in aliases]


def _is_layer_path(path: list[Any]) -> bool:
    return len(path) >= 2 and path[-2] == "layers" and isinstance(path[-1], int)


def _layer_at(tree: Any, path: list[Any]) -> tuple[str, str | None] | None:
    """The innermost layer (type word, name) that `path` lies inside."""
    node, found = tree, None
    for i, step in enumerate(path):
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            break
        if isinstance(node, YMap) and len(node) == 1 and isinstance(step, int) and i > 0 and path[i - 1] == "layers":
            word = next(iter(node))
            args = node[word]
            name = args.get("name") if isinstance(args, YMap) else None
            found = (word, name if isinstance(name, str) else None)
    return found


def _context(tree: Any, path: list[Any]) -> str:
    layer = _layer_at(tree, path)
    if not layer:
        return ""
    word, name = layer
    return f"{word} '{name}': " if name else f"{word}: "


def _what(path: list[Any]) -> str:
    if len(path) >= 3 and isinstance(path[-2], int) and path[-3] == "layers" and canonical(str(path[-1])):
        primary = LAYERS[canonical(str(path[-1])) or ""].primary  # a bare value: `dropout: 1.5` sets p
        if primary:
            return f"'{primary}'"
    for step in reversed(path):
        if isinstance(step, str):
            return f"'{step}'"
    return "this value" if path else "the spec"


def expected(schema: dict[str, Any]) -> str:
    if "title" in schema:
        return str(schema["title"])
    if "anyOf" in schema:
        parts = [expected(s) for s in schema["anyOf"]]
        return " or ".join(dict.fromkeys(p for p in parts if p))
    if "enum" in schema:
        return "one of " + ", ".join(repr(c) for c in schema["enum"])
    if "const" in schema:
        return repr(schema["const"])
    kind = schema.get("type")
    if kind == "integer":
        lo, hi = schema.get("minimum"), schema.get("maximum")
        return f"an integer >= {lo}" + (f" and <= {hi}" if hi is not None and hi < (1 << 24) else "") if lo is not None else "an integer"
    if kind == "number":
        lo = schema.get("minimum", schema.get("exclusiveMinimum"))
        op = ">" if "exclusiveMinimum" in schema else ">="
        hi = schema.get("maximum")
        return "a number" + (f" {op} {lo}" if lo is not None else "") + (f" and <= {hi}" if hi is not None else "")
    if kind == "string":
        return "an expression" if schema.get("description", "").startswith("an expression") else "a string"
    if kind == "boolean":
        return "true or false"
    if kind == "array":
        lo, hi = schema.get("minItems"), schema.get("maxItems")
        n = f" of {lo} to {hi} items" if lo and hi else ""
        return f"a list{n}"
    if kind == "object":
        return "a mapping"
    if kind == "null":
        return "nothing"
    if isinstance(kind, list):
        return " or ".join(kind)
    return "valid"


def _type_name(value: Any) -> str:
    return {YMap: "a mapping", YList: "a list", str: "a string", bool: "a boolean", int: "an integer", float: "a number"}.get(type(value), type(value).__name__)


def show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list" if len(str(value)) > 40 else str(list(value))
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
