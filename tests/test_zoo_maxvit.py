"""MaxViT: the relative_attention layer, window and grid partition attention against transcriptions of torchvision's
maxvit.py, errors, MACs, and maxvit_t against torchvision's counts and its own output."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import netdsl
from netdsl.deploy.onnx import export
from netdsl.layers.core import StochasticDepth
from netdsl.layers.modules.window import RelativeAttention, relative_position_index
from tests.conftest import SPECS, reference_models
from tests.test_window_layers import error_of

pytestmark = pytest.mark.usefixtures("one_thread")


def spec(input_shape: str, *layers: str) -> str:
    return f"netdsl: 1\nname: t\ninput: {input_shape}\nimport: [maxvit]\nlayers:\n" + "".join(f"  - {item}\n" for item in layers)


def filled(module: torch.nn.Module) -> torch.nn.Module:
    """Random weights large enough that every term matters, in float64 and eval mode."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    return module.double().eval()


# ---------------------------------------------------------------- transcriptions of torchvision 0.29.1's maxvit.py


def torchvision_relative_attention(x, to_qkv_w, to_qkv_b, merge_w, merge_b, table, head_dim):
    """RelativePositionalMultiHeadAttention.forward (and _get_relative_position_index), transcribed: x is B x G x P x D."""
    B, G, P, D = x.shape
    H, DH = D // head_dim, head_dim
    size = int(math.sqrt(P))
    coords = torch.stack(torch.meshgrid([torch.arange(size), torch.arange(size)], indexing="ij"))
    coords_flat = torch.flatten(coords, 1)
    relative_coords = coords_flat[:, :, None] - coords_flat[:, None, :]
    relative_coords = relative_coords.permute(1, 2, 0).contiguous()
    relative_coords[:, :, 0] += size - 1
    relative_coords[:, :, 1] += size - 1
    relative_coords[:, :, 0] *= 2 * size - 1
    index = relative_coords.sum(-1)

    qkv = F.linear(x, to_qkv_w, to_qkv_b)
    q, k, v = torch.chunk(qkv, 3, dim=-1)
    q = q.reshape(B, G, P, H, DH).permute(0, 1, 3, 2, 4)
    k = k.reshape(B, G, P, H, DH).permute(0, 1, 3, 2, 4)
    v = v.reshape(B, G, P, H, DH).permute(0, 1, 3, 2, 4)
    k = k * D**-0.5  # scale_factor = feat_dim ** -0.5
    dot_prod = torch.einsum("B G H I D, B G H J D -> B G H I J", q, k)
    pos_bias = table[index.view(-1)].view(P, P, -1).permute(2, 0, 1).contiguous().unsqueeze(0)
    dot_prod = F.softmax(dot_prod + pos_bias, dim=-1)
    out = torch.einsum("B G H I J, B G H J D -> B G H I D", dot_prod, v)
    out = out.permute(0, 1, 3, 2, 4).reshape(B, G, P, D)
    return F.linear(out, merge_w, merge_b)


