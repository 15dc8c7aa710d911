"""The spec's JSON Schema (Draft 2020-12): generated from the layer registry, shipped as package data."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, cast

from netdsl.lang.init_schema import init_schema
from netdsl.lang.limits import LIMIT_PATTERN, LIMITS
from netdsl.layers import LAYERS, Layer
from netdsl.layers.base import MAX_SIZE
from netdsl.layers.registry import load_all

FORMAT_VERSION = 1
SCHEMA_ID = "urn:netdsl:spec:1"
LIBRARY_SCHEMA_ID = "urn:netdsl:library:1"
SCHEMA_FILE = "schema.json"
LIBRARY_SCHEMA_FILE = "library.schema.json"

NAME = {
    "type": "string",
    "minLength": 1,
    "maxLength": 128,
    "pattern": r"^[^.]+$",
    "title": "a name without dots",
    "description": "module name; {expr} interpolates",
}
_REF = {"anyOf": [{"type": "string", "minLength": 1}, {"type": "integer", "minimum": 0}]}
REFS = {"anyOf": [*_REF["anyOf"], {"type": "array", "items": _REF, "minItems": 1}]}
EXPR = {"type": "string", "description": "an expression"}
COMMON: dict[str, dict[str, Any]] = {
    "name": NAME | {"description": "module name (the path in the compiled model); default: position in its list"},
    "from": REFS | {"description": "input(s) by name; default: the previous layer"},
    "frozen": {"type": "boolean", "description": "exclude the parameters from training"},
    "when": {"anyOf": [{"type": "boolean"}, EXPR], "description": "include only if true; a skipped layer passes its input through"},
}
INIT = init_schema()
STRUCTURAL = ("group", "repeat")
IMPORTS = {
    "description": "block libraries: a built-in name (resnet, densenet, mobilenet, ...) or a .yaml or .net path relative to this file",
    "type": "array",
    "items": {"type": "string", "minLength": 1},
}
EXTENDS = {"type": "string", "minLength": 1}
EDIT_NAMES = {"type": "array", "items": NAME, "minItems": 1}
EDIT_INSERT = {
    "type": "object",
    "properties": {
        "before": NAME | {"description": "the name of the base's layer to insert before"},
        "after": NAME | {"description": "the name of the base's layer to insert after"},
        "layers": {"$ref": "#/$defs/layers"},
    },
    "required": ["layers"],
    "oneOf": [{"required": ["before"]}, {"required": ["after"]}],
    "additionalProperties": False,
}
# the spec's layer list, or (with extends) named edits of its base's top-level layers, applied in the order written; one
# schema with both types rather than an anyOf, so that a wrong layer keeps its own error at its own place
LAYERS_OR_EDITS = {
    "description": "the layer list; with extends, a mapping of named edits of the base's layers instead: replace, insert, remove",
    "type": ["array", "object"],
    "title": "a list of layers (or, with extends, a mapping of edits)",
    "items": {"$ref": "#/$defs/layer"},
    "minItems": 1,
    "properties": {
        "replace": {
            "type": "object",
            "description": "{NAME: new item}: the new item keeps the name (module paths and weights stay put) unless it names itself",
            "additionalProperties": {"$ref": "#/$defs/layer"},
        },
        "insert": {
            "description": "{before: NAME or after: NAME, layers: [...]}, or a list of them",
            "anyOf": [EDIT_INSERT, {"type": "array", "items": EDIT_INSERT}],
        },
        "remove": {"description": "the names of the base's layers to remove", "anyOf": [NAME, EDIT_NAMES]},
    },
    "additionalProperties": False,
}
BLOCKS = {"type": "object", "additionalProperties": {"$ref": "#/$defs/block"}, "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}}


def layer_schema(cls: type[Layer]) -> dict[str, Any]:
    """Schema of one layer type's value: its options mapping, a bare primary value, or nothing."""
    props: dict[str, Any] = {}
    required = []
    for spec in cls.args():
        props[spec.name] = {**spec.kind.schema, "description": spec.doc}
        for alias in spec.alias:
            props[alias] = {**spec.kind.schema, "description": f"alias of '{spec.name}'"}
        if spec.required:
            names = [spec.name, *spec.alias]
            required.append({"anyOf": [{"required": [n]} for n in names]} if spec.alias else {"required": names})
    if cls.has_weights:
        props["init"] = {"$ref": "#/$defs/init"}
    props.update(COMMON)
    options: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        options["allOf"] = required
    branches: list[dict[str, Any]] = [options]
    if cls.primary:
        primary = next(s for s in cls.args() if s.name == cls.primary)
        branches.insert(0, primary.kind.schema)
    if not required:
        branches.append({"type": "null"})
    return {"description": cls.doc, "anyOf": branches}


