"""NASNet-Mobile computes Keras applications' function: counts, shapes, and a hand-written module from Keras' nasnet.py.

The reference is written from keras/src/applications/nasnet.py (NASNet with NASNetMobile's arguments), not from the
spec: _separable_conv_block, _adjust_block, _normal_a_cell, _reduction_a_cell, the stem, relu, global average pooling
and the logits (Keras applies a softmax on top). Keras pads its stride-2 windows with explicit zeros
(ZeroPadding2D(imagenet_utils.correct_pad(x, k))) and its stride-1 'same' average pools count only real cells
(TensorFlow's avg_pool). Both sides get the same values and must give the same outputs in float64 eval mode.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import netdsl
from tests.conftest import SPECS
from tests.test_zoo_hand_references import same_function

EPS = 1e-3  # every BatchNormalization in nasnet.py: epsilon=1e-3, momentum=0.9997

pytestmark = pytest.mark.usefixtures("one_thread")


def correct_pad(x: torch.Tensor, k: int) -> torch.Tensor:
    """ZeroPadding2D(imagenet_utils.correct_pad(x, k)): k // 2 each side of an odd size, one fewer before an even one."""
    pads: list[int] = []
    for n in reversed(x.shape[-2:]):  # F.pad lists the last dim first
        pads += [k // 2 - (1 - n % 2), k // 2]
    return F.pad(x, pads)


def same_avg_pool(x: torch.Tensor) -> torch.Tensor:
    """AveragePooling2D((3, 3), strides=(1, 1), padding="same"): the padded cells are not counted."""
    return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)


def bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=EPS)


class SeparableConv(nn.Sequential):
    """SeparableConv2D(out, k, strides, use_bias=False): a k x k depthwise conv, then a 1x1 pointwise conv."""

    def __init__(self, cin: int, out: int, k: int, stride: int) -> None:
        padding = 0 if stride == 2 else k // 2  # stride 2: 'valid' after correct_pad; stride 1: 'same'
        super().__init__(nn.Conv2d(cin, cin, k, stride, padding, groups=cin, bias=False), nn.Conv2d(cin, out, 1, bias=False))


