"""`--set KEY=VALUE` overrides: where each one came from, and their problems worded as spec errors are.

A key parsed from the command line is a SetKey: a str that remembers the argument it was typed in, so a check far
from the command line (the spec's parameters, the train settings' schema) reports a problem at that argument:
`--set train.lrr=0.1: train has no setting 'lrr'; did you mean 'train.optimizer.lr'?`. Torch-free.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator, Mapping
from typing import Any, cast

import jsonschema

from netdsl.errors import Diagnostic, Loc, did_you_mean


class SetKey(str):
    """A dotted setting or parameter name that remembers the command-line argument it came from (`where`)."""

    where: str

    def __new__(cls, key: str, where: str = "") -> SetKey:
        obj = super().__new__(cls, key)
        obj.where = where
        return obj


def setting_loc(key: str, value: Any = None) -> Loc:
    """Where a --set key was given: its argument as typed, or (keys from the Python API) `--set key=value`."""
    where = getattr(key, "where", "")
    return Loc.argument(where or f"--set {key}={show_value(value)}")


def show_value(value: Any) -> str:
    """A value as it would be typed after `=` (YAML's spelling: true, null, [1, 2])."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return str(value)


def covering(settings: Mapping[str, Any], path: list[str]) -> str | None:
    """The setting that wrote `path` (a dotted path from train), or a part of it, or a section around it."""
    for key in settings:
        parts = key.split(".")
        n = min(len(parts), len(path))
        if parts[:n] == path[:n]:
            return key
    return None


def settings_diagnostics(train: dict[str, Any], settings: Mapping[str, Any], schema: dict[str, Any]) -> list[Diagnostic]:
    """The schema's complaints about `train` (the spec's section with the settings applied) that a setting caused,
    each located at its --set argument and worded as spec errors are."""
    problems: list[Diagnostic] = []
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(train), key=lambda e: [str(p) for p in e.absolute_path])
    for error in errors:
        for path, message in _sentences(error, schema):
            key = covering(settings, path)
            if key is not None:
                problems.append(Diagnostic(setting_loc(key, settings[key]), message))
    if errors and not problems and settings:  # not caused by a setting: still no training on a section the schema refuses
        key = next(iter(settings))
        problems = [Diagnostic(setting_loc(key, settings[key]), message) for path, message in _sentences(errors[0], schema)]
    return problems


def _sentences(error: jsonschema.ValidationError, schema: dict[str, Any]) -> Iterator[tuple[list[str], str]]:
    """(dotted path from train, sentence) for one schema error, as netdsl.lang.validate words a spec's."""
    from netdsl.lang.validate import expected, matching_branch, show

    path = ["train", *map(str, error.absolute_path)]
    where = ".".join(path)
    sub: dict[str, Any] = error.schema if isinstance(error.schema, dict) else {}
    inst = cast(Any, error.instance)
    if error.validator in ("anyOf", "oneOf"):
        chosen = matching_branch(error)
        if chosen:
            for e in chosen:
                yield from _sentences(e, schema)
            return
    if error.validator == "additionalProperties":
        allowed = list(sub.get("properties", {}))
        for key in inst:
            if key not in allowed:
                hint = did_you_mean(key, allowed) or _elsewhere(key, schema)
                yield [*path, key], f"{where} has no setting '{key}'{hint} (settings: {', '.join(allowed)})"
        return
    if error.validator == "required":
        rule: Any = error.validator_value
        missing = [k for k in rule if k not in inst]
        yield path, f"{where} needs '{missing[0]}'"
        return
    hint = did_you_mean(inst, [str(c) for c in sub["enum"]]) if error.validator == "enum" and isinstance(inst, str) else ""
    yield path, f"{where} must be {expected(sub)}; got {show(inst)}{hint}"


def _elsewhere(key: str, schema: dict[str, Any]) -> str:
    """The hint for `train.lrr`, "; did you mean 'train.optimizer.lr'?": the closest setting name anywhere in the schema."""
    names: dict[str, str] = {}
    for dotted in _setting_paths(schema, "train"):
        names.setdefault(dotted.rsplit(".", 1)[-1], dotted)
    close = difflib.get_close_matches(key, list(names), n=1, cutoff=0.6)
    return f"; did you mean '{names[close[0]]}'?" if close else ""


def _setting_paths(schema: Any, prefix: str) -> Iterator[str]:
    if not isinstance(schema, dict):
        return
    for name, sub in schema.get("properties", {}).items():
        yield f"{prefix}.{name}"
        yield from _setting_paths(sub, f"{prefix}.{name}")
    for branch in schema.get("anyOf", []) + schema.get("oneOf", []):
        yield from _setting_paths(branch, prefix)
