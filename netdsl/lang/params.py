"""Parameters of a spec or a block: a default (or none: required), and for strings the choices they may take.

`params: {out: null, act: {default: relu, choices: [relu, relu6, none]}}` declares a required `out` and an `act`
that must be one of three words. A block parameter whose default is a word must declare its choices: a word the
block does not know would otherwise flow into a comparison (`when: act == 'relu'`) and silently select nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from netdsl.errors import Diagnostic, Loc, did_you_mean
from netdsl.lang.yaml_tree import YMap, plain

REQUIRED = object()
"""The default of a parameter that has none: a use must give it."""


@dataclass(frozen=True)
class Param:
    """A declared parameter: its default (REQUIRED where none), the words a string value may be, and a doc line."""

    default: Any
    choices: tuple[str, ...] | None = None
    doc: str = ""

    def check(self, value: Any) -> str | None:
        """Why `value` is not allowed (None if it is): a string outside the choices."""
        if self.choices is None or not isinstance(value, str) or value in self.choices:
            return None
        return f"{value!r} is not one of {', '.join(self.choices)}{did_you_mean(value, self.choices)}"


def declare(name: str, raw: Any, loc: Loc, block: str | None) -> tuple[Param, list[Diagnostic]]:
    """A parameter from its spec value: a plain default, or a mapping {default, choices, doc}; with its problems."""
    what = f"block '{block}' parameter '{name}'" if block else f"parameter '{name}'"
    problems: list[Diagnostic] = []
    if isinstance(raw, YMap):
        default = REQUIRED if raw.get("default") is None else plain(raw["default"])
        choices = tuple(str(c) for c in raw["choices"]) if "choices" in raw else None
        param = Param(default, choices, str(raw.get("doc", "")))
        if default is not REQUIRED and param.check(default):
            problems.append(Diagnostic(raw.value_locs.get("default", loc), f"{what}: the default {param.check(default)}"))
        if choices is not None and len(set(choices)) != len(choices):
            problems.append(Diagnostic(raw.value_locs.get("choices", loc), f"{what}: a choice is listed twice"))
        return param, problems
    param = Param(REQUIRED if raw is None else plain(raw))
    if block and isinstance(param.default, str):
        problems.append(
            Diagnostic(
                loc, f"{what} has the word {param.default!r} for a default; declare the words it may be: {name}: {{default: {param.default}, choices: [...]}}"
            )
        )
    return param, problems


def declare_all(params: Any, block: str | None = None) -> tuple[dict[str, Param], list[Diagnostic]]:
    """Every parameter of a `params:` mapping (a spec's or a block's)."""
    out: dict[str, Param] = {}
    problems: list[Diagnostic] = []
    if not isinstance(params, YMap):
        return out, problems
    for key, raw in params.items():
        out[key], found = declare(key, raw, params.value_locs.get(key, params.key_locs[key]), block)
        problems += found
    return out, problems
