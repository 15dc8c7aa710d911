"""Padding as Keras and TensorFlow do it: pools with padding 'same', and zero_pad by amounts (a negative one crops) or
as TensorFlow's 'same' before a 'valid' window (Keras' correct_pad) -- what Xception and NASNet need."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import netdsl
from netdsl.backends.pytorch import build_module
from netdsl.errors import SpecError


def graph(shape: str, item: str) -> netdsl.Graph:
    return netdsl.load_text(f"netdsl: 1\nname: t\ninput: {shape}\nlayers:\n  - {item}\n", "t.yaml")


def tensorflow_same_pool(x: torch.Tensor, k: int, s: int, average: bool) -> torch.Tensor:
    """TensorFlow's SAME pooling, window by window: ceil(n/s) outputs, total padding max((out-1)s + k - n, 0) with the
    odd cell after; a max ignores the padding, an average divides by the real cells only (tf.nn.avg_pool)."""
    n = x.shape[-1]
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    before = total // 2
    rows = []
    for i in range(out):
        cols = []
        for j in range(out):
            top, left = i * s - before, j * s - before
            window = x[:, :, max(top, 0) : top + k, max(left, 0) : left + k]
            cols.append(window.mean((2, 3)) if average else window.amax((2, 3)))
        rows.append(torch.stack(cols, -1))
    return torch.stack(rows, -2)


@pytest.mark.parametrize("n", [6, 7, 8])
@pytest.mark.parametrize(("k", "s"), [(3, 2), (3, 1), (2, 2)])
@pytest.mark.parametrize("kind", ["maxpool", "avgpool"])
def test_pool_same_is_tensorflows(n, k, s, kind):
    extra = ", count_include_pad: false" if kind == "avgpool" else ""
    g = graph(f"2x{n}x{n}", f"{kind}: {{k: {k}, s: {s}, p: same{extra}}}")
    assert g.output_shape == (2, -(-n // s), -(-n // s))
    x = torch.randn(3, 2, n, n, dtype=torch.float64)
    assert torch.allclose(build_module(g).double()(x), tensorflow_same_pool(x, k, s, kind == "avgpool"))


def test_pool_same_refuses_ceil_mode_and_uneven_indices():
    with pytest.raises(SpecError) as info:
        graph("2x8x8", "maxpool: {k: 3, s: 2, p: same, ceil_mode: true}")
    assert str(info.value.diagnostics[0]) == "t.yaml:5:5: maxpool '0': padding 'same' sets the output size (ceil(N / S)); leave ceil_mode out (input 2x8x8)"
    with pytest.raises(SpecError) as info:
        graph("2x8x8", "maxpool: {k: 3, s: 2, p: same, indices: true}")
    assert "pads 8x8 unevenly, which max_unpool cannot undo" in str(info.value.diagnostics[0])


def test_pool_same_accepts_every_size():
    """The padding follows the input (it is a rule, not numbers): Xception accepts what its shape rules allow."""
    from netdsl.graph.input_sizes import input_rule

    assert str(input_rule(graph("2x8x8", "maxpool: {k: 3, s: 2, p: same}"))) == "H, W >= 1"


def test_zero_pad_by_amounts_and_cropping():
    g = graph("1x4x5", "zero_pad: [1, 2, 3, 0]")
    assert g.output_shape == (1, 7, 8)
    x = torch.randn(2, 1, 4, 5)
    assert torch.equal(build_module(g)(x), F.pad(x, (3, 0, 1, 2)))
    shift = graph("1x4x5", "zero_pad: [-1, 1, -1, 1]")  # Keras' ZeroPadding2D(((0, 1), (0, 1))) then Cropping2D(((1, 0), (1, 0)))
    y = build_module(shift)(x)
    assert y.shape == x.shape and torch.equal(y[:, :, :-1, :-1], x[:, :, 1:, 1:]) and y[:, :, -1].abs().sum() == 0


@pytest.mark.parametrize(("h", "before", "after"), [(4, 0, 1), (5, 1, 1)])
def test_zero_pad_same_is_kerass_correct_pad(h, before, after):
    """keras.applications.imagenet_utils.correct_pad for kernel 3: one fewer cell before an even-sized dim."""
    g = graph(f"1x{h}x{h}", "zero_pad: {same: 3, stride: 2}")
    assert g.nodes[0].layer.pads(g.input_shape) == ((before, after), (before, after))
    assert g.output_shape == (1, h + before + after, h + before + after)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("zero_pad: [1, 2, 3]", "zero_pad '0': sizes has 3 values; the input 1x4x5 needs 4 (before and after each spatial dim) or 1"),
        ("zero_pad: [-3, -3, 0, 0]", "zero_pad '0': cropping 1x4x5 by [-3, -3, 0, 0] leaves nothing (1x-2x5)"),
        ("zero_pad: {sizes: [1], same: 3}", "zero_pad '0': give either sizes or same"),
    ],
)
def test_zero_pad_errors(item, message):
    with pytest.raises(SpecError) as info:
        graph("1x4x5", item)
    assert str(info.value.diagnostics[0]).startswith(f"t.yaml:5:5: {message}")
