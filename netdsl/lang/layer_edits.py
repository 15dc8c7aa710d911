"""Named edits of a base spec's layer list, for a child spec's `layers:` mapping (netdsl/lang/extends.py):
`replace: {NAME: ITEM}`, `remove: [NAME, ...]` and `insert: {before: NAME | after: NAME, layers: [...]}`, applied in the
order written. A layer's name is its `name:` option; a replacing item keeps the replaced one's name (so its module path,
and its weights, stay put) unless it names itself."""

from __future__ import annotations

from typing import Any

from netdsl.errors import Diagnostic, Loc, did_you_mean
from netdsl.lang.files import printable
from netdsl.lang.yaml_tree import YList, YMap, copy_map, new_map
from netdsl.layers import LAYERS, canonical

EDITS = ("replace", "insert", "remove")


def edit_layers(base: YList, edits: YMap, loc: Loc, problems: list[Diagnostic]) -> YList:
    """The base's layer list with the named edits applied in the order written; each problem found added to `problems`."""
    items = list(zip(base, base.item_locs))
    for op, arg in edits.items():
        at, op_loc = edits.key_locs[op], edits.value_locs[op]
        if op == "replace" and isinstance(arg, YMap):
            for name, new in arg.items():
                i = _find(items, name, arg.key_locs[name], op, problems)
                if i is not None:
                    items[i] = (_named(new, name, arg.key_locs[name], arg.value_locs[name]), arg.value_locs[name])
        elif op == "remove" and isinstance(arg, (YList, str)):
            names = list(zip(arg, arg.item_locs)) if isinstance(arg, YList) else [(arg, op_loc)]
            for name, name_loc in names:
                i = _find(items, name, name_loc, op, problems)
                if i is not None:
                    del items[i]
        elif op == "insert" and isinstance(arg, (YList, YMap)):
            for spot in arg if isinstance(arg, YList) else [arg]:
                _insert(items, spot, op_loc, problems)
        elif op in EDITS:
            shape = {"replace": "a mapping {NAME: new item}", "remove": "a list of layer names", "insert": "{before: NAME or after: NAME, layers: [...]}"}[op]
            problems.append(Diagnostic(op_loc, f"layers.{op} must be {shape}"))
        else:
            problems.append(Diagnostic(at, f"layers: unknown edit '{printable(str(op))}'{did_you_mean(str(op), EDITS)} (edits: {', '.join(EDITS)})"))
    out = YList(item for item, _ in items)
    out.loc, out.item_locs = loc, [at for _, at in items]
    return out


def _insert(items: list[tuple[Any, Loc]], spot: Any, loc: Loc, problems: list[Diagnostic]) -> None:
    example = "{before: NAME or after: NAME, layers: [...]}"
    if not isinstance(spot, YMap):
        problems.append(Diagnostic(getattr(spot, "loc", loc), f"layers.insert must be {example}"))
        return
    for key in spot:
        if key not in ("before", "after", "layers"):
            problems.append(
                Diagnostic(
                    spot.key_locs[key],
                    f"layers.insert: '{printable(str(key))}' is not allowed{did_you_mean(str(key), ['before', 'after', 'layers'])} (allowed: before, after, layers)",
                )
            )
    sides = [k for k in ("before", "after") if k in spot]
    new = spot.get("layers")
    if len(sides) != 1 or not isinstance(new, YList) or not new:
        problems.append(Diagnostic(spot.loc, f"layers.insert needs one of before or after, and a non-empty layers list: {example}"))
        return
    side = sides[0]
    i = _find(items, spot[side], spot.value_locs[side], "insert", problems)
    if i is not None:
        at = i if side == "before" else i + 1
        items[at:at] = list(zip(new, new.item_locs))


def _find(items: list[tuple[Any, Loc]], name: Any, loc: Loc, op: str, problems: list[Diagnostic]) -> int | None:
    names = [layer_name(item) for item, _ in items]
    if name in names:
        return names.index(name)
    known = [n for n in names if n is not None]
    unnamed = " (unnamed layers have no name to edit by)" if len(known) < len(names) else ""
    shown = printable(str(name))
    message = f"layers.{op}: the base has no layer named '{shown}'{did_you_mean(str(name), known)} (its layers: {', '.join(known) or 'none named'}){unnamed}"
    problems.append(Diagnostic(loc, message))
    return None


def layer_name(item: Any) -> str | None:
    """The name a layer item gives itself (`conv: {name: conv1, ...}`), if any."""
    if isinstance(item, YMap) and len(item) == 1:
        args = next(iter(item.values()))
        name = args.get("name") if isinstance(args, YMap) else None
        return name if isinstance(name, str) else None
    return None


def _named(item: Any, name: str, key_loc: Loc, value_loc: Loc) -> Any:
    """A replacing item that keeps the replaced layer's name (so module paths, and weights, stay put) unless it names itself."""
    if isinstance(item, str):
        word, args, args_loc = item, None, value_loc
    elif isinstance(item, YMap) and len(item) == 1:
        word, args = next(iter(item.items()))
        args_loc = item.value_locs[word]
    else:
        return item
    if isinstance(args, YMap):
        if "name" in args:
            return item
        options = copy_map(args)
    elif args is None:
        options = new_map(args_loc)
    else:
        primary = "n" if word == "repeat" else (LAYERS[canonical(word) or ""].primary if canonical(word) else None)
        if primary is None:
            return item
        options = new_map(args_loc)
        options[primary], options.key_locs[primary], options.value_locs[primary] = args, args_loc, args_loc
    options["name"], options.key_locs["name"], options.value_locs["name"] = name, key_loc, key_loc
    out = new_map(getattr(item, "loc", value_loc))
    out[word], out.key_locs[word], out.value_locs[word] = options, getattr(item, "key_locs", {}).get(word, value_loc), args_loc
    return out