def build_schema() -> dict[str, Any]:
    """The whole spec schema; `netdsl schema` prints it and editors use it."""
    load_all()
    layer_props: dict[str, Any] = {}
    defs: dict[str, Any] = {}
    for name, cls in sorted(LAYERS.items()):
        defs[f"layer.{name}"] = layer_schema(cls)
        for word in (name, *cls.aliases):
            layer_props[word] = {"$ref": f"#/$defs/layer.{name}"}
    list_ref = {"$ref": "#/$defs/layers"}
    layer_props["group"] = {
        "description": "a named sub-list of layers (a submodule)",
        "type": "object",
        "properties": {**COMMON, "layers": list_ref},
        "required": ["layers"],
        "additionalProperties": False,
    }
    layer_props["repeat"] = {
        "description": "the layers repeated n times; i is the iteration index",
        "type": "object",
        "properties": {
            **COMMON,
            "n": {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 100_000}, EXPR], "description": "number of repetitions"},
            "each": NAME | {"description": "name of each repetition, e.g. 'denselayer{i+1}'; default: its position"},
            "var": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$", "description": "name of the index variable (default i)"},
            "layers": list_ref,
        },
        "required": ["n", "layers"],
        "additionalProperties": False,
    }
    defs["layers"] = {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/layer"}}
    defs["init"] = INIT
    from netdsl.lang.train_schema import TRAIN_SCHEMA  # the trainer's settings, needed only to write the schema

    defs["train"] = extendable(TRAIN_SCHEMA, "train")
    defs["layer"] = {
        "description": "a layer: its type alone ('relu'), or a one-key mapping {type: options}; other keys name user blocks",
        "anyOf": [
            {
                # an enum, not a name pattern, so that editors flag a misspelt type ('rellu'); a block used without arguments
                # is written `- myblock: {}` for them (netdsl itself also accepts a bare block name)
                "title": "a layer type",
                "type": "string",
                "enum": sorted(word for name, cls in LAYERS.items() for word in (name, *cls.aliases)),
                "errorMessage": "unknown layer type (completion lists them; a block without arguments is written `- myblock: {}`)",
            },
            {
                "type": "object",
                "minProperties": 1,
                "maxProperties": 1,
                "properties": layer_props,
                "additionalProperties": {"description": "a user block's arguments", "anyOf": [{"type": "object"}, {"type": "null"}]},
                "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
            },
        ],
    }
    value = {"type": ["number", "boolean", "string", "null", "array"]}
    defs["param"] = {
        "description": "a parameter's default (null: required), or its declaration",
        "anyOf": [
            value,
            {
                "type": "object",
                "properties": {
                    "default": value | {"description": "the value when a use does not give one; absent or null: required"},
                    "choices": {"type": "array", "items": {"type": "string"}, "minItems": 1, "description": "the words a string value may be"},
                    "doc": {"type": "string"},
                },
                "additionalProperties": False,
            },
        ],
    }
    params = {"type": "object", "additionalProperties": {"$ref": "#/$defs/param"}, "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}}
    defs["block"] = {
        "type": "object",
        "properties": {
            "doc": {"type": "string"},
            "params": params | {"description": "parameters and defaults (null = required), or {default, choices, doc}"},
            "inputs": {
                "type": "array",
                "items": NAME,
                "minItems": 1,
                "description": "names of the block's inputs, which a use gives as from: [a, b] (default: one, named input)",
            },
            "layers": list_ref,
        },
        "required": ["layers"],
        "additionalProperties": False,
    }
    defs["library"] = {
        "description": "a block library file: blocks (and imports) only",
        "type": "object",
        "properties": {"netdsl": {"const": FORMAT_VERSION}, "description": {"type": "string"}, "import": IMPORTS, "blocks": BLOCKS},
        "required": ["netdsl", "blocks"],
        "additionalProperties": False,
    }
    shape_item = {"type": "integer", "minimum": 1, "maximum": MAX_SIZE}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "netdsl network spec",
        "type": "object",
        "properties": {
            "netdsl": {"const": FORMAT_VERSION, "description": "format version"},
            "name": {"type": "string", "pattern": "^[A-Za-z0-9_.-]+$", "maxLength": 128},
            "description": {"type": "string"},
            "input": {
                "description": "per-sample input shape: C x H x W, C x L, or features; e.g. [3, 224, 224] or '3x224x224'",
                "anyOf": [
                    shape_item,
                    {"type": "array", "items": shape_item, "minItems": 1, "maxItems": 3},
                    {"type": "string", "pattern": r"^\d+(x\d+){0,2}$", "title": "a shape like '3x224x224'"},
                ],
            },
            "params": params | {"description": "spec-wide parameters for expressions (width, depth, ...): defaults, or {default, choices, doc}"},
            "import": IMPORTS,
            "blocks": BLOCKS,
            "layers": LAYERS_OR_EDITS,
            "outputs": {
                "description": "the network's outputs by layer name, the main one first (e.g. [logits, aux1, aux2]); default: the last layer",
                "anyOf": [_REF, {"type": "array", "items": _REF, "minItems": 1}],
            },
            "init": {
                "description": "initialization defaults by layer type (a layer's own `init` wins), the seed, zero_init_residual",
                "type": "object",
                "properties": {
                    "seed": {"type": "integer", "minimum": 0},
                    "zero_init_residual": {"type": "boolean", "description": "zero the last BatchNorm scale of each residual branch (Goyal et al. 2017)"},
                    **{name: {"$ref": "#/$defs/init"} for name, cls in sorted(LAYERS.items()) if cls.has_weights},
                },
                "additionalProperties": False,
            },
            "train": {"$ref": "#/$defs/train"},
            "limits": {
                "description": "budgets: exceeding one is an error naming the biggest contributors",
                "type": "object",
                "properties": {
                    key: {
                        "anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": LIMIT_PATTERN, "title": "an amount like 5M or 600M"}],
                        "description": what,
                    }
                    for key, what in LIMITS.items()
                },
                "additionalProperties": False,
            },
            "extends": EXTENDS | {"description": "a zoo spec (resnet18) or a .yaml or .net path relative to this file: this spec starts as that one"},
        },
        "required": ["netdsl"],  # what marks a YAML file as a spec, for editors (editors/): a spec that extends one says it too
        **unless_extends(["name", "input", "layers"]),
        "additionalProperties": False,
        "$defs": defs,
    }


