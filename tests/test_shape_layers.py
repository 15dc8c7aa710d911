"""Layout layers (permute, reshape, flatten ranges, transpose, split, channel_shuffle, select), N-D linear, layernorm2d,
stochastic depth: their shape rules, located errors, and the torch modules against torch's own ops."""

from __future__ import annotations

import json
import math
from pathlib import Path

import onnx
import pytest
import torch
import torch.nn.functional as F

import netdsl
from netdsl.errors import SpecError
from netdsl.graph.load import load_tree
from netdsl.lang.convert import rewrite
from netdsl.lang.text import parse_net

pytestmark = pytest.mark.usefixtures("one_thread")

DATA = Path(__file__).parent / "data" / "torchvision"


def spec(layers: str, input_shape: str) -> str:
    body = "".join(f"  - {line}\n" for line in layers.strip().splitlines())
    return f"netdsl: 1\nname: t\ninput: {input_shape}\nlayers:\n{body}"


def one(layer: str, input_shape: str) -> netdsl.Node:
    return netdsl.load_text(spec(layer, input_shape)).nodes[-1]


def error(layer: str, input_shape: str) -> str:
    with pytest.raises(SpecError) as info:
        netdsl.load_text(spec(layer, input_shape))
    return str(info.value)


def run(node: netdsl.Node, x: torch.Tensor) -> torch.Tensor:
    module = node.layer.to_torch(node.input_shapes).eval()
    with torch.no_grad():
        return module(x)


# -- permute ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("dims", "shape"), [("[1, 2, 0]", (4, 5, 3)), ("[2, 0, 1]", (5, 3, 4)), ("[0, -1, 1]", (3, 5, 4)), ("[0, 1, 2]", (3, 4, 5))])
def test_permute_output_dim_i_is_input_dim_dims_i(dims, shape):
    node = one(f"permute: {dims}", "3x4x5")
    assert node.shape == shape
    x = torch.randn(2, 3, 4, 5)
    torch_dims = [d % 3 + 1 for d in json.loads(dims)]  # per-sample dims shifted past the batch dim
    assert torch.equal(run(node, x), x.permute(0, *torch_dims))


@pytest.mark.parametrize("dims", ["[0, 0, 1]", "[1, 0]", "[0, 1, 3]", "[0, 1, 2, 3]"])
def test_permute_refuses_what_is_not_a_permutation(dims):
    assert error(f"permute: {dims}", "3x4x5") == f"<spec>:5:5: permute '0': permute {dims} is not a permutation of 0..2 (the input is 3x4x5)"


# -- reshape and flatten ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("shape", "out"), [("[2, 10]", (2, 10)), ("[-1, 2]", (10, 2)), ("[20]", (20,)), ("[2, 2, -1, 5]", (2, 2, 1, 5))])
def test_reshape(shape, out):
    node = one(f"reshape: {shape}", "4x5")
    assert node.shape == out and node.param_count() == 0
    x = torch.randn(3, 4, 5)
    assert torch.equal(run(node, x), x.reshape(3, *out))


def test_reshape_errors_show_both_sizes():
    assert error("reshape: [3, 7]", "4x5") == "<spec>:5:5: reshape '0': reshape to 3x7 (21 elements) does not fit the input 4x5 (20 elements)"
    assert error("reshape: [3, -1]", "4x5") == "<spec>:5:5: reshape '0': reshape to 3x-1 does not fit the input 4x5 (20 elements are not a multiple of 3)"
    assert error("reshape: [-1, -1]", "4x5") == "<spec>:5:5: reshape '0': only one size may be -1; got [-1, -1]"
    message = error("reshape: [0, 20]", "4x5")
    assert message.startswith("<spec>:5:15: reshape") and "must be -1 or an integer >= 1; got 0" in message


def test_reshaped_batch_stays_dynamic():
    node = one("reshape: [-1, 4]", "4x5")
    module = node.layer.to_torch(node.input_shapes)
    assert [tuple(module(torch.randn(b, 4, 5)).shape) for b in (1, 7)] == [(1, 5, 4), (7, 5, 4)]


