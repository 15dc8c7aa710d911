"""Layers for dense prediction: reference arguments (`upsample: {to: NAME}`), and their shapes, modules, errors and export."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import netdsl
from netdsl.analysis.counts import analyze
from netdsl.analysis.expand import expand_text
from netdsl.backends.pytorch import build_module, cross_check
from netdsl.errors import SpecError
from netdsl.lang.convert import rewrite
from tests.onnx_registry import shared_onnx_registry  # noqa: F401 (an autouse fixture)

torch.set_num_threads(2)


def load(body: str, input_shape: str = "3x33x31", extra: str = "") -> netdsl.Graph:
    return netdsl.load_text(f"netdsl: 1\nname: t\ninput: {input_shape}\n{extra}layers:\n{body}", "t.yaml")


def messages(body: str, input_shape: str = "3x32x32", extra: str = "") -> list[str]:
    with pytest.raises(SpecError) as info:
        load(body, input_shape, extra)
    return [str(d) for d in info.value.diagnostics]


# A decoder step inside a block resizes to a layer of the block; the head resizes to the network input.
DECODER = """\
blocks:
  down_up:
    layers:
      - conv: {name: low, out: 4, k: 3, s: 2, p: 1}
      - conv: {out: 4, k: 3, s: 2, p: 1}
      - upsample: {to: low, mode: bilinear}