def window_partition(x, p):
    B, C, H, W = x.shape
    x = x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(B, (H // p) * (W // p), p * p, C)


def window_departition(x, p, hp, wp):
    B, _, _, C = x.shape
    x = x.reshape(B, hp, wp, p, p, C).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(B, C, hp * p, wp * p)


def torchvision_partition_attention(x, sd, prefix, partition, kind, head_dim):
    """PartitionAttentionLayer.forward in eval mode (dropout and stochastic depth the identity), its weights from sd."""
    _, C, H, W = x.shape
    n_partitions = H // partition
    p = partition if kind == "window" else n_partitions
    gh, gw = H // p, W // p
    x = window_partition(x, p)
    if kind == "grid":
        x = x.swapaxes(-2, -3)
    w = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    y = F.layer_norm(x, (C,), w["attn_layer.0.weight"], w["attn_layer.0.bias"], 1e-5)
    a = "attn_layer.1."
    y = torchvision_relative_attention(
        y, w[a + "to_qkv.weight"], w[a + "to_qkv.bias"], w[a + "merge.weight"], w[a + "merge.bias"], w[a + "relative_position_bias_table"], head_dim
    )
    x = x + y
    y = F.layer_norm(x, (C,), w["mlp_layer.0.weight"], w["mlp_layer.0.bias"], 1e-5)
    y = F.linear(F.gelu(F.linear(y, w["mlp_layer.1.weight"], w["mlp_layer.1.bias"])), w["mlp_layer.3.weight"], w["mlp_layer.3.bias"])
    x = x + y
    if kind == "grid":
        x = x.swapaxes(-2, -3)
    return window_departition(x, p, gh, gw)


# ---------------------------------------------------------------- the layer


@pytest.mark.parametrize(("g", "size", "c", "head_dim"), [(3, 3, 8, 4), (2, 2, 6, 2), (4, 1, 4, 4), (1, 4, 16, 16)])
def test_relative_attention_equals_torchvision(g, size, c, head_dim):
    node = netdsl.load_text(spec(f"{g}x{size * size}x{c}", f"relative_attention: {{head_dim: {head_dim}}}")).nodes[-1]
    module = filled(node.layer.to_torch(node.input_shapes))
    x = torch.randn(2, g, size * size, c, dtype=torch.float64)
    with torch.no_grad():
        got = module(x)
        want = torchvision_relative_attention(
            x, module.to_qkv.weight, module.to_qkv.bias, module.merge.weight, module.merge.bias, module.relative_position_bias_table, head_dim
        )
    assert node.shape == (g, size * size, c) and got.shape == (2, g, size * size, c)
    assert torch.allclose(got, want, rtol=0, atol=1e-12)
    heads = c // head_dim
    assert node.params() == [
        ("0.relative_position_bias_table", ((2 * size - 1) ** 2, heads)),
        ("0.to_qkv.weight", (3 * c, c)),
        ("0.to_qkv.bias", (3 * c,)),
        ("0.merge.weight", (c, c)),
        ("0.merge.bias", (c,)),
    ]
    assert [(k, tuple(v.shape)) for k, v in module.state_dict().items()] == [
        ("relative_position_bias_table", ((2 * size - 1) ** 2, heads)),
        ("relative_position_index", (size * size, size * size)),  # torchvision's order: own parameter, own buffer, children
        ("to_qkv.weight", (3 * c, c)),
        ("to_qkv.bias", (3 * c,)),
        ("merge.weight", (c, c)),
        ("merge.bias", (c,)),
    ]


def test_the_position_bias_matters():
    """Two groups holding the same tokens in another order attend differently only through the relative position bias."""
    module = filled(RelativeAttention(4, 2, 2))
    x = torch.randn(1, 1, 4, 4, dtype=torch.float64)
    order = torch.tensor([3, 1, 0, 2])
    with torch.no_grad():
        straight, shuffled = module(x), module(x[:, :, order])
        assert (straight[:, :, order] - shuffled).abs().max() > 1e-3
        module.relative_position_bias_table.zero_()
        assert torch.allclose(module(x)[:, :, order], module(x[:, :, order]), rtol=0, atol=1e-12)


def test_relative_position_index_is_swins_unflattened():
    index = RelativeAttention(64, 32, 7).relative_position_index
    assert index.shape == (49, 49) and index.dtype == torch.int64  # maxvit_t.state_dict.json: relative_position_index [49, 49]
    assert torch.equal(index.flatten(), relative_position_index((7, 7)))
    assert index.diagonal().unique().tolist() == [6 * 13 + 6]  # zero offset: the middle of the 13 x 13 table


def test_relative_attention_macs_count_linears_and_both_matmuls():
    node = netdsl.load_text(spec("5x9x8", "relative_attention: {head_dim: 4}")).nodes[-1]
    # per group of P = 9 tokens, C = 8: P*C*3C + P*C*C + 2*P*P*C = 1728 + 576 + 1296
    assert node.macs() == 5 * (1728 + 576 + 1296)
    assert node.buffers() == [("0.relative_position_index", (9, 9))]


# ---------------------------------------------------------------- window and grid attention (blocks/maxvit.yaml)


@pytest.mark.parametrize(
    ("kind", "c", "h", "w", "partition", "head_dim"), [("window", 8, 6, 6, 3, 4), ("window", 4, 6, 9, 3, 2), ("grid", 8, 6, 6, 3, 4), ("grid", 6, 8, 8, 2, 3)]
)
def test_partition_attention_equals_torchvision(kind, c, h, w, partition, head_dim):
    graph = netdsl.load_text(spec(f"{c}x{h}x{w}", f"maxvit_attention: {{name: a, kind: {kind}, partition: {partition}, head_dim: {head_dim}}}"))
    assert graph.output_shape == (c, h, w)
    attention = next(n for n in graph if n.op == "relative_attention")
    tokens = partition * partition
    assert attention.name == "a.attn_layer.1" and attention.input_shapes[0] == (h * w // tokens, tokens, c)
    model = filled(netdsl.compile(graph))
    x = torch.randn(2, c, h, w, dtype=torch.float64)
    with torch.no_grad():
        got = model(x)
        want = torchvision_partition_attention(x, model.state_dict(), "a.", partition, kind, head_dim)
    assert torch.allclose(got, want, rtol=0, atol=1e-12)


def test_window_and_grid_group_different_tokens():
    """A window group holds neighbours, a grid group positions H // partition apart: the two outputs differ."""
    outputs = []
    x = torch.randn(1, 4, 4, 4, dtype=torch.float64)
    for kind in ("window", "grid"):
        graph = netdsl.load_text(spec("4x4x4", f"maxvit_attention: {{name: a, kind: {kind}, partition: 2, head_dim: 2}}"))
        model = filled(netdsl.compile(graph))
        with torch.no_grad():
            outputs.append(model(x))
    assert (outputs[0] - outputs[1]).abs().max() > 1e-3


# ---------------------------------------------------------------- errors, located by the builder


def test_relative_attention_needs_groups_tokens_channels():
    message = error_of(spec("8x8", "relative_attention: {head_dim: 4}"))
    assert message.startswith(
        "<spec>:6:5: relative_attention '0': relative_attention needs a G x P x C input (groups x tokens x channels), got 8x8; "
        "partition the map first (maxvit_attention)"
    )


def test_relative_attention_needs_a_square_number_of_tokens():
    message = error_of(spec("2x10x8", "relative_attention: {head_dim: 4}"))
    assert message.startswith(
        "<spec>:6:5: relative_attention '0': relative_attention needs s * s tokens per group (an s x s partition), got 10 (the input is 2x10x8)"
    )


def test_head_dim_must_divide_the_channels():
    message = error_of(spec("2x9x12", "relative_attention: {head_dim: 5}"))
    assert message.startswith("<spec>:6:5: relative_attention '0': head_dim 5 does not divide the 12 channels (the input is 2x9x12)")


def test_the_map_must_be_a_multiple_of_the_partition():
    message = error_of(spec("8x10x10", "maxvit_attention: {name: a, partition: 7, head_dim: 4}"))
    # found in the block's first reshape, which the message locates, and traced to the use in the spec
    assert "reshape to 8x1x7x1x7 (392 elements) does not fit the input 8x10x10 (800 elements)" in message
    assert message.rstrip().endswith("in block 'maxvit_attention' used at <spec>:6:5)")


# ---------------------------------------------------------------- maxvit_t against torchvision


def test_maxvit_t_counts_equal_torchvision():
    graph = netdsl.load(SPECS / "maxvit_t.yaml")
    # torchvision/models/maxvit.py, MaxVit_T_Weights.IMAGENET1K_V1.meta: "num_params": 30919624, "_ops": 5.558 (GFLOPS,
    # in fact multiply-accumulates of convs, linears and the two attention matmuls; the docs' table rounds it to 5.56)
    assert sum(n.param_count() for n in graph) == 30_919_624 == reference_models()["maxvit_t"]["params"]
    assert sum(n.macs() for n in graph) == pytest.approx(5.558e9, abs=0.0005e9)
    assert graph.output_shape == (1000,)


def test_maxvit_t_stochastic_depth_follows_torchvision():
    """np.linspace(0, 0.2, 11): layer k of the 11 drops all three of its branches with probability 0.2 * k / 10."""
    graph = netdsl.load(SPECS / "maxvit_t.yaml")
    drops = [n.layer.p for n in graph if isinstance(n.layer, StochasticDepth)]
    assert drops == pytest.approx([0.2 * k / 10 for k in range(11) for _ in range(5)])  # MBconv, 2 per attention layer
    strided = [n.name for n in graph if n.op == "conv2d" and n.layer.stride == (2,)]
    assert strided == ["stem.0.0"] + [f"blocks.{s}.layers.0.layers.MBconv.layers.conv_b.0" for s in range(4)]


def test_maxvit_t_position_index_is_an_integer_buffer():
    """torchvision keeps relative_position_index as int64 (so published weights load as they are); its layout, order and
    output are checked with every torchvision twin in tests/test_zoo_torchvision.py."""
    with torch.device("meta"):
        model = netdsl.compile(SPECS / "maxvit_t.yaml")
    assert model.state_dict()["blocks.0.layers.0.layers.grid_attention.attn_layer.1.relative_position_index"].dtype == torch.int64


def test_small_maxvit_layer_exports_to_onnx(tmp_path):
    """A MaxViT layer at stride 2 (proj's average pool, MBConv, window and grid attention) exports, and onnxruntime agrees
    at batch 1 and 3."""
    graph = netdsl.load_text(spec("8x6x6", "maxvit_layer: {name: l, out: 8, stride: 2, head_dim: 4, partition: 3}", "global_avgpool", "linear: 5"))
    assert [n.input_shapes[0] for n in graph if n.op == "relative_attention"] == [(1, 9, 8), (1, 9, 8)]  # 3x3 map: one group each
    result = export(graph, tmp_path / "maxvit.onnx")
    assert [c.batch for c in result.comparisons] == [1, 3] and all(c.ok for c in result.comparisons)