@pytest.mark.parametrize(
    ("options", "shape", "torch_dims"),
    [("", (120,), (1, 3)), ("{start: 1}", (4, 30), (2, 3)), ("{end: 1}", (20, 6), (1, 2)), ("{start: -2, end: -2}", (4, 5, 6), (2, 2))],
)
def test_flatten_start_end(options, shape, torch_dims):
    node = one(f"flatten: {options}" if options else "flatten", "4x5x6")
    assert node.shape == shape
    x = torch.randn(2, 4, 5, 6)
    assert torch.equal(run(node, x), torch.flatten(x, *torch_dims))


def test_flatten_errors():
    assert error("flatten: {start: 2, end: 1}", "4x5x6") == "<spec>:5:5: flatten '0': flatten start 2 comes after end 1 (the input is 4x5x6)"
    assert error("flatten: {start: 3}", "4x5x6") == (
        "<spec>:5:5: flatten '0': flatten start 3 is out of range for the input 4x5x6 (dims 0..2, or -3..-1 from the end)"
    )


# -- transpose --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("a", "b", "shape"), [(0, 2, (5, 4, 3)), (-1, -2, (3, 5, 4)), (1, 0, (4, 3, 5))])
def test_transpose(a, b, shape):
    node = one(f"transpose: {{a: {a}, b: {b}}}", "3x4x5")
    assert node.shape == shape
    x = torch.randn(2, 3, 4, 5)
    assert torch.equal(run(node, x), x.transpose(a % 3 + 1, b % 3 + 1))


def test_transpose_errors():
    assert error("transpose: {a: -1, b: 2}", "3x4x5") == (
        "<spec>:5:5: transpose '0': transpose dims a = -1 and b = 2 are the same dim of the input 3x4x5; give two different dims"
    )
    assert error("transpose: {a: 0, b: 3}", "3x4x5") == (
        "<spec>:5:5: transpose '0': transpose dim b 3 is out of range for the input 3x4x5 (dims 0..2, or -3..-1 from the end)"
    )
    message = error("transpose: {a: 0}", "3x4x5")
    assert message.startswith("<spec>:5:") and "transpose" in message and "missing required" in message and "'b'" in message


# -- split ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "parts"),
    [
        ("split: {sizes: [2, 4]}", [(2, 4, 5), (4, 4, 5)]),
        ("split: {parts: 3}", [(2, 4, 5)] * 3),
        ("chunk: {parts: 2, dim: 1}", [(6, 2, 5)] * 2),
        ("split: {sizes: [1, 3, 1], dim: -1}", [(6, 4, 1), (6, 4, 3), (6, 4, 1)]),
    ],
)
def test_split_ports_are_the_parts(options, parts):
    node = one(options, "6x4x5")
    assert node.op == "split" and node.shape == parts[0]  # ordinary consumers read the first part
    assert node.layer.port_shapes(node.input_shapes, node.shape) == tuple(parts) and node.port_count() == len(parts)
    x = torch.randn(2, 6, 4, 5)
    layer = node.layer
    d = layer.dim % 3 + 1
    expected = torch.chunk(x, layer.parts, d) if layer.parts else torch.split(x, list(layer.sizes), d)
    out = run(node, x)
    assert len(out) == len(expected) and all(torch.equal(a, b) for a, b in zip(out, expected))


def test_split_parts_feed_later_layers():
    graph = netdsl.load_text(spec("split: {name: s, sizes: [2, 4]}\nconv: {name: c, out: 4, k: 1}\nadd: {from: [c, s.1]}", "6x4x4"))
    assert [(n.name, n.shape) for n in graph.nodes] == [("s", (2, 4, 4)), ("c", (4, 4, 4)), ("2", (4, 4, 4))]
    model = netdsl.compile(graph, seed=0).eval()
    x = torch.randn(2, 6, 4, 4)
    with torch.no_grad():
        assert torch.allclose(model(x), model.c(x[:, :2]) + x[:, 2:])


def test_split_errors():
    assert error("split: {sizes: [2, 3]}", "6x4x4") == "<spec>:5:5: split '0': split sizes [2, 3] sum to 5, but dim 0 has 6 (input 6x4x4)"
    assert error("split: {parts: 4}", "6x4x4") == "<spec>:5:5: split '0': split into 4 equal parts, but dim 0 has 6, not a multiple of 4 (input 6x4x4)"
    assert error("split: {}", "6x4x4") == "<spec>:5:5: split '0': give one of 'sizes' or 'parts'"
    assert error("split: {parts: 2, sizes: [3, 3]}", "6x4x4") == "<spec>:5:5: split '0': give one of 'sizes' or 'parts', not both"
    assert error("split: {parts: 2, dim: 3}", "6x4x4") == (
        "<spec>:5:5: split '0': split dim 3 is out of range for the input 6x4x4 (dims 0..2, or -3..-1 from the end)"
    )