"""
DECODER_LAYERS = "  - conv: {out: 8, k: 3, s: 2, p: 1}\n  - down_up\n  - upsample: {to: input, mode: bilinear}\n"


def test_upsample_to_a_layer_takes_its_size_and_reads_it_as_an_extra_input():
    g = load(DECODER_LAYERS, extra=DECODER)
    assert g.node("1.2").shape == (4, 9, 8)
    assert g.node("1.2").inputs == ("1.1", "1.low") and g.node("1.2").data_inputs == ("1.1",)
    assert g.node("1.2").ref_inputs() == {"to": "1.low"}
    assert g.node("2").inputs == ("1.2", "input") and g.output_shape == (4, 33, 31)  # odd sizes: 33x31 -> 17x16 -> 9x8 -> 5x4 -> back


def test_upsample_to_computes_torchvisions_interpolate():
    g = load(DECODER_LAYERS, extra=DECODER)
    model = build_module(g, seed=0).eval()
    assert cross_check(model, g) == []
    x = torch.randn(2, 3, 33, 31)
    with torch.no_grad():
        y = model(x)
        inner = model.get_submodule("1.1")(model.get_submodule("1.low")(model.get_submodule("0")(x)))
        low = model.get_submodule("1.low")(model.get_submodule("0")(x))
        block = F.interpolate(inner, size=low.shape[-2:], mode="bilinear", align_corners=False)
    assert torch.equal(y, F.interpolate(block, size=x.shape[-2:], mode="bilinear", align_corners=False))


def test_upsample_by_scale_and_to_a_fixed_size():
    assert load("  - upsample\n").output_shape == (3, 66, 62)  # no option: scale 2, as before
    assert load("  - upsample: 3\n").output_shape == (3, 99, 93)
    g = load("  - upsample: {size: [7, 5], mode: bilinear, align_corners: true}\n")
    assert g.output_shape == (3, 7, 5)
    module = g.nodes[0].layer.to_torch(g.nodes[0].input_shapes)
    x = torch.randn(1, 3, 33, 31)
    assert torch.equal(module(x), F.interpolate(x, size=(7, 5), mode="bilinear", align_corners=True))


def test_reference_names_resolve_as_from_does():
    body = "  - group: {name: g, layers: [conv: {name: a, out: 4, k: 3, s: 2, p: 1}, relu]}\n"
    assert load(body + "  - upsample: {to: g.a}\n").output_shape == (4, 17, 16)  # a member of a group
    assert load(body + "  - upsample: {to: /g.a}\n").output_shape == (4, 17, 16)  # an absolute path
    assert load("  - conv: {out: 4, k: 3, s: 2, p: 1}\n  - relu\n  - upsample: {to: 0}\n").output_shape == (4, 17, 16)  # by position
    repeat = "  - repeat: {n: 2, name: r, layers: [conv: {out: 4, k: 3, s: 2, p: 1}]}\n  - upsample: {to: r.0}\n"
    assert load(repeat).output_shape == (4, 17, 16)


def test_unknown_reference_suggests_and_names_the_argument():
    body = "  - conv: {name: stem, out: 4}\n  - upsample: {to: stme}\n"
    assert messages(body) == ["t.yaml:6:20: unknown layer 'stme' in 'to'; did you mean 'stem'? (known here: input, stem)"]


def test_reference_to_a_later_layer_is_refused():
    body = "  - upsample: {to: later}\n  - conv: {name: later, out: 4}\n"
    assert messages(body) == ["t.yaml:5:20: 'later' is defined later (line 6); 'to' must name an earlier layer, so the graph has no cycles"]


def test_missing_member_of_a_reference():
    body = "  - group: {name: g, layers: [relu]}\n  - upsample: {to: g.b}\n"
    assert messages(body) == ["t.yaml:6:20: 'g.b': 'g' has no member 'b'"]


def test_upsample_takes_one_of_scale_size_and_to():
    assert messages("  - upsample: {scale: 2, to: input}\n") == ["t.yaml:5:5: upsample '0': give one of 'scale', 'size' or 'to', not 'scale' and 'to'"]


def test_align_corners_needs_bilinear():
    assert messages("  - upsample: {to: input, align_corners: true}\n") == [
        "t.yaml:5:5: upsample '0': 'align_corners' needs mode 'bilinear' (got mode 'nearest')"
    ]


def test_upsample_to_a_flat_layer_is_a_shape_error():
    body = "  - flatten: {name: f}\n  - upsample: {to: f, from: input}\n"
    assert messages(body) == ["t.yaml:6:5: upsample '1': 'to' names 'f' of shape 3072; it needs a C x H x W layer (input 3x32x32)"]


def test_a_reference_must_be_a_name():
    assert messages("  - upsample: {to: true}\n") == ["t.yaml:5:20: upsample: 'to' must be a layer name; got true"]


def test_text_format_and_convert_round_trip():
    yaml_text = f"netdsl: 1\nname: t\ninput: 3x33x31\n{DECODER}layers:\n{DECODER_LAYERS}"
    net = rewrite(yaml_text, "t.yaml", "net")
    assert "conv(4, k=3, s=2, p=1) -> upsample(to=low, mode=bilinear)" in net
    assert "upsample(to=input, mode=bilinear)" in net
    graph = netdsl.graph.load.load_net_text(net)
    assert [n.inputs for n in graph.nodes] == [n.inputs for n in load(DECODER_LAYERS, extra=DECODER).nodes]


def test_expanded_spec_names_the_resolved_reference():
    g = load(DECODER_LAYERS, extra=DECODER)
    text = expand_text(g, analyze(g), "t.yaml")
    assert '- upsample: {name: "2", to: low, mode: bilinear, align_corners: false}' in text
    assert '- upsample: {name: "2", to: "/input", mode: bilinear, align_corners: false}' in text
    again = netdsl.load_text(text)
    assert [(n.name, n.inputs, n.shape) for n in again.nodes] == [(n.name, n.inputs, n.shape) for n in g.nodes]


def test_upsample_to_exports_to_onnx(tmp_path):
    result = netdsl.export(load(DECODER_LAYERS, extra=DECODER), tmp_path / "m.onnx")
    assert result.info.exporter == "dynamo" and all(c.ok for c in result.comparisons)


# ---- max pooling with indices, max unpooling -------------------------------------------------------------------

SEGNET = """\
  - conv: {name: c1, out: 4, k: 3, p: 1}
  - maxpool: {name: pool1, k: 2, s: 2, indices: true}
  - conv: {name: c2, out: 4, k: 3, p: 1}
  - max_unpool: {name: unpool1, indices: pool1, k: 2, s: 2}
