"""The shipped JSON Schema is valid Draft 2020-12, equals what the registry generates, and accepts every layer example."""

from __future__ import annotations

import json
import subprocess
import sys

import jsonschema
import pytest

from netdsl.lang.schema import build_schema, shipped_schema
from netdsl.layers import LAYERS
from tests.conftest import ROOT


def test_shipped_schema_equals_generated():
    # `make schema` regenerates netdsl/schema.json; a registry change without it fails here
    assert shipped_schema() == json.loads(json.dumps(build_schema()))


def test_schema_is_valid_draft_2020_12():
    jsonschema.Draft202012Validator.check_schema(shipped_schema())
    assert shipped_schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_every_layer_type_has_a_schema_entry_for_each_spelling():
    layer_props = shipped_schema()["$defs"]["layer"]["anyOf"][1]["properties"]
    for name, cls in LAYERS.items():
        for word in (name, *cls.aliases):
            assert layer_props[word] == {"$ref": f"#/$defs/layer.{name}"}


def test_every_option_is_in_the_schema_with_its_aliases():
    for name, cls in LAYERS.items():
        options = shipped_schema()["$defs"][f"layer.{name}"]["anyOf"]
        props = next(b for b in options if b.get("type") == "object")["properties"]
        for spec in cls.args():
            assert spec.name in props
            for alias in spec.alias:
                assert alias in props


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_examples_validate(name):
    validator = jsonschema.Draft202012Validator(shipped_schema())
    for example in LAYERS[name].examples:
        doc = {"netdsl": 1, "name": "t", "input": [3, 8, 8], "layers": [{name: json.loads(json.dumps(example))}]}
        assert not list(validator.iter_errors(doc)), (name, example)


def test_schema_command_prints_the_shipped_schema(cli):
    code, out, _ = cli("schema")
    assert code == 0 and json.loads(out) == shipped_schema()


def test_shipped_layer_index_equals_the_modules():
    """netdsl/layers/index.py (what a spec's type words load) is what `make schema` writes from the family modules."""
    from netdsl.layers.registry import index_text

    assert (ROOT / "netdsl" / "layers" / "index.py").read_text() == index_text()


def test_a_spec_loads_only_the_layer_families_it_uses():
    code = "import sys, netdsl; netdsl.load('specs/resnet18.yaml'); print(sorted(m.rsplit('.', 1)[1] for m in sys.modules if m.startswith('netdsl.layers.')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split("\n")[0]
    assert out == str(["activation", "base", "conv", "core", "index", "merge", "norm", "pool", "registry"])
