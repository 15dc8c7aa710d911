"""The language without silent traps: names in scope are references, string parameters have choices, booleans are not
numbers, module names as PyTorch allows them, blocks with several inputs, several outputs read by number, held tensors."""

from __future__ import annotations

import pytest
import torch

import netdsl
from netdsl.backends.pytorch import build_module, cross_check
from netdsl.errors import SpecError
from netdsl.graph.load import load_tree
from netdsl.graph.names import TORCH_ATTRIBUTES
from netdsl.lang.formats import parse_tree
from netdsl.lang.write_net import write_net
from netdsl.lang.yaml_tree import load_yaml
from netdsl.layers.named_activation import ELEMENTWISE
from tests.conftest import SPECS

HEAD = "netdsl: 1\nname: t\ninput: 8x8x8\n"


def load(text: str) -> netdsl.Graph:
    return netdsl.load_text(HEAD + text, "t.yaml")


def messages(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        load(text)
    return [str(d) for d in info.value.diagnostics]


# -- a name in scope is a reference -------------------------------------------------------------------------------------
WRAP = """import: [common]
blocks:
  wrap:
    params: {act: {default: relu6, choices: [relu, relu6, hardswish, none]}}
    layers: [conv_bn_act: {out: 4, act: act}]
layers:
  - wrap: {act: ACT}
"""


@pytest.mark.parametrize("act", ["relu6", "hardswish", "relu"])
def test_a_parameter_named_by_a_bare_word_passes_its_value_on(act):
    """`act: act` used to pass the word 'act' on (MobileNetV1 lost every activation); it is the parameter's value."""
    g = load(WRAP.replace("ACT", act))
    assert [n.op for n in g] == ["conv2d", "batchnorm", act]


def test_activation_none_leaves_the_activation_out():
    assert [n.op for n in load(WRAP.replace("ACT", "none"))] == ["conv2d", "batchnorm"]


def test_a_word_outside_the_choices_is_an_error_at_the_use_with_the_choices():
    assert messages(WRAP.replace("ACT", "hardswsh")) == [
        "t.yaml:10:17: block 'wrap': 'act': 'hardswsh' is not one of relu, relu6, hardswish, none; did you mean 'hardswish'?"
    ]


def test_the_builtin_conv_bn_act_checks_act_at_the_use():
    assert messages("import: [common]\nlayers:\n  - conv_bn_act: {out: 4, act: hardswsh}\n") == [
        "t.yaml:6:32: block 'conv_bn_act': 'act': 'hardswsh' is not one of " + ", ".join(ELEMENTWISE) + ", none; did you mean 'hardswish'?"
    ]


def test_conv_bn_act_offers_every_elementwise_activation():
    """The built-in library's choices are the registered activations (they cannot drift apart)."""
    tree = load_yaml((SPECS.parent / "netdsl" / "blocks" / "common.yaml").read_text(), "common.yaml")
    assert tree["blocks"]["conv_bn_act"]["params"]["act"]["choices"] == [*ELEMENTWISE, "none"]


def test_a_word_that_is_both_a_choice_and_a_name_in_scope_is_an_error():
    text = "params: {relu: 3}\nimport: [common]\nlayers:\n  - conv_bn_act: {out: 4, act: relu}\n"
    assert messages(text) == [
        "t.yaml:7:32: block 'conv_bn_act': 'act': 'relu' is both one of its choices and a name in scope; write =relu to pass the name's value on"
    ]


def test_a_layer_option_word_that_is_also_a_name_in_scope_is_an_error():
    text = "params: {nearest: 2}\nlayers:\n  - upsample: {scale: 2, mode: nearest}\n"
    assert messages(text) == [
        "t.yaml:6:32: upsample '0': 'mode': 'nearest' is both a value this option takes and a name in scope; write =nearest to pass the name's value on"
    ]


def test_a_layer_option_takes_a_parameter_by_name():
    g = load("params: {how: {default: bilinear, choices: [nearest, bilinear]}}\nlayers:\n  - upsample: {scale: 2, mode: how}\n")
    assert g.nodes[0].layer.mode == "bilinear"


def test_a_block_word_parameter_must_declare_its_choices():
    text = "blocks:\n  b:\n    params: {act: relu}\n    layers: [relu]\nlayers: [b]\n"
    assert messages(text) == [
        "t.yaml:6:19: block 'b' parameter 'act' has the word 'relu' for a default; declare the words it may be: act: {default: relu, choices: [...]}"
    ]


def test_a_default_outside_the_choices_is_an_error():
    text = "blocks:\n  b:\n    params: {act: {default: tanh, choices: [relu]}}\n    layers: [relu]\nlayers: [b]\n"
    assert messages(text) == ["t.yaml:6:29: block 'b' parameter 'act': the default 'tanh' is not one of relu"]


def test_an_unknown_word_for_a_parameter_without_choices_is_an_unknown_name():
    text = "blocks:\n  b:\n    params: {n: null}\n    layers: [conv: {out: n, k: 1}]\nlayers:\n  - b: {n: four}\n"
    assert messages(text) == ["t.yaml:9:12: block 'b': 'n': unknown name 'four' (known: depth_mult, width_mult)"]


def test_spec_parameters_with_choices_check_set():
    text = HEAD + "params: {shortcut: {default: A, choices: [A, B]}}\nlayers: [relu]\n"
    with pytest.raises(SpecError) as info:
        netdsl.load_text(text, "t.yaml", variables={"shortcut": "C"})
    assert [str(d) for d in info.value.diagnostics] == ["--set shortcut=C: parameter 'shortcut': 'C' is not one of A, B"]


def test_library_blocks_do_not_see_the_spec_parameters_but_the_spec_blocks_do():
    text = "params: {c: 4}\nblocks:\n  mine:\n    layers: [conv: {out: c, k: 1}]\nlayers: [mine]\n"
    assert load(text).output_shape == (4, 8, 8)


# -- booleans are not numbers -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("se * 4", "'se * 4' does arithmetic on a boolean; booleans are not numbers (use 'x if flag else y')"),
        ("max(se, 4)", "'max(se, 4)' does arithmetic on a boolean; booleans are not numbers (use 'x if flag else y')"),
        ("4 if se == 1 else 8", "'se == 1' compares a boolean with a number; booleans are not numbers"),
    ],
)
def test_booleans_are_not_numbers(expr, message):
    text = f"params: {{se: true}}\nlayers:\n  - conv: {{out: '{expr}', k: 1}}\n"
    assert messages(text) == [f"t.yaml:6:17: conv '0': 'out': {message}"]