"""


def test_max_unpool_restores_the_pools_input_size_at_odd_sizes():
    g = load(SEGNET, "3x15x13")
    assert g.node("pool1").shape == (4, 7, 6) and g.node("unpool1").shape == (4, 15, 13)
    unpool = g.node("unpool1")
    assert unpool.inputs == ("c2", "pool1", "c1") and unpool.ports == (0, 1, 0)  # values, the pool's indices, the pool's input
    assert unpool.data_inputs == ("c2",) and unpool.ref_inputs() == {"indices": "pool1"}
    assert g.node("c2").inputs == ("pool1",) and g.node("c2").ports == ()  # ordinary consumers read the pooled values


def test_max_unpool_computes_what_torch_does():
    g = load(SEGNET, "3x15x13")
    model = build_module(g, seed=0).eval()
    assert cross_check(model, g) == []
    x = torch.randn(2, 3, 15, 13)
    with torch.no_grad():
        c1 = model.c1(x)
        pooled, indices = F.max_pool2d(c1, 2, 2, return_indices=True)
        want = F.max_unpool2d(model.c2(pooled), indices, 2, 2, output_size=c1.shape[-2:])
        assert torch.equal(model(x), want)


def test_max_unpool_needs_a_pool_with_indices():
    body = "  - maxpool: {name: pool1, k: 2}\n  - max_unpool: {indices: pool1, k: 2}\n"
    assert messages(body) == ["t.yaml:6:27: max_unpool '1': 'indices' must name a maxpool with indices: true; 'pool1' is a maxpool"]
    assert messages("  - max_unpool: {indices: input, k: 2}\n") == [
        "t.yaml:5:27: max_unpool '0': 'indices' must name a maxpool with indices: true; 'input' is the input"
    ]
    assert messages("  - conv: {name: c, out: 4}\n  - max_unpool: {indices: pool, k: 2}\n") == [
        "t.yaml:6:27: unknown layer 'pool' in 'indices' (known here: c, input)"
    ]


def test_max_unpool_shape_errors():
    body = "  - maxpool: {name: pool1, k: 2, indices: true}\n  - conv: {out: 5, k: 1}\n  - max_unpool: {indices: pool1, k: 2}\n"
    assert messages(body, "3x15x13") == ["t.yaml:7:5: max_unpool '2': the input (5x7x6) must have the shape of the indices of 'pool1' (3x7x6)"]
    body = "  - maxpool: {name: pool1, k: 2, indices: true}\n  - max_unpool: {indices: pool1, k: 3}\n"
    assert messages(body, "3x15x13") == [
        "t.yaml:6:5: max_unpool '1': kernel 3, stride 3, padding 0 cannot restore 7x6 to 15x13, the size of the input of 'pool1'; "
        "give the pool's kernel, stride and padding"
    ]


def test_max_unpool_in_the_text_format_and_expanded():
    net = rewrite(f"netdsl: 1\nname: t\ninput: 3x15x13\nlayers:\n{SEGNET}", "t.yaml", "net")
    assert "maxpool(k=2, s=2, indices=true) as pool1" in net and "max_unpool(indices=pool1, k=2, s=2) as unpool1" in net
    g = load(SEGNET, "3x15x13")
    assert netdsl.graph.load.load_net_text(net).node("unpool1").inputs == g.node("unpool1").inputs
    again = netdsl.load_text(expand_text(g, analyze(g), "t.yaml"))
    assert [(n.inputs, n.ports, n.shape) for n in again.nodes] == [(n.inputs, n.ports, n.shape) for n in g.nodes]


# ---- crop and pad to a layer's size ------------------------------------------------------------------------------


def test_crop_centers_as_torchvision_rounds():
    g = load("  - conv: {name: small, out: 2, k: 4}\n  - crop: {to: small, from: input}\n", "3x15x12")
    assert g.output_shape == (3, 12, 9)
    x = torch.arange(15 * 12.0).reshape(1, 1, 15, 12).expand(1, 3, 15, 12)
    y = build_module(g)(x)
    # torchvision.transforms.functional.center_crop: top = int(round((15 - 12) / 2.0)) = 2, left = int(round((12 - 9) / 2.0)) = 2
    assert torch.equal(y, x[:, :, 2:14, 2:11])
    g = load("  - conv: {name: small, out: 2, k: 2}\n  - crop: {to: small, from: input}\n", "3x6x6")  # (6 - 5) / 2 = 0.5 rounds to 0
    assert torch.equal(build_module(g)(torch.arange(36.0).reshape(1, 1, 6, 6).expand(1, 3, 6, 6))[0, 0], torch.arange(36.0).reshape(6, 6)[:5, :5])


def test_pad_as_the_unet_reference_does():
    g = load("  - conv: {name: small, out: 2, k: 4}\n  - pad: input\n", "3x15x12")
    assert g.output_shape == (2, 15, 12)
    model = build_module(g, seed=0)
    x = torch.randn(1, 3, 15, 12)
    small = model.small(x)
    dy, dx = 15 - small.shape[2], 12 - small.shape[3]  # milesial/Pytorch-UNet's Up.forward
    assert torch.equal(model(x), F.pad(small, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2]))


def test_crop_and_pad_refuse_the_wrong_direction():
    assert messages("  - conv: {out: 4, k: 4}\n  - crop: {to: input}\n", "3x15x13") == [
        "t.yaml:6:5: crop '1': cannot crop 12x10 to 15x13, the size of 'input': it is larger (input 4x12x10)"
    ]
    assert messages("  - conv: {name: small, out: 4, k: 4}\n  - pad: {to: small, from: input}\n", "3x15x13") == [
        "t.yaml:6:5: pad '1': cannot pad 15x13 to 12x10, the size of 'small': it is smaller (input 3x15x13)"
    ]
    assert messages("  - flatten: {name: f}\n  - pad: {to: f, from: input}\n", "3x15x13") == [
        "t.yaml:6:5: pad '1': 'to' names 'f' of shape 585; it needs 2 spatial dims as the input (3x15x13)"
    ]


# ---- conv_transpose1d --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layer", "input_shape", "shape"),
    [
        ("conv_transpose1d: {out: 8, k: 4, s: 2, p: 1}", "4x32", (8, 64)),  # (32 - 1) 2 - 2 + 3 + 0 + 1
        ("conv_transpose1d: {out: 4, k: 3, s: 3, output_padding: 2, groups: 2, d: 2}", "4x10", (4, 34)),  # 27 + 4 + 2 + 1
        ("deconv: {out: 6, k: [3, 2], s: [2, 1], d: 2, groups: 2}", "4x5x7", (6, 13, 9)),
    ],
)
def test_transposed_conv_shape_params_and_macs_match_torch(layer, input_shape, shape):
    from torch.utils.flop_counter import FlopCounterMode

    node = load(f"  - {layer}\n", input_shape).nodes[0]
    assert node.shape == shape
    module = node.layer.to_torch(node.input_shapes)
    assert [(f"0.{k}", tuple(v.shape)) for k, v in module.named_parameters()] == node.params()
    with FlopCounterMode(display=False) as counter:
        y = module(torch.randn(1, *node.input_shapes[0]))
    assert tuple(y.shape[1:]) == shape
    assert node.macs() == counter.get_total_flops() // 2  # torch's FLOP counter: 2 per multiply-accumulate (the bias not counted)


def test_transposed_conv_output_padding_must_be_below_stride_or_dilation():
    assert messages("  - conv_transpose1d: {out: 4, k: 3, s: 2, output_padding: 2}\n", "4x10") == [
        "t.yaml:5:5: conv_transpose1d '0': output_padding 2 must be smaller than stride 2 or dilation 1 (input 4x10)"
    ]


# ---- export ------------------------------------------------------------------------------------------------------

DENSE_2D = """\
  - conv: {name: c1, out: 4, k: 3, p: 1}
  - maxpool: {name: pool1, k: 2, s: 2, indices: true}
  - conv: {name: c2, out: 4, k: 3}
  - pad: {to: pool1}
  - max_unpool: {indices: pool1, k: 2, s: 2}
  - deconv: {out: 4, k: 2, s: 2}
  - crop: {to: input}
  - upsample: {to: c2, mode: bilinear, align_corners: true}
