"""Swin's window layers (shifted_window_attention, patch_merging) and the Swin zoo: torchvision's function, masks,
relative position index, errors, MACs, and swin_t against torchvision's own output."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import netdsl
from netdsl.deploy.onnx import export
from netdsl.errors import SpecError
from netdsl.layers.core import StochasticDepth
from netdsl.layers.modules.window import PatchMerging, ShiftedWindowAttention, relative_position_index, shift_mask
from tests.conftest import SPECS, reference_models

pytestmark = pytest.mark.usefixtures("one_thread")


def spec(input_shape: str, *layers: str) -> str:
    return f"netdsl: 1\nname: t\ninput: {input_shape}\nlayers:\n" + "".join(f"  - {item}\n" for item in layers)


def error_of(text: str) -> str:
    with pytest.raises(SpecError) as info:
        netdsl.load_text(text)
    return str(info.value)


# ---------------------------------------------------------------- two references for the attention


def torchvision_function(x, qkv_weight, proj_weight, bias, window, heads, shift, qkv_bias, proj_bias):
    """torchvision 0.29.1's swin_transformer.shifted_window_attention (v1: no logit_scale, eval mode), transcribed."""
    B, H, W, C = x.shape
    pad_r = (window[1] - W % window[1]) % window[1]
    pad_b = (window[0] - H % window[0]) % window[0]
    x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
    _, pad_H, pad_W, _ = x.shape
    shift = list(shift)
    if window[0] >= pad_H:
        shift[0] = 0
    if window[1] >= pad_W:
        shift[1] = 0
    if sum(shift) > 0:
        x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
    num_windows = (pad_H // window[0]) * (pad_W // window[1])
    x = x.view(B, pad_H // window[0], window[0], pad_W // window[1], window[1], C)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(B * num_windows, window[0] * window[1], C)
    qkv = F.linear(x, qkv_weight, qkv_bias)
    qkv = qkv.reshape(x.size(0), x.size(1), 3, heads, C // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    q = q * (C // heads) ** -0.5
    attn = q.matmul(k.transpose(-2, -1)) + bias
    if sum(shift) > 0:
        attn_mask = x.new_zeros((pad_H, pad_W))
        h_slices = ((0, -window[0]), (-window[0], -shift[0]), (-shift[0], None))
        w_slices = ((0, -window[1]), (-window[1], -shift[1]), (-shift[1], None))
        count = 0
        for h in h_slices:
            for w in w_slices:
                attn_mask[h[0] : h[1], w[0] : w[1]] = count
                count += 1
        attn_mask = attn_mask.view(pad_H // window[0], window[0], pad_W // window[1], window[1])
        attn_mask = attn_mask.permute(0, 2, 1, 3).reshape(num_windows, window[0] * window[1])
        attn_mask = attn_mask.unsqueeze(1) - attn_mask.unsqueeze(2)
        attn_mask = attn_mask.masked_fill(attn_mask != 0, -100.0).masked_fill(attn_mask == 0, 0.0)
        attn = attn.view(x.size(0) // num_windows, num_windows, heads, x.size(1), x.size(1))
        attn = attn + attn_mask.unsqueeze(1).unsqueeze(0)
        attn = attn.view(-1, heads, x.size(1), x.size(1))
    attn = F.softmax(attn, dim=-1)
    x = attn.matmul(v).transpose(1, 2).reshape(x.size(0), x.size(1), C)
    x = F.linear(x, proj_weight, proj_bias)
    x = x.view(B, pad_H // window[0], pad_W // window[1], window[0], window[1], C)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(B, pad_H, pad_W, C)
    if sum(shift) > 0:
        x = torch.roll(x, shifts=(shift[0], shift[1]), dims=(1, 2))
    return x[:, :H, :W, :].contiguous()


def loop_reference(module: ShiftedWindowAttention, x: torch.Tensor) -> torch.Tensor:
    """The same function from its definition, one query at a time: the keys are the query's window in the shifted,
    zero-padded map; a key from another region of the unshifted map (wrapped around by the roll) is masked with -100."""
    b, h, w, c = x.shape
    (wh, ww), heads = module.window, module.heads
    ph, pw = -(-h // wh) * wh, -(-w // ww) * ww
    sh, sw = (0 if wh >= ph else module.shift[0]), (0 if ww >= pw else module.shift[1])
    padded = x.new_zeros(b, ph, pw, c)
    padded[:, :h, :w] = x
    q, k, v = module.qkv(padded).split(c, dim=-1)
    table, d = module.relative_position_bias_table, c // heads

    def region(r: int, size: int, window: int, shift: int) -> int:  # which of torchvision's three slices r (shifted) is in
        return 0 if shift == 0 or r < size - window else (1 if r < size - shift else 2)

    out = torch.zeros_like(padded)
    for r in range(ph):
        for s in range(pw):
            qr, qs = (r + sh) % ph, (s + sw) % pw  # the original position the shifted map holds at (r, s)
            keys = [(r0, s0) for r0 in range(r // wh * wh, r // wh * wh + wh) for s0 in range(s // ww * ww, s // ww * ww + ww)]
            for head in range(heads):
                at = slice(head * d, head * d + d)
                scores = []
                for r0, s0 in keys:
                    kr, ks = (r0 + sh) % ph, (s0 + sw) % pw
                    score = (q[:, qr, qs, at] * k[:, kr, ks, at]).sum(-1) * d**-0.5
                    score = score + table[(r % wh - r0 % wh + wh - 1) * (2 * ww - 1) + (s % ww - s0 % ww + ww - 1), head]
                    same = region(r, ph, wh, sh) == region(r0, ph, wh, sh) and region(s, pw, ww, sw) == region(s0, pw, ww, sw)
                    scores.append(score if same else score - 100.0)
                weights = torch.stack(scores, -1).softmax(-1)
                values = torch.stack([v[:, (r0 + sh) % ph, (s0 + sw) % pw, at] for r0, s0 in keys], 1)
                out[:, qr, qs, at] = (weights.unsqueeze(-1) * values).sum(1)
    return module.proj(out)[:, :h, :w]


def filled(module: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    return module.double().eval()


CASES = [
    # (H, W, C, heads, window, shift): padding on both dims and a shift; no shift; a window covering H only (the
    # shift along H dropped, kept along W); a window covering the whole map (no shift at all); unequal window sides
    (5, 7, 8, 2, (3, 3), (1, 1)),
    (6, 6, 4, 1, (3, 3), (0, 0)),
    (3, 10, 4, 2, (4, 4), (2, 2)),
    (4, 5, 6, 3, (7, 7), (3, 3)),
    (6, 8, 4, 2, (3, 4), (1, 2)),
]


@pytest.mark.parametrize(("h", "w", "c", "heads", "window", "shift"), CASES)
def test_attention_equals_torchvision_function_and_loop_reference(h, w, c, heads, window, shift):
    node = netdsl.load_text(spec(f"{h}x{w}x{c}", f"shifted_window_attention: {{heads: {heads}, window: {list(window)}, shift: {list(shift)}}}")).nodes[-1]
    module = filled(node.layer.to_torch(node.input_shapes))
    x = torch.randn(2, h, w, c, dtype=torch.float64)
    with torch.no_grad():
        got = module(x)
        n = window[0] * window[1]
        bias = module.relative_position_bias_table[module.relative_position_index].view(n, n, -1).permute(2, 0, 1).unsqueeze(0)
        want = torchvision_function(x, module.qkv.weight, module.proj.weight, bias, list(window), heads, list(shift), module.qkv.bias, module.proj.bias)
        slow = loop_reference(module, x)
    assert node.shape == (h, w, c) and got.shape == (2, h, w, c)
    assert torch.allclose(got, want, rtol=0, atol=1e-12)
    assert torch.allclose(got, slow, rtol=0, atol=1e-10)


def test_the_shift_changes_the_output():
    """Shifted and unshifted attention differ where windows move (a check that the roll and mask are not no-ops)."""
    shifted = filled(ShiftedWindowAttention(4, (3, 3), (1, 1), 2))
    plain = filled(ShiftedWindowAttention(4, (3, 3), (0, 0), 2))
    x = torch.randn(1, 6, 6, 4, dtype=torch.float64)
    with torch.no_grad():
        assert (shifted(x) - plain(x)).abs().max() > 1e-3


def test_shift_mask_keeps_wrapped_regions_apart():
    # 4x4 map, 2x2 windows, shift 1: torchvision's slices label rows {0, 1}, {2}, {3} and the columns alike
    mask = shift_mask((2, 2), (1, 1), (4, 4), torch.zeros(1))
    assert mask.shape == (4, 4, 4)
    assert torch.equal(mask[0], torch.zeros(4, 4))  # the top-left window holds one region
    m = -100.0
    # top-right window: positions (0,2) (0,3) (1,2) (1,3); columns 2 and 3 are different regions
    assert torch.equal(mask[1], torch.tensor([[0, m, 0, m], [m, 0, m, 0], [0, m, 0, m], [m, 0, m, 0]]))
    # bottom-left window: rows 2 and 3 are different regions
    assert torch.equal(mask[2], torch.tensor([[0, 0, m, m], [0, 0, m, m], [m, m, 0, 0], [m, m, 0, 0]]))
    # bottom-right window: four positions from four regions
    assert torch.equal(mask[3], torch.tensor([[0, m, m, m], [m, 0, m, m], [m, m, 0, m], [m, m, m, 0]]))


def test_relative_position_index():
    # 2x2 window, positions (0,0) (0,1) (1,0) (1,1): index = (dr + 1) * 3 + (dc + 1)
    assert relative_position_index((2, 2)).view(4, 4).tolist() == [[4, 3, 1, 0], [5, 4, 2, 1], [7, 6, 4, 3], [8, 7, 5, 4]]
    seven = relative_position_index((7, 7))
    assert seven.shape == (2401,)  # swin_t.state_dict.json: relative_position_index [2401]
    assert seven.view(49, 49).diagonal().unique().tolist() == [6 * 13 + 6]  # zero offset: the middle of the 13x13 table
    assert seven.min() == 0 and seven.max() == 13 * 13 - 1 and len(seven.unique()) == 169


def test_patch_merging_stacks_each_2x2_patch():
    module = filled(PatchMerging(3))
    x = torch.randn(1, 5, 4, 3, dtype=torch.float64)
    expected = torch.zeros(1, 3, 2, 12, dtype=torch.float64)
    for i in range(3):
        for j in range(2):
            # torchvision's order x0, x1, x2, x3 = [0::2, 0::2], [1::2, 0::2], [0::2, 1::2], [1::2, 1::2]; row 5 is padding
            parts = [
                x[0, r, s] if r < 5 else torch.zeros(3, dtype=torch.float64)
                for r, s in ((2 * i, 2 * j), (2 * i + 1, 2 * j), (2 * i, 2 * j + 1), (2 * i + 1, 2 * j + 1))
            ]
            expected[0, i, j] = torch.cat(parts)
    with torch.no_grad():
        assert torch.allclose(module(x), module.reduction(module.norm(expected)), rtol=0, atol=1e-12)
    node = netdsl.load_text(spec("5x4x3", "patch_merging")).nodes[-1]
    assert node.shape == (3, 2, 6)
    assert node.params() == [("0.reduction.weight", (6, 12)), ("0.norm.weight", (12,)), ("0.norm.bias", (12,))]
    assert node.macs() == 3 * 2 * 12 * 6


# ---------------------------------------------------------------- errors, located by the builder


def test_attention_needs_a_channels_last_map():
    message = error_of(spec("16x8", "shifted_window_attention: {heads: 2}"))
    assert message.startswith(
        "<spec>:5:5: shifted_window_attention '0': shifted_window_attention needs an H x W x C input (channels last), got 16x8; add a permute [1, 2, 0] before it"
    )


def test_heads_must_divide_the_channels():
    message = error_of(spec("8x8x10", "shifted_window_attention: {heads: 4}"))
    assert message.startswith("<spec>:5:5: shifted_window_attention '0': 4 heads do not divide the 10 channels (the input is 8x8x10)")


def test_shift_must_be_smaller_than_the_window():
    message = error_of(spec("8x8x4", "shifted_window_attention: {heads: 2, window: 4, shift: [2, 4]}"))
    assert message.startswith("<spec>:5:5:")
    assert "shift [2, 4] must be smaller than the window [4, 4] in each dim" in message


def test_window_takes_two_sides():
    message = error_of(spec("8x8x4", "shifted_window_attention: {heads: 2, window: [2, 2, 2]}"))
    assert message.startswith("<spec>:5:5:")
    assert "window takes one or two values (height, width), got 3" in message


def test_patch_merging_needs_a_channels_last_map():
    message = error_of(spec("3x32", "patch_merging"))
    assert message.startswith("<spec>:5:5: patch_merging '0': patch_merging needs an H x W x C input (channels last), got 3x32")


def test_attention_macs_count_linears_and_both_matmuls():
    node = netdsl.load_text(spec("9x10x8", "shifted_window_attention: {heads: 2, window: 4}")).nodes[-1]
    # 3 x 3 windows of N = 16 on the padded 12x12 map: N*C*3C + N*C*C + 2*N*N*C = 3072 + 1024 + 4096 per window
    assert node.macs() == 9 * (3072 + 1024 + 4096)


# ---------------------------------------------------------------- the Swin family against torchvision


# torchvision's weight metadata (torchvision/models/swin_transformer.py, Swin_{T,S,B}_Weights.IMAGENET1K_V1.meta):
# "num_params" and "_ops" (GFLOPS, in fact multiply-accumulates of linears, convs and the attention matmuls) at 224x224
PUBLISHED = {"swin_t": (28_288_354, 4.491), "swin_s": (49_606_258, 8.741), "swin_b": (87_768_224, 15.431)}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_swin_counts_equal_torchvision(name):
    params, gmacs = PUBLISHED[name]
    graph = netdsl.load(SPECS / f"{name}.yaml")
    assert sum(n.param_count() for n in graph) == params
    if name in reference_models():  # models.json has swin_t and swin_s
        assert reference_models()[name]["params"] == params
    assert sum(n.macs() for n in graph) == pytest.approx(gmacs * 1e9, rel=1e-3)
    assert graph.output_shape == (1000,)


def test_swin_stochastic_depth_follows_torchvision():
    """torchvision's rule: block k of K (counted over the whole network) has p = stochastic_depth_prob * k / (K - 1),
    used for both residual branches; the shift alternates 0, window // 2 within each stage."""
    graph = netdsl.load(SPECS / "swin_s.yaml")
    drops = [n.layer.p for n in graph if isinstance(n.layer, StochasticDepth)]
    assert len(drops) == 2 * 24
    assert drops == pytest.approx([0.3 * k / 23 for k in range(24) for _ in range(2)])
    shifts = [(n.name, n.layer.shift) for n in graph if n.op == "shifted_window_attention"]
    assert shifts[:4] == [("features.1.0.attn", (0, 0)), ("features.1.1.attn", (3, 3)), ("features.3.0.attn", (0, 0)), ("features.3.1.attn", (3, 3))]


def test_swin_t_position_index_is_an_integer_buffer():
    """torchvision keeps relative_position_index as int64 (so published weights load as they are); its layout, order and
    output are checked with every torchvision twin in tests/test_zoo_torchvision.py."""
    with torch.device("meta"):
        model = netdsl.compile(SPECS / "swin_t.yaml")
    assert model.state_dict()["features.1.0.attn.relative_position_index"].dtype == torch.int64


def test_small_swin_exports_to_onnx(tmp_path):
    """Roll, window partition, the bias table lookup and the mask export (dynamo), and onnxruntime agrees at batch 1 and 3."""
    text = spec(
        "3x32x32",
        "swin_features: {name: features, embed_dim: 16, depths: [2, 2], heads: [2, 4], window: [4, 4]}",
        "layernorm: {name: norm}",
        "permute: [2, 0, 1]",
        "global_avgpool",
        "linear: 10",
    ).replace("layers:\n", "import: [swin]\nlayers:\n", 1)
    graph = netdsl.load_text(text)
    assert [n.layer.shift for n in graph if n.op == "shifted_window_attention"] == [(0, 0), (2, 2), (0, 0), (2, 2)]
    result = export(graph, tmp_path / "swin.onnx")
    assert [c.batch for c in result.comparisons] == [1, 3] and all(c.ok for c in result.comparisons)
