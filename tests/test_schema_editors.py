"""The JSON Schemas as plain YAML editors use them: every spec and library names its schema on line 1, the block
libraries have a schema of their own, and the mistakes of examples/broken.yaml each get a specific error at its place."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from netdsl.lang.imports import builtin_libraries
from netdsl.lang.schema import build_schema, library_schema, library_schema_of, schema_path, shipped_schema
from netdsl.lang.yaml_tree import load_yaml
from tests.conftest import ROOT, SPECS

MODELINE = "# yaml-language-server: $schema="
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
# yaml-language-server reads 2020-12 since 1.20 and treats the schema as draft-07 before: check both ways
VALIDATORS = [jsonschema.Draft202012Validator, jsonschema.Draft7Validator]


def schema_named_on_line_one(path: Path) -> Path:
    first = path.read_text().splitlines()[0]
    assert first.startswith(MODELINE), (path, first)
    return (path.parent / first[len(MODELINE) :]).resolve()


def tree(path: Path) -> Any:
    return load_yaml(path.read_text(), str(path))


def of_type(schema: Any, value: Any) -> bool:
    """Whether an anyOf branch is about the value's JSON type (its other constraints aside)."""
    if "anyOf" in schema:
        return any(of_type(s, value) for s in schema["anyOf"])
    kinds = schema.get("type", [])
    checker = jsonschema.Draft202012Validator.TYPE_CHECKER
    return not kinds or any(checker.is_type(value, kind) for kind in ([kinds] if isinstance(kinds, str) else kinds))


def specific(error: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """Follow each anyOf into the one branch of the value's JSON type, as an editor does, down to the specific error."""
    while error.validator == "anyOf" and error.context:
        by_branch: dict[int, list[jsonschema.ValidationError]] = defaultdict(list)
        for sub in error.context:
            by_branch[int(sub.schema_path[0])].append(sub)
        branches = error.schema["anyOf"]  # type: ignore[index]
        typed = [errs for i, errs in by_branch.items() if of_type(branches[i], error.instance)]
        if len(typed) != 1 or len(typed[0]) != 1:
            return error
        error = typed[0][0]
    return error


def test_shipped_library_schema_equals_generated():
    # `make schema` writes netdsl/library.schema.json beside schema.json; a registry change without it fails here
    assert library_schema() == json.loads(json.dumps(library_schema_of(build_schema())))
    assert library_schema()["$defs"] == shipped_schema()["$defs"]


def test_both_schemas_declare_a_draft_yaml_language_server_reads():
    for schema in (shipped_schema(), library_schema()):
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    # the shared $defs are checked with the spec schema (test_schema.py); here the library's own root
    jsonschema.Draft202012Validator.check_schema({**library_schema(), "$defs": {}})
    assert library_schema()["required"] == ["netdsl", "blocks"] and library_schema()["$id"] != shipped_schema()["$id"]


@pytest.mark.parametrize("path", sorted(SPECS.glob("*.yaml")) + EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_spec_names_the_shipped_schema_on_its_first_line(path):
    assert schema_named_on_line_one(path) == schema_path() == (ROOT / "netdsl" / "schema.json").resolve()


@pytest.mark.parametrize("name", sorted(builtin_libraries()))
def test_every_builtin_library_names_its_schema_and_passes_it(name):
    path = builtin_libraries()[name]
    assert schema_named_on_line_one(path) == schema_path(library=True) == (ROOT / "netdsl" / "library.schema.json").resolve()
    for validator in VALIDATORS:
        assert [e.message for e in validator(library_schema()).iter_errors(tree(path))] == [], (name, validator.__name__)
    assert list(jsonschema.Draft202012Validator(shipped_schema()).iter_errors(tree(path)))  # the spec schema does not fit a library


def test_a_library_with_mistakes_fails_its_schema(spec_file):
    path = spec_file("netdsl: 1\nname: lib\nblocks:\n  act:\n    layers: [relu]\n    paramz: {k: 3}\n", "lib.yaml")
    errors = {(tuple(e.absolute_path), e.validator) for e in jsonschema.Draft202012Validator(library_schema()).iter_errors(tree(path))}
    assert errors == {((), "additionalProperties"), (("blocks", "act"), "additionalProperties")}


def test_every_zoo_spec_and_example_passes_the_schema_in_an_editor():
    """No false alarm: the stricter layer list (an enum, so editors catch 'rellu') accepts everything the zoo writes."""
    validators = [v(shipped_schema()) for v in VALIDATORS]
    for path in [*sorted(SPECS.glob("*.yaml")), *EXAMPLES]:
        if path.name != "broken.yaml":
            assert [e.message for v in validators for e in v.iter_errors(tree(path))] == [], path


@pytest.mark.parametrize("validator", VALIDATORS, ids=lambda v: v.__name__)
def test_each_mistake_of_broken_yaml_gets_a_specific_error_at_its_place(validator):
    errors = [specific(e) for e in validator(shipped_schema()).iter_errors(tree(ROOT / "examples" / "broken.yaml"))]
    found = [(list(e.absolute_path), e.validator, e.instance) for e in errors]
    assert found == [
        (["layers", 0, "conv"], "additionalProperties", {"name": "c1", "out": 6, "kernal": 5}),
        (["layers", 1], "enum", "rellu"),
        (["layers", 2, "dropout"], "maximum", 1.5),
    ]
    # what yaml-language-server shows for 'rellu' instead of the list of all types
    assert "errorMessage" in errors[1].schema and "unknown layer type" in errors[1].schema["errorMessage"]  # type: ignore[index,operator]


def test_a_block_used_bare_is_still_fine_for_netdsl(cli, spec_file):
    # the schema's enum lists layer types only; netdsl knows the file's blocks and does not repeat an error
    text = "netdsl: 1\nname: t\ninput: 1x8x8\nblocks:\n  twice:\n    layers: [relu, relu]\nlayers:\n  - group: {layers: [twice, conv: {out: 2}]}\n  - twice\n"
    path = spec_file(text)
    code, out, err = cli("check", str(path))
    assert (code, err) == (0, "") and out.startswith(f"{path}: ok (")
    bad = text.replace("[twice, conv", "[rellu, conv")
    code, out, err = cli("check", str(spec_file(bad)))
    assert code == 2 and err.splitlines() == [
        f"{spec_file(bad)}:8:22: unknown layer type 'rellu'; did you mean 'relu'? (see `netdsl schema`, or define a block named 'rellu')"
    ]


def test_a_bare_group_says_it_needs_layers(cli, spec_file):
    path = spec_file("netdsl: 1\nname: t\ninput: 1x8x8\nlayers:\n  - conv: {out: 2}\n  - group\n")
    code, _, err = cli("check", str(path))
    assert (code, err) == (2, f"{path}:6:5: a group needs its layers: write `- group: {{layers: [...]}}`\n")


def test_schema_command_prints_the_library_schema_and_the_paths(cli):
    code, out, _ = cli("schema", "--library")
    assert code == 0 and json.loads(out) == library_schema()
    for flags, name in ((["--path"], "schema.json"), (["--library", "--path"], "library.schema.json")):
        code, out, _ = cli("schema", *flags)
        shown = Path(out.strip())
        assert code == 0 and shown.is_absolute() and shown == (ROOT / "netdsl" / name).resolve()
        assert json.loads(shown.read_text()) == (library_schema() if "--library" in flags else shipped_schema())