def test_booleans_still_choose():
    assert load("params: {se: true}\nlayers:\n  - conv: {out: '4 if se else 8', k: 1}\n").output_shape == (4, 8, 8)


# -- module names ---------------------------------------------------------------------------------------------------
def test_names_may_hold_any_character_but_a_dot():
    """torchvision's RegNet names its blocks `block1-0`; a strict state-dict load needs the same path."""
    g = load("layers:\n  - group: {name: block1-0, layers: [conv: {name: 'conv a', out: 4, k: 1}]}\n  - relu: {from: block1-0}\n")
    assert list(g.state_dict_shapes()) == ["block1-0.conv a.weight", "block1-0.conv a.bias"]
    model = build_module(g, seed=0)
    assert list(model.state_dict()) == ["block1-0.conv a.weight", "block1-0.conv a.bias"]
    assert model(torch.randn(1, 8, 8, 8)).shape == (1, 4, 8, 8)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("forward", "'forward' is an attribute of every PyTorch module; choose another name"),
        ("/abs", "a name cannot start with '/' (that begins an absolute module path)"),
        ("input", "'input' is reserved for the input"),
    ],
)
def test_names_pytorch_cannot_hold_are_refused(name, why):
    """A dot is refused by the schema already (a name without dots); these pass the schema and reach the builder."""
    assert messages(f"layers:\n  - relu: {{name: '{name}'}}\n") == [f"t.yaml:5:18: bad name '{name}': {why}"]


def test_reserved_names_cover_the_installed_torch():
    from torch import fx, nn

    graph = fx.Graph()
    graph.output(None)
    module = fx.GraphModule(nn.Module(), graph)
    assert {n for n in set(dir(module)) | set(vars(module)) if not n.startswith("__")} <= TORCH_ATTRIBUTES


# -- blocks with several inputs --------------------------------------------------------------------------------------
FUSE = """blocks:
  fuse:
    params: {out: null, src: {default: x, choices: [x, h]}}
    inputs: [x, h]
    layers:
      - conv: {name: px, from: src, out: out, k: 1}
      - conv: {name: ph, from: h, out: out, k: 1}
      - add: {from: [px, ph]}
layers:
  - conv: {name: a, out: 8, k: 1}
  - conv: {name: b, out: 6, k: 1}
  - fuse: {from: [a, b], out: 4}
"""


def test_a_block_takes_several_inputs_by_name():
    g = load(FUSE)
    assert g.node("2.px").inputs == ("a",) and g.node("2.ph").inputs == ("b",)
    assert g.node("2.px").input_shapes == ((8, 8, 8),) and g.output_shape == (4, 8, 8)


def test_from_takes_a_block_parameter():
    g = load(FUSE.replace("out: 4}", "out: 4, src: h}"))
    assert g.node("2.px").inputs == ("b",)


def test_a_block_input_that_is_not_given_is_an_error():
    assert messages(FUSE.replace("from: [a, b], ", "")) == ["t.yaml:15:5: block 'fuse' takes 2 inputs (x, h); got one"]


def test_multi_input_blocks_round_trip_through_the_text_format():
    tree = load_yaml(HEAD + FUSE, "t.yaml")
    text = "\n".join(line.text for line in write_net(tree, "t.net", []))
    assert "block fuse(out, src: [x, h] = x) from x, h {" in text
    assert load_tree(parse_tree(text + "\n", "t.net", "net"), "t.net").state_dict_shapes() == load(FUSE).state_dict_shapes()


