"""MobileNetV1 computes the paper's function: its spec's output equals a hand-written PyTorch module's.

The reference is written from Howard et al. 2017, Table 1 (not from the spec): a 3x3 stride-2 convolution, then 13
depthwise-separable units (3x3 depthwise conv, 1x1 pointwise conv), every convolution without bias and followed by
batch norm and ReLU6, global average pooling, dropout and a 1x1 convolution classifier (Keras applications' layout).
Both get the same values for their parameters and buffers (in state_dict order: the same shapes, one after the
other), and in float64 eval mode they must give the same outputs. Until this stop the spec had no activation in any
of its 13 units (`act: act` passed the word "act"): counts were exact, the function was not.
"""

from __future__ import annotations

import torch
from torch import nn

import netdsl
from tests.conftest import SPECS
from tests.test_zoo_hand_references import same_function

# Table 1: (stride of the depthwise conv, channels of the pointwise conv) for the 13 units
UNITS = [(1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512)] + [(1, 512)] * 5 + [(2, 1024), (1, 1024)]


def conv_bn_relu6(cin: int, cout: int, k: int, stride: int, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout, eps=1e-3), nn.ReLU6()]


def reference_mobilenet_v1(classes: int = 1000) -> nn.Module:
    layers: list[nn.Module] = conv_bn_relu6(3, 32, 3, 2)
    cin = 32
    for stride, cout in UNITS:
        layers += conv_bn_relu6(cin, cin, 3, stride, groups=cin)  # depthwise: one 3x3 filter per channel
        layers += conv_bn_relu6(cin, cout, 1, 1)  # pointwise
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Dropout(0.001), nn.Conv2d(cin, classes, 1), nn.Flatten()]
    return nn.Sequential(*layers)


def test_mobilenet_v1_spec_equals_the_hand_written_network():
    torch.manual_seed(0)
    spec = netdsl.compile(SPECS / "mobilenet_v1.yaml", input_shape="3x96x96", seed=0)
    reference = reference_mobilenet_v1()
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert same_function(spec, reference, x).shape == (2, 1000)


def test_every_mobilenet_v1_convolution_is_followed_by_relu6():
    graph = netdsl.load(SPECS / "mobilenet_v1.yaml")
    ops = [n.op for n in graph]
    convs = [i for i, op in enumerate(ops) if op == "conv2d"][:-1]  # all but the classifier
    assert len(convs) == 27 and all(ops[i + 1 : i + 3] == ["batchnorm", "relu6"] for i in convs)
