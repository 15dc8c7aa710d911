"""Graph constructs: named references, merges, groups, repeats, user blocks, conditions -- and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest

import netdsl
from netdsl.errors import SpecError


def load(body: str, input_shape: str = "3x32x32", extra: str = "", **options):
    return netdsl.load_text(f"netdsl: 1\nname: t\ninput: {input_shape}\n{extra}layers:\n{body}", "t.yaml", **options)


def messages(body: str, input_shape: str = "3x32x32", extra: str = "") -> list[str]:
    with pytest.raises(SpecError) as info:
        load(body, input_shape, extra)
    return [str(d) for d in info.value.diagnostics]


RESIDUAL = """\
  - conv: {name: stem, out: 8, k: 3, p: 1}
  - conv: {name: a, out: 8, k: 3, p: 1}
  - add: {name: sum, from: [stem, a]}
  - relu
"""


def test_named_references_and_add():
    g = load(RESIDUAL)
    assert [n.name for n in g] == ["stem", "a", "sum", "3"]
    assert g.node("sum").inputs == ("stem", "a")
    assert g.node("3").inputs == ("sum",)
    assert g.output_shape == (8, 32, 32)


def test_concat_sums_channels_and_mul_broadcasts():
    g = load(
        "  - conv: {name: x, out: 8, k: 1}\n  - conv: {name: y, out: 4, k: 1, from: input}\n  - concat: {name: c, from: [x, y]}\n"
        "  - gap: {keepdim: true}\n  - mul: {from: [c, 3]}\n"
    )
    assert g.node("c").shape == (12, 32, 32)
    assert g.node("4").shape == (12, 32, 32)


def test_add_mismatch_names_both_sides_and_suggests_the_fix():
    body = "  - conv: {name: stem, out: 64, k: 3, p: 1}\n  - conv: {name: b, out: 128, k: 3, s: 2, p: 1}\n  - add: {from: [b, stem]}\n"
    assert messages(body) == [
        "t.yaml:7:5: add '2': cannot add 'b' (128x16x16) and 'stem' (64x32x32): shapes differ; to match, give 'stem' a 1x1 conv with stride 2 to 128 channels"
    ]


def test_concat_of_mismatched_spatial_sizes():
    body = "  - conv: {name: a, out: 4, k: 3, p: 1}\n  - maxpool: {name: p, k: 2}\n  - concat: {from: [a, p]}\n"
    assert messages(body) == ["t.yaml:7:5: concat '2': cannot concat 'a' (4x32x32) and 'p' (4x16x16): sizes after the channel dim differ (32x32 vs 16x16)"]


def test_mul_that_does_not_broadcast():
    body = "  - conv: {name: a, out: 4, k: 1}\n  - conv: {name: b, out: 3, k: 1, from: input}\n  - mul: {from: [a, b]}\n"
    assert messages(body) == ["t.yaml:7:5: mul '2': cannot multiply 'a' (4x32x32) by 'b' (3x32x32): shapes neither match nor broadcast"]


def test_merge_needs_two_inputs():
    assert messages("  - conv: 4\n  - add\n") == ["t.yaml:6:5: add '1': needs two or more inputs, e.g. from: [input, 1_branch]"]


def test_unknown_reference_suggests():
    assert messages("  - conv: {name: stem, out: 4}\n  - relu: {from: stme}\n") == [
        "t.yaml:6:18: unknown layer 'stme' in 'from'; did you mean 'stem'? (known here: input, stem)"
    ]


def test_forward_reference_is_refused_as_a_cycle():
    body = "  - conv: {name: a, out: 4, k: 1, from: b}\n  - conv: {name: b, out: 4, k: 1}\n"
    assert messages(body) == ["t.yaml:5:41: 'b' is defined later (line 6); 'from' must name an earlier layer, so the graph has no cycles"]


def test_self_reference_is_refused():
    assert messages("  - conv: {name: a, out: 4, from: a}\n") == [
        "t.yaml:5:35: 'a' is defined later (line 5); 'from' must name an earlier layer, so the graph has no cycles"
    ]


def test_groups_make_module_paths_and_see_outer_names():
    body = (
        "  - conv: {name: stem, out: 4, k: 1}\n  - group:\n      name: body\n      layers:\n        - conv: {out: 4, k: 1}\n        - add: {from: [stem, 0]}\n"
    )
    g = load(body)
    assert [n.name for n in g] == ["stem", "body.0", "body.1"]
    assert g.node("body.1").inputs == ("stem", "body.0")
    assert g.state_dict_shapes() == {"stem.weight": (4, 3, 1, 1), "stem.bias": (4,), "body.0.weight": (4, 4, 1, 1), "body.0.bias": (4,)}


def test_absolute_paths_in_from():
    body = "  - group: {name: g, layers: [conv: {name: c, out: 4, k: 1}, relu]}\n  - group: {name: h, layers: [add: {from: [/g.c, /g.1]}]}\n"
    assert load(body).node("h.0").inputs == ("g.c", "g.1")


def test_spliced_repeat_continues_indices_like_nn_sequential():
    g = load("  - repeat: {n: 2, layers: [conv: {out: 4, k: 3, p: 1}, relu]}\n  - maxpool: 2\n")
    assert [n.name for n in g] == ["0", "1", "2", "3", "4"]


def test_named_repeat_with_per_iteration_values():
    body = "  - repeat: {name: stage, n: 3, layers: [conv: {out: '8 * (i + 1)', k: 3, s: '2 if first else 1', p: 1}]}\n"
    g = load(body)
    assert [(n.name, n.shape) for n in g] == [("stage.0", (8, 16, 16)), ("stage.1", (16, 16, 16)), ("stage.2", (24, 16, 16))]


def test_repeat_each_names_iterations_and_multi_item_bodies_become_groups():
    g = load("  - repeat: {n: 2, each: 'unit{i + 1}', layers: [conv: {out: 4, k: 1}, relu]}\n")
    assert [n.name for n in g] == ["unit1.0", "unit1.1", "unit2.0", "unit2.1"]


@pytest.mark.parametrize("n", ["0", "-1", "'depth_mult - 1'"])
def test_repeat_count_must_be_positive(n):
    (line,) = messages(f"  - repeat: {{n: {n}, layers: [relu]}}\n")
    assert line.startswith("t.yaml:5:17: ") and ("must be an integer >= 1" in line or "'n' must be" in line)


BLOCK = """blocks:
  unit:
    params: {c: null, stride: 1}
    layers:
      - conv: {name: conv, out: c, k: 3, s: stride, p: 1, bias: false}
      - bn: {name: bn}
      - group:
          name: proj
          from: input
          when: stride != 1 or in_channels != c
          layers: [conv: {out: c, k: 1, s: stride, bias: false}]
      - add: {from: [bn, proj]}