"""
DENSE_1D = """\
  - conv1d: {name: c1, out: 4, k: 3, p: 1}
  - maxpool1d: {name: pool1, k: 2, indices: true}
  - conv_transpose1d: {out: 4, k: 3, s: 1, p: 1}
  - max_unpool1d: {indices: pool1, k: 2}
  - conv1d: {out: 4, k: 4}
  - pad: c1
  - conv_transpose1d: {out: 2, k: 4, s: 2}
  - crop: input
"""


@pytest.mark.parametrize(("body", "input_shape", "shape"), [(DENSE_2D, "3x15x13", (4, 5, 4)), (DENSE_1D, "3x21", (2, 21))], ids=["2d", "1d"])
def test_dense_layers_export_to_onnx(tmp_path, body, input_shape, shape):
    import onnx

    g = load(body, input_shape)
    assert g.output_shape == shape
    assert cross_check(build_module(g, seed=0), g) == []
    result = netdsl.export(g, tmp_path / "m.onnx")
    assert result.info.exporter == "dynamo" and all(c.ok for c in result.comparisons)
    ops = {n.op_type for n in onnx.load(str(tmp_path / "m.onnx")).graph.node}
    assert "MaxPool" in ops and "ScatterND" in ops  # the exporter decomposes max_unpool into a scatter, not ONNX's MaxUnpool