class SeparableBlock(nn.Module):
    """_separable_conv_block: relu, [correct_pad], separable conv, BN, relu, separable conv, BN."""

    def __init__(self, cin: int, filters: int, k: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.k, self.stride = k, stride
        self.layers = nn.ModuleList([SeparableConv(cin, filters, k, stride), bn(filters), SeparableConv(filters, filters, k, 1), bn(filters)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        if self.stride == 2:
            x = correct_pad(x, self.k)
        conv1, bn1, conv2, bn2 = self.layers
        return bn2(conv2(F.relu(bn1(conv1(x)))))


class Adjust(nn.Module):
    """_adjust_block(p, ip, filters): p is None -> ip; p's width differs from ip's -> factorized reduction;
    p's channels differ from filters -> relu-1x1 conv-BN; else p."""

    def __init__(self, p_shape: tuple[int, int] | None, ip_width: int, filters: int) -> None:
        super().__init__()
        self.mode = "none"
        if p_shape is not None:
            channels, width = p_shape
            if width != ip_width:
                self.mode = "reduce"
                self.conv_1 = nn.Conv2d(channels, filters // 2, 1, bias=False)
                self.conv_2 = nn.Conv2d(channels, filters // 2, 1, bias=False)
                self.bn = bn(filters)
            elif channels != filters:
                self.mode = "project"
                self.conv = nn.Conv2d(channels, filters, 1, bias=False)
                self.bn = bn(filters)

    def forward(self, p: torch.Tensor | None, ip: torch.Tensor) -> torch.Tensor:
        if p is None:
            return ip
        if self.mode == "reduce":
            p = F.relu(p)
            p1 = self.conv_1(F.avg_pool2d(p, 1, 2))
            p2 = F.pad(p, [0, 1, 0, 1])[:, :, 1:, 1:]  # ZeroPadding2D(((0, 1), (0, 1))), Cropping2D(((1, 0), (1, 0)))
            p2 = self.conv_2(F.avg_pool2d(p2, 1, 2))
            return self.bn(torch.cat([p1, p2], 1))
        if self.mode == "project":
            return self.bn(self.conv(F.relu(p)))
        return p


class NormalCell(nn.Module):
    """_normal_a_cell: 6 * filters channels, p and the five sums."""

    def __init__(self, ip_shape: tuple[int, int], p_shape: tuple[int, int] | None, filters: int) -> None:
        super().__init__()
        self.adjust = Adjust(p_shape, ip_shape[1], filters)
        cp = p_shape[0] if self.adjust.mode == "none" and p_shape is not None else filters
        self.conv_1, self.bn_1 = nn.Conv2d(ip_shape[0], filters, 1, bias=False), bn(filters)
        self.left1, self.right1 = SeparableBlock(filters, filters, 5), SeparableBlock(cp, filters, 3)
        self.left2, self.right2 = SeparableBlock(cp, filters, 5), SeparableBlock(cp, filters, 3)
        self.left5 = SeparableBlock(filters, filters, 3)

    def forward(self, ip: torch.Tensor, p: torch.Tensor | None) -> torch.Tensor:
        p = self.adjust(p, ip)
        h = self.bn_1(self.conv_1(F.relu(ip)))
        x1 = self.left1(h) + self.right1(p)
        x2 = self.left2(p) + self.right2(p)
        x3 = same_avg_pool(h) + p
        x4 = same_avg_pool(p) + same_avg_pool(p)
        x5 = self.left5(h) + h
        return torch.cat([p, x1, x2, x3, x4, x5], 1)


class ReductionCell(nn.Module):
    """_reduction_a_cell: 4 * filters channels at half the size."""

    def __init__(self, ip_shape: tuple[int, int], p_shape: tuple[int, int] | None, filters: int) -> None:
        super().__init__()
        self.adjust = Adjust(p_shape, ip_shape[1], filters)
        cp = ip_shape[0] if p_shape is None else filters  # p = None: p is ip itself
        self.conv_1, self.bn_1 = nn.Conv2d(ip_shape[0], filters, 1, bias=False), bn(filters)
        self.left1, self.right1 = SeparableBlock(filters, filters, 5, 2), SeparableBlock(cp, filters, 7, 2)
        self.right2 = SeparableBlock(cp, filters, 7, 2)
        self.right3 = SeparableBlock(cp, filters, 5, 2)
        self.left4 = SeparableBlock(filters, filters, 3)  # Keras' block_id reduction_left4 on the x5 path

    def forward(self, ip: torch.Tensor, p: torch.Tensor | None) -> torch.Tensor:
        p = self.adjust(p, ip)
        h = self.bn_1(self.conv_1(F.relu(ip)))
        h3 = correct_pad(h, 3)
        x1 = self.left1(h) + self.right1(p)
        x2 = F.max_pool2d(h3, 3, 2) + self.right2(p)
        x3 = F.avg_pool2d(h3, 3, 2) + self.right3(p)
        x4 = x2 + same_avg_pool(x1)
        x5 = self.left4(x1) + F.max_pool2d(h3, 3, 2)
        return torch.cat([x2, x3, x4, x5], 1)


class NASNet(nn.Module):
    """NASNet(penultimate_filters, num_blocks, stem_block_filters, skip_reduction=False, filter_multiplier) for an H x W input."""

    def __init__(self, size: tuple[int, int], penultimate_filters: int = 1056, num_blocks: int = 4, stem: int = 32, multiplier: int = 2) -> None:
        super().__init__()
        filters = penultimate_filters // 24
        width = (size[1] - 3) // 2 + 1  # stem_conv1: 3x3, strides 2, 'valid'
        self.stem_conv1, self.stem_bn1 = nn.Conv2d(3, stem, 3, 2, bias=False), bn(stem)
        cells: list[nn.Module] = []
        x, p = (stem, width), None  # (channels, width) of the cell's two inputs, as Keras' shapes decide _adjust_block

        def add(cell: type[NormalCell | ReductionCell], f: int) -> None:
            nonlocal x, p
            cells.append(cell(x, p, f))
            x, p = ((6 * f, x[1]) if cell is NormalCell else (4 * f, -(-x[1] // 2))), x

        add(ReductionCell, filters // multiplier**2)
        add(ReductionCell, filters // multiplier)
        for stage in range(3):
            if stage:
                add(ReductionCell, filters * multiplier**stage)
            for _ in range(num_blocks):
                add(NormalCell, filters * multiplier**stage)
        self.cells = nn.ModuleList(cells)
        self.predictions = nn.Linear(x[0], 1000)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x, p = self.stem_bn1(self.stem_conv1(image)), None
        for cell in self.cells:
            x, p = cell(x, p), x
        return self.predictions(F.relu(x).mean((2, 3)))


def test_params_are_keras_trainable_count() -> None:
    graph = netdsl.load(SPECS / "nasnet_mobile.yaml")
    # Keras applications NASNetMobile(): "Trainable params: 5,289,978"
    assert sum(math.prod(s) for node in graph for _, s in node.params()) == 5_289_978


def test_keras_total_adds_batchnorm_moving_statistics() -> None:
    graph = netdsl.load(SPECS / "nasnet_mobile.yaml")
    params = sum(math.prod(s) for node in graph for _, s in node.params())
    moving = sum(math.prod(s) for node in graph for p, s in node.buffers() if p.endswith(("running_mean", "running_var")))
    assert params + moving == 5_326_716  # Keras applications NASNetMobile(): "Total params: 5,326,716"


def test_cell_shapes_at_224() -> None:
    graph = netdsl.load(SPECS / "nasnet_mobile.yaml")
    # Keras: stem 111x111, reduction cells to 56, 28 (4 * filters channels), normal cells 6 * filters, 1056 = 6 * 176 at 7x7
    cells = {"stem_1": (44, 56, 56), "stem_2": (88, 28, 28), "normal_3": (264, 28, 28), "reduce_4": (352, 14, 14)}
    cells |= {"normal_8": (528, 14, 14), "reduce_8": (704, 7, 7), "normal_12": (1056, 7, 7)}
    assert graph.shape_of("stem_bn1") == (32, 111, 111)
    assert {name: graph.shape_of(f"{name}.concat") for name in cells} == cells
    assert graph.output_shape == (1000,)


def test_nasnet_mobile_equals_keras_nasnet_mobile() -> None:
    # Keras' smallest input is 32x32. At 35x32 the heights are 17 -> 9 -> 5 -> 3 -> 2 and the widths 15 -> 8 -> 4 -> 2 -> 1:
    # odd and even sizes, different in the two dims, so padding on the wrong side or in the wrong dim would show.
    spec = netdsl.compile(SPECS / "nasnet_mobile.yaml", input_shape="3x35x32", seed=0)
    x = torch.randn(2, 3, 35, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert same_function(spec, NASNet((35, 32)), x).shape == (2, 1000)


def test_correct_pad_pads_the_end_of_an_even_map() -> None:
    x = torch.ones(1, 1, 4, 5)
    # even height 4: 0 rows before, 1 after; odd width 5: 1 column each side (imagenet_utils.correct_pad, kernel 3)
    assert correct_pad(x, 3)[0, 0].tolist() == [[0, 1, 1, 1, 1, 1, 0]] * 4 + [[0] * 7]