# -- channel_shuffle --------------------------------------------------------------------------------------------------
def shufflenet_channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """torchvision.models.shufflenetv2.channel_shuffle (torchvision 0.29.1), written out."""
    batch, channels, height, width = x.size()
    x = x.view(batch, groups, channels // groups, height, width)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(batch, -1, height, width)


@pytest.mark.parametrize("groups", [2, 3, 6])
def test_channel_shuffle_is_shufflenets(groups):
    node = one(f"channel_shuffle: {groups}", "12x3x4")
    assert node.shape == (12, 3, 4)
    x = torch.randn(2, 12, 3, 4)
    assert torch.equal(run(node, x), shufflenet_channel_shuffle(x, groups))
    # the same as the layout layers written out: reshape to g x C/g x H x W, swap the first two, reshape back
    graph = netdsl.load_text(spec(f"reshape: [{groups}, -1, 3, 4]\ntranspose: {{a: 0, b: 1}}\nreshape: [12, 3, 4]", "12x3x4"))
    with torch.no_grad():
        assert torch.equal(netdsl.compile(graph)(x), run(node, x))


def test_channel_shuffle_errors():
    assert error("channel_shuffle: 3", "8x4x4") == "<spec>:5:5: channel_shuffle '0': groups 3 must divide the 8 channels (input 8x4x4)"
    assert error("channel_shuffle: 2", "8") == "<spec>:5:5: channel_shuffle '0': channel_shuffle needs a C x L or C x H x W input, got 8"


# -- select -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "shape", "pick"),
    [
        ("select: {index: 1}", (4, 5), lambda x: x[:, 1]),
        ("select: {dim: -1, index: -1}", (3, 4), lambda x: x[:, :, :, -1]),  # e.g. the last time step
        ("index: {dim: 1, index: 2}", (3, 5), lambda x: x[:, :, 2]),
    ],
)
def test_select_removes_the_dim(options, shape, pick):
    node = one(options, "3x4x5")
    assert node.op == "select" and node.shape == shape
    x = torch.randn(2, 3, 4, 5)
    assert torch.equal(run(node, x), pick(x))


def test_select_errors():
    assert error("select: {dim: 1, index: 4}", "3x4x5") == "<spec>:5:5: select '0': index 4 is out of range for dim 1 of size 4 (the input is 3x4x5)"
    assert error("select: {dim: 1, index: -5}", "3x4x5") == "<spec>:5:5: select '0': index -5 is out of range for dim 1 of size 4 (the input is 3x4x5)"
    assert error("select: {index: 0}", "5") == "<spec>:5:5: select '0': select removes a dim, so it needs an input of rank 2 or more, got 5"
    message = error("select: {dim: 0}", "3x4x5")
    assert message.startswith("<spec>:5:") and "select" in message and "missing required" in message and "'index'" in message


# -- linear over the last dim -----------------------------------------------------------------------------------------
def test_linear_maps_the_last_dim_of_any_rank():
    node = one("linear: 3", "2x5x7")
    assert node.shape == (2, 5, 3)
    assert node.params() == [("0.weight", (3, 7)), ("0.bias", (3,))]
    assert node.macs() == 2 * 5 * 7 * 3  # prod(input[:-1]) positions x in x out
    module = node.layer.to_torch(node.input_shapes)
    x = torch.randn(4, 2, 5, 7)
    with torch.no_grad():
        assert torch.allclose(module(x), x @ module.weight.T + module.bias)