def unless_extends(required: list[str]) -> dict[str, Any]:
    """Keys required of a mapping that extends nothing: one with `extends` gets them from its base (checked once composed)."""
    return {"if": {"required": ["extends"]}, "then": True, "else": {"required": required}}


def extendable(schema: dict[str, Any], name: str) -> dict[str, Any]:
    """A copy of a train section's schema in which it and each sub-section may hold `extends` (a file of that section)."""
    out = dict(schema)
    if "anyOf" in out:
        out["anyOf"] = [extendable(b, name) if isinstance(b, dict) else b for b in out["anyOf"]]
    if out.get("type") != "object" or "properties" not in out:
        return out
    if name == "train":
        from netdsl.lang.train_schema import recipes

        what = f"a recipe ({', '.join(recipes())}) or a .yaml path"
    else:
        what = "a .yaml path"
    extends = EXTENDS | {"description": f"{what} relative to this file: its {name} settings, which this section's own override"}
    out["properties"] = {"extends": extends, **{k: extendable(v, f"{name}.{k}") for k, v in out["properties"].items()}}
    if "required" in out:
        out.update(unless_extends(out.pop("required")))
    return out


def library_schema_of(spec_schema: dict[str, Any]) -> dict[str, Any]:
    """The schema of a block library file: the spec schema's definitions with the library as its root."""
    root = {k: v for k, v in spec_schema.items() if k not in ("if", "then", "else")}  # a spec's rule for extends
    return {**root, **spec_schema["$defs"]["library"], "$id": LIBRARY_SCHEMA_ID, "title": "netdsl block library"}


def write_schemas(folder: str | Path) -> None:
    """Write schema.json and library.schema.json into the package folder (`make schema`)."""
    from netdsl.atomic import write_text

    spec = build_schema()
    for name, schema in ((SCHEMA_FILE, spec), (LIBRARY_SCHEMA_FILE, library_schema_of(spec))):
        write_text(Path(folder) / name, json.dumps(schema, indent=1) + "\n")


def schema_path(library: bool = False) -> Path:
    """The shipped schema file in the installed package, for an editor's `$schema=` line."""
    return Path(str(resources.files("netdsl").joinpath(LIBRARY_SCHEMA_FILE if library else SCHEMA_FILE))).resolve()


@cache
def library_schema() -> dict[str, Any]:
    """The block-library schema file shipped in the package (a test keeps it equal to library_schema_of(build_schema()))."""
    return _read(LIBRARY_SCHEMA_FILE)


@cache
def shipped_schema() -> dict[str, Any]:
    """The schema file shipped in the package (a test keeps it equal to build_schema())."""
    return _read(SCHEMA_FILE)


def _read(name: str) -> dict[str, Any]:
    return cast(dict[str, Any], json.loads(resources.files("netdsl").joinpath(name).read_text()))