"""


def test_block_with_conditional_projection():
    g = load("  - unit: {name: u1, c: 3}\n  - unit: {name: u2, c: 8, stride: 2}\n", extra=BLOCK)
    names = [n.name for n in g]
    assert "u1.proj.0" not in names and "u2.proj.0" in names  # identity where shapes match, 1x1 conv where they change
    assert g.node("u1.2").inputs == ("u1.bn", "input")
    assert g.output_shape == (8, 16, 16)


def test_block_unknown_parameter_points_to_use_and_definition():
    assert messages("  - unit: {c: 4, strid: 2}\n", extra=BLOCK) == [
        "t.yaml:17:18: block 'unit' has no parameter 'strid'; did you mean 'stride'? (parameters: c, stride; defined at t.yaml:5:3)"
    ]


def test_block_missing_parameter():
    assert messages("  - unit: {stride: 2}\n", extra=BLOCK) == ["t.yaml:17:5: block 'unit' needs parameter 'c' (defined at t.yaml:5:3)"]


def test_error_inside_a_block_names_definition_and_use_site():
    lines = messages("  - unit: {c: 4}\n", input_shape="3x1x1", extra=BLOCK.replace("k: 3, s: stride, p: 1", "k: 3, s: stride"))
    assert lines == ["t.yaml:8:9: conv '0.conv': kernel 3 exceeds padded input 1x1 (input 1x1, padding 0) (in block 'unit' used at t.yaml:17:5)"]


def test_block_name_may_not_shadow_a_layer_type():
    assert messages("  - relu\n", extra="blocks:\n  conv: {layers: [relu]}\n") == [
        "t.yaml:5:3: block name 'conv' is a built-in layer type; choose another name"
    ]


def test_recursive_block_is_refused():
    (line,) = messages("  - loop\n", extra="blocks:\n  loop: {layers: [loop]}\n")
    assert "block 'loop' nests more than 32 deep (does it use itself?)" in line


def test_when_false_passes_input_through_and_frees_the_name():
    body = "  - conv: {name: x, out: 4, k: 1, when: false}\n  - conv: {name: x, out: 6, k: 1}\n  - relu: {from: x}\n"
    g = load(body)
    assert [n.name for n in g] == ["x", "1"] and g.node("x").shape == (6, 32, 32)


def test_width_multiplier_and_set(cli, spec_file):
    path = spec_file("netdsl: 1\nname: t\ninput: 3x8x8\nparams: {c: 16}\nlayers:\n  - conv: {out: 'int(c * width_mult)', k: 1}\n")
    assert netdsl.load(path, variables={"width_mult": 0.5}).nodes[0].shape == (8, 8, 8)
    assert netdsl.load(path, variables={"c": 32}).nodes[0].shape == (32, 8, 8)
    code, out, _ = cli("check", str(path), "--width", "0.25")
    assert code == 0 and "output 4x8x8" in out


def test_expression_errors_are_located():
    assert messages("  - conv: {out: 'c * 2'}\n") == ["t.yaml:5:17: conv '0': 'out': unknown name 'c' (known: depth_mult, width_mult)"]


def test_block_libraries_import_and_unknown_library():
    g = load("  - basic: {c: 3}\n", extra="import: [resnet]\n")
    assert {"0.conv1.weight", "0.bn2.running_var"} <= set(g.state_dict_shapes())
    built_in = ", ".join(sorted(p.stem for p in (Path(netdsl.__file__).parent / "blocks").glob("*.yaml")))
    assert {"common", "densenet", "inception", "mobilenet", "resnet"} <= set(built_in.split(", "))
    assert messages("  - relu\n", extra="import: [resnt]\n") == [
        f"t.yaml:4:10: unknown block library 'resnt'; did you mean 'resnet'? (built-in: {built_in}; or a .yaml or .net path)"
    ]


def test_local_block_library_file(tmp_path):
    (tmp_path / "lib.yaml").write_text("netdsl: 1\nblocks:\n  twice:\n    params: {c: null}\n    layers: [conv: {out: c, k: 1}, conv: {out: c, k: 1}]\n")
    spec = tmp_path / "net.yaml"
    spec.write_text("netdsl: 1\nname: t\ninput: 3x4x4\nimport: [lib.yaml]\nlayers:\n  - twice: {c: 5}\n")
    assert netdsl.load(spec).output_shape == (5, 4, 4)


def test_frozen_group_freezes_its_layers():
    g = load("  - group: {name: backbone, frozen: true, layers: [conv: 4, bn]}\n  - conv: 2\n")
    assert [(n.name, n.frozen) for n in g] == [("backbone.0", True), ("backbone.1", True), ("1", False)]


def test_builtin_libraries_are_valid_and_documented():
    from netdsl.lang.imports import builtin_libraries
    from netdsl.lang.validate import validate_tree
    from netdsl.lang.yaml_tree import load_yaml

    trees = {name: load_yaml(path.read_text(), str(path)) for name, path in builtin_libraries().items()}
    every_block = [block for tree in trees.values() for block in tree["blocks"]]
    for name, tree in trees.items():
        assert validate_tree(tree, name, library=True, blocks=every_block) == []
        for block, body in tree["blocks"].items():
            assert body.get("doc"), f"{name}.{block} has no doc"