# -- layernorm2d and layernorm ----------------------------------------------------------------------------------------
def test_layernorm2d_normalizes_channels_at_each_position():
    node = one("layernorm2d: {eps: 1e-6}", "6x3x4")
    assert node.params() == [("0.weight", (6,)), ("0.bias", (6,))] and node.buffers() == []
    module = node.layer.to_torch(node.input_shapes)
    with torch.no_grad():
        module.weight.uniform_(0.5, 1.5)
        module.bias.uniform_(-1, 1)
        x = torch.randn(2, 6, 3, 4)
        mean, var = x.mean(1, keepdim=True), x.var(1, unbiased=False, keepdim=True)
        expected = (x - mean) / torch.sqrt(var + 1e-6) * module.weight[:, None, None] + module.bias[:, None, None]
        assert torch.allclose(module(x), expected, atol=1e-5)
    assert error("layernorm2d", "6x4") == "<spec>:5:5: layernorm2d '0': layernorm2d needs a C x H x W input, got 6x4"


def test_layernorm_dims_take_any_rank():
    node = one("reshape: [2, 3, 4, 5]\nlayernorm: {dims: 4}", "120")
    assert node.params() == [("1.weight", (2, 3, 4, 5)), ("1.bias", (2, 3, 4, 5))]
    assert error("layernorm: {dims: 4}", "3x4x5") == "<spec>:5:5: layernorm '0': dims 4 exceeds the input's 3 dims (3x4x5)"


CONVNEXT = """netdsl: 1
name: convnext_start
input: 3x32x32
layers:
  - group:
      name: features
      layers:
        - group: {name: "0", layers: [conv: {out: 96, k: 4, s: 4}, layernorm2d: {eps: 1e-6}]}
        - group:
            name: "1"
            layers:
              - group:
                  name: "0"
                  layers:
                    - group:
                        name: block
                        layers:
                          - conv: {out: 96, k: 7, p: 3, groups: 96}
                          - permute: [1, 2, 0]
                          - layernorm: {eps: 1e-6}
                          - linear: 384
                          - gelu
                          - linear: 96
                          - permute: [2, 0, 1]
"""


def test_convnext_stem_and_block_have_torchvisions_layout_and_function():
    """ConvNeXt-T's stem (conv + LayerNorm2d) and its first block's branch (dwconv, permute, LayerNorm, N-D linears)."""
    model = netdsl.compile(netdsl.load_text(CONVNEXT), seed=0).eval()
    mine = {k: list(v.shape) for k, v in model.state_dict().items()}
    reference = json.loads((DATA / "convnext_tiny.state_dict.json").read_text())  # torchvision 0.29.1 convnext_tiny
    assert mine == {k: v for k, v in reference.items() if k.startswith(("features.0.", "features.1.0.block."))}

    # torchvision's CNBlock branch: Conv2d, Permute([0, 2, 3, 1]), LayerNorm, Linear, GELU, Linear, Permute([0, 3, 1, 2])
    stem0, stem1 = model.get_submodule("features.0.0"), model.get_submodule("features.0.1")
    block = {i: model.get_submodule(f"features.1.0.block.{i}") for i in (0, 2, 3, 5)}
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
        y = F.conv2d(x, stem0.weight, stem0.bias, stride=4)
        y = F.layer_norm(y.permute(0, 2, 3, 1), (96,), stem1.weight, stem1.bias, 1e-6).permute(0, 3, 1, 2)
        z = F.conv2d(y, block[0].weight, block[0].bias, padding=3, groups=96).permute(0, 2, 3, 1)
        z = F.layer_norm(z, (96,), block[2].weight, block[2].bias, 1e-6)
        z = F.linear(F.gelu(F.linear(z, block[3].weight, block[3].bias)), block[5].weight, block[5].bias).permute(0, 3, 1, 2)
        assert torch.allclose(model(x), z, atol=1e-4, rtol=1e-4)


# -- stochastic depth -------------------------------------------------------------------------------------------------
def test_stochastic_depth_is_the_identity_in_eval_and_at_p_0():
    x = torch.randn(8, 4, 3, 3)
    assert torch.equal(run(one("stochastic_depth: 0.5", "4x3x3"), x), x)
    module = one("stochastic_depth: 0", "4x3x3").layer.to_torch(((4, 3, 3),)).train()
    assert torch.equal(module(x), x)
    assert one("stochastic_depth: {p: 0.3, mode: batch}", "4x3x3").param_count() == 0


