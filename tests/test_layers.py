"""Shape rules, parameter lists and MACs of the layer types, against hand-computed facts."""

from __future__ import annotations

import math

import pytest

import netdsl
from netdsl.errors import ShapeError, SpecError
from netdsl.layers import LAYERS
from netdsl.layers.base import window_out
from netdsl.layers.conv import Conv2d
from netdsl.layers.norm import BatchNorm
from netdsl.layers.pool import MaxPool2d


def one_layer(layer: str, input_shape: str = "3x32x32"):
    return netdsl.load_text(f"netdsl: 1\nname: t\ninput: {input_shape}\nlayers:\n  - {layer}\n").nodes[0]


@pytest.mark.parametrize(
    ("n", "k", "s", "p", "d", "ceil", "out"),
    [
        (224, 11, 4, 2, 1, False, 55),  # AlexNet conv1: floor((224 - 11 + 4) / 4) + 1
        (224, 7, 2, 3, 1, False, 112),  # ResNet stem
        (112, 3, 2, 1, 1, False, 56),  # ResNet max pool
        (32, 3, 1, 2, 2, False, 32),  # dilation 2: effective kernel 5
        (56, 3, 2, 0, 1, False, 27),
        (56, 3, 2, 0, 1, True, 28),  # SqueezeNet's ceil_mode pooling
        (5, 2, 2, 1, 1, True, 3),  # PyTorch drops a last window that starts in the right padding
    ],
)
def test_window_formula(n, k, s, p, d, ceil, out):
    assert window_out(n, k, s, p, d, ceil) == out


def test_conv_shape_params_and_macs():
    node = one_layer("conv: {out: 8, k: 3, s: 2, p: 1, groups: 1}")
    assert node.shape == (8, 16, 16)
    assert node.params() == [("0.weight", (8, 3, 3, 3)), ("0.bias", (8,))]
    assert node.macs() == 8 * 16 * 16 * 3 * 3 * 3


def test_depthwise_conv_params_and_macs():
    node = one_layer("conv: {out: 6, k: 3, p: 1, groups: 3, bias: false}")
    assert node.params() == [("0.weight", (6, 1, 3, 3))]
    assert node.macs() == 6 * 32 * 32 * 1 * 9


def test_asymmetric_kernel_and_padding():
    node = one_layer("conv: {out: 4, k: [1, 7], p: [0, 3]}", "8x17x17")
    assert node.shape == (4, 17, 17)
    assert node.params()[0] == ("0.weight", (4, 8, 1, 7))


def test_same_padding_keeps_size_and_refuses_stride():
    assert one_layer("conv: {out: 4, k: 4, p: same, d: 2}").shape == (4, 32, 32)
    with pytest.raises(SpecError, match="padding 'same' needs stride 1"):
        one_layer("conv: {out: 4, k: 3, s: 2, p: same}")


def test_groups_must_divide_channels():
    with pytest.raises(SpecError, match="groups 2 must divide input channels 3 and output channels 8"):
        one_layer("conv: {out: 8, groups: 2}")


def test_conv1d():
    node = one_layer("conv1d: {out: 4, k: 5, s: 2}", "2x100")
    assert node.shape == (4, 48)
    assert node.params()[0] == ("0.weight", (4, 2, 5))


def test_transposed_conv_doubles():
    node = one_layer("deconv: {out: 4, k: 2, s: 2}", "8x16x16")
    assert node.shape == (4, 32, 32)
    assert node.params()[0] == ("0.weight", (8, 4, 2, 2))  # PyTorch stores (in, out / groups, kh, kw)


def test_batchnorm_has_buffers_not_params():
    node = one_layer("bn")
    assert node.params() == [("0.weight", (3,)), ("0.bias", (3,))]
    assert node.buffers() == [("0.running_mean", (3,)), ("0.running_var", (3,)), ("0.num_batches_tracked", ())]
    assert BatchNorm(affine=False).params(((3, 4, 4),)) == []


def test_layernorm_params_follow_dims():
    assert one_layer("layernorm: {dims: 3}", "4x5x6").param_count() == 2 * 4 * 5 * 6


def test_linear_counts_and_applies_to_the_last_dim():
    node = one_layer("linear: 10", "400")
    assert node.param_count() == 400 * 10 + 10 and node.macs() == 4000
    node = one_layer("linear: 10")  # as torch's nn.Linear: every other dim kept, each position mapped alike
    assert node.shape == (3, 32, 10)
    assert node.param_count() == 32 * 10 + 10 and node.macs() == 3 * 32 * 32 * 10


def test_pool_rules():
    assert MaxPool2d(kernel=(3,), stride=(2,), padding=(1,)).output_shape((64, 112, 112)) == (64, 56, 56)
    with pytest.raises(ShapeError, match="more than half the kernel"):
        MaxPool2d(kernel=(2,), stride=None, padding=(2,)).output_shape((3, 8, 8))
    assert one_layer("global_avgpool").shape == (3,)
    assert one_layer("adaptive_avgpool: [2, 3]").shape == (3, 2, 3)


def test_flatten_and_activations_keep_counts_at_zero():
    for word in ("relu", "relu6", "sigmoid", "tanh", "gelu", "silu", "softmax", "leaky_relu", "flatten", "dropout", "lrn"):
        node = one_layer(word)
        assert node.param_count() == 0 and node.macs() == 0


def test_conv_describe():
    assert Conv2d(out=64, kernel=(3,), stride=(2,), padding=(1,)).describe() == "64, k=3, s=2, p=1"


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_every_example_builds_and_counts_consistently(name):
    cls = LAYERS[name]
    for example in cls.examples:
        args = ", ".join(f"{k}: {list(v) if isinstance(v, tuple) else v}" for k, v in example.items())
        shape = "x".join(map(str, cls.example_input))
        if cls.arity == 0:
            continue
        before = "".join(f"{item}\n  - " for item in cls.example_before)  # layers the example names (a pool's indices)
        node = netdsl.load_text(f"netdsl: 1\nname: t\ninput: {shape}\nlayers:\n  - {before}{name}: {{{args}}}\n").nodes[-1] if args else one_layer(name, shape)
        assert all(d >= 1 for d in node.shape)
        assert node.param_count() == sum(math.prod(s) for _, s in node.params())
        if cls.holds_tensor:  # ViT's class_token: the layer is its one tensor, at the layer's own path
            assert [path for path, _ in node.params()] == [node.name] and not node.buffers()
        else:
            assert all(path.startswith(f"{node.name}.") for path, _ in node.params() + node.buffers())