# -- several outputs, read by number ----------------------------------------------------------------------------------
def test_from_reads_a_numbered_output_of_a_split():
    g = load("layers:\n  - split: {name: s, sizes: [3, 5]}\n  - relu: {name: a, from: s.1}\n  - relu: {name: b, from: s}\n  - concat: {from: [a, b]}\n")
    assert g.node("a").input_shapes == ((5, 8, 8),) and g.node("b").input_shapes == ((3, 8, 8),)
    x = torch.randn(2, 8, 8, 8)
    out = build_module(g, seed=0)(x)
    assert torch.equal(out, torch.cat([x[:, 3:].relu(), x[:, :3].relu()], 1))


def test_a_numbered_output_out_of_range_is_an_error():
    assert messages("layers:\n  - split: {name: s, sizes: [3, 5]}\n  - relu: {from: s.7}\n") == ["t.yaml:6:18: 's.7': 's' has 2 outputs, s.0 to s.1"]


# -- tensors held at a layer's own path ---------------------------------------------------------------------------------
def test_held_tensors_sit_at_the_layer_path():
    """ViT's class_token and encoder.pos_embedding, ConvNeXt's layer_scale: parameters of the enclosing module."""
    text = (
        "layers:\n  - reshape: [8, 64]\n  - permute: [1, 0]\n  - class_token: {name: class_token}\n"
        "  - group: {name: encoder, layers: [pos_embedding: {name: pos_embedding}, layer_scale: {name: scale, dim: -1, value: 0.5}]}\n"
    )
    g = load(text)
    assert g.state_dict_shapes() == {"class_token": (1, 1, 8), "encoder.pos_embedding": (1, 65, 8), "encoder.scale": (8,)}
    model = build_module(g, seed=0)
    assert cross_check(model, g) == []
    x = torch.randn(2, 8, 8, 8)
    tokens = x.reshape(2, 8, 64).permute(0, 2, 1)
    want = (torch.cat([model.class_token.expand(2, -1, -1), tokens], 1) + model.encoder.pos_embedding) * 0.5
    assert torch.equal(model.class_token, torch.zeros(1, 1, 8))
    assert torch.allclose(model(x), want)


def test_a_switched_off_item_may_read_what_is_switched_off_too():
    """ShuffleNet's first unit reads `halves.1`; where the split is switched off, so is that reader (no error)."""
    text = "params: {halved: false}\nlayers:\n  - split: {name: halves, sizes: [4, 4], when: halved}\n  - relu: {name: b, from: halves.1, when: halved}\n  - relu: {from: halves}\n"
    g = load(text)
    assert [n.op for n in g] == ["relu"] and g.nodes[0].inputs == ("input",)
    assert [n.name for n in load(text.replace("halved: false", "halved: true"))] == ["halves", "b", "2"]


def test_every_builtin_activation_parameter_offers_every_elementwise_activation():
    """The built-in libraries' `act` choices are the registered activations (they cannot drift apart)."""
    blocks = SPECS.parent / "netdsl" / "blocks"
    tree = load_yaml((blocks / "common.yaml").read_text(), "common.yaml")
    assert tree["blocks"]["squeeze_excitation"]["params"]["act"]["choices"] == list(ELEMENTWISE)


def test_init_reaches_attention_and_recurrent_weights():
    """Attention and LSTM have no `weight`: an init method applies to every matrix, the bias rule to every vector."""
    g = netdsl.load_text(
        "netdsl: 1\nname: t\ninput: 5x8\nlayers:\n  - lstm: {hidden: 4, init: {method: ones, bias: 0.5}}\n  - attention: {heads: 2, init: zeros}\n"
    )
    state = build_module(g, seed=0).state_dict()
    assert all(torch.all(state[f"0.{k}"] == 1) for k in ("weight_ih_l0", "weight_hh_l0"))
    assert all(torch.all(state[f"0.{k}"] == 0.5) for k in ("bias_ih_l0", "bias_hh_l0"))
    assert all(torch.all(v == 0) for k, v in state.items() if k.startswith("1."))


def test_a_sequence_input_rule_varies_the_length():
    """An L x E input read by attention and recurrent layers accepts any length L, not any E."""
    from netdsl.graph.input_sizes import input_rule

    g = netdsl.load_text("netdsl: 1\nname: t\ninput: 10x16\nlayers:\n  - attention: {heads: 4}\n  - lstm: {hidden: 8, output: last}\n")
    assert str(input_rule(g)) == "L (the sequence) >= 1"
    conv1d = netdsl.load_text("netdsl: 1\nname: t\ninput: 2x100\nlayers:\n  - conv1d: {out: 4, k: 5}\n  - gap\n")
    assert str(input_rule(conv1d)) == "L >= 5"


def test_a_position_embedding_fixes_the_token_count():
    """ViT-B/16's pos_embedding has 197 rows: 224 to 239 pixels give 14 x 14 patches, nothing else fits."""
    from netdsl.graph.input_sizes import input_rule

    assert str(input_rule(netdsl.load(SPECS / "vit_b_16.yaml"))) == "H, W from 224 to 239"