def test_stochastic_depth_row_drops_whole_samples():
    torch.manual_seed(0)
    p, n = 0.25, 20000
    module = one("stochastic_depth: 0.25", "3x2").layer.to_torch(((3, 2),)).train()
    x = torch.randn(n, 3, 2)
    y = module(x)
    dropped = (y == 0).flatten(1).all(1)
    assert abs(dropped.float().mean().item() - p) < 0.02  # binomial std: sqrt(p (1 - p) / n) = 0.003
    assert torch.allclose(y[~dropped], x[~dropped] / (1 - p))  # survivors scaled by 1/(1-p), whole rows
    ones = module(torch.ones(n, 3, 2))
    assert abs(ones.mean().item() - 1) < 0.03  # the expectation is the input


def test_stochastic_depth_batch_drops_everything_or_nothing():
    torch.manual_seed(0)
    p = 0.4
    module = one("stochastic_depth: {p: 0.4, mode: batch}", "3").layer.to_torch(((3,),)).train()
    outcomes = [module(torch.ones(5, 3)) for _ in range(2000)]
    zero = [bool((y == 0).all()) for y in outcomes]
    assert all(z or torch.allclose(y, torch.full((5, 3), 1 / (1 - p))) for z, y in zip(zero, outcomes))
    assert abs(sum(zero) / len(zero) - p) < 0.05  # binomial std 0.011
    assert torch.equal(one("stochastic_depth: 1", "3").layer.to_torch(((3,),)).train()(torch.ones(4, 3)), torch.zeros(4, 3))


def test_stochastic_depth_errors():
    # option values are checked by the schema and the builder (their wording is theirs): located at the value
    message = error("stochastic_depth: 1.5", "3")
    assert message.startswith("<spec>:5:23: stochastic_depth") and "'p' must be a number >= 0 and <= 1; got 1.5" in message
    message = error("stochastic_depth: {p: 0.1, mode: rows}", "3")
    assert message.startswith("<spec>:5:38: stochastic_depth") and "'mode' must be one of 'row', 'batch'; got 'rows'" in message


# -- summaries and ONNX -----------------------------------------------------------------------------------------------
def test_describe():
    graph = netdsl.load_text(spec("permute: [1, 2, 0]\nreshape: [-1, 6]\nsplit: {sizes: [2, 4], dim: -1}\nselect: {index: -1}", "6x4x4"))
    assert [n.layer.describe() for n in graph.nodes] == ["[1, 2, 0]", "-1x6", "sizes=[2, 4], dim=-1", "-1"]


LAYOUT = """netdsl: 1
name: layout
input: 8x6x6
layers:
  - conv: {out: 8, k: 3, p: 1}
  - channel_shuffle: 2
  - layernorm2d
  - stochastic_depth: 0.2
  - split: {name: parts, sizes: [3, 5]}
  - conv: {name: c1, out: 5, k: 1}
  - add: {from: [c1, parts.1]}
  - permute: [1, 2, 0]
  - reshape: [36, 5]
  - transpose: {a: 0, b: 1}
  - flatten: {start: 0, end: 0}
  - linear: 4
  - select: {dim: 0, index: -1}
"""


def test_text_format_round_trip():
    net = rewrite(LAYOUT, "layout.yaml", "net")
    assert "permute([1, 2, 0]) -> reshape([36, 5])" in net and "select(dim=0, index=-1)" in net
    again = load_tree(parse_net(net), "layout.net")
    assert [(n.name, n.layer, n.shape) for n in again.nodes] == [(n.name, n.layer, n.shape) for n in netdsl.load_text(LAYOUT).nodes]


def test_layout_layers_export_to_onnx_and_verify(tmp_path):
    graph = netdsl.load_text(LAYOUT)
    assert graph.nodes[-1].shape == (4,)
    result = netdsl.export(graph, tmp_path / "layout.onnx")  # onnx.checker, then onnxruntime vs PyTorch at batch 1 and 3
    assert [c.batch for c in result.comparisons] == [1, 3] and all(c.ok for c in result.comparisons)
    ops = {node.op_type for node in onnx.load(str(tmp_path / "layout.onnx")).graph.node}
    assert {"Transpose", "Reshape", "Split"} <= ops, ops
    assert math.prod(d.dim_value for d in onnx.load(str(tmp_path / "layout.onnx")).graph.output[0].type.tensor_type.shape.dim[1:]) == 4
