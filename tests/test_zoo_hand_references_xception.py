"""Xception computes Keras applications' function: the spec equals a hand-written module from keras_applications/xception.py.

Written from the Keras code (Chollet 2017; keras-team/keras-applications, xception.py), not from the spec: two valid
3x3 convs, reduction blocks of separable convs with a 1x1 stride-2 conv + BN projection, eight middle-flow blocks,
the exit flow, global average pooling and the classifier's logits (Keras applies a softmax on top). Keras pads its
"same" max pools TensorFlow's way: pad = max((ceil(n / 2) - 1) * 2 + 3 - n, 0), the smaller half first, so on an
even-sized map the window that starts at 0 reads one padded cell at the end, not at the start.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import netdsl
from tests.conftest import SPECS
from tests.test_zoo_hand_references import same_function

EPS = 1e-3  # Keras' BatchNormalization default

pytestmark = pytest.mark.usefixtures("one_thread")


def same_max_pool(x: torch.Tensor) -> torch.Tensor:
    """MaxPooling2D((3, 3), strides=(2, 2), padding="same") as TensorFlow computes it."""
    pads: list[int] = []
    for n in reversed(x.shape[-2:]):  # F.pad lists the last dim first
        total = max((-(-n // 2) - 1) * 2 + 3 - n, 0)
        pads += [total // 2, total - total // 2]
    return F.max_pool2d(F.pad(x, pads, value=float("-inf")), 3, 2)


class SeparableConv(nn.Sequential):
    """SeparableConv2D(out, (3, 3), padding="same", use_bias=False): a 3x3 depthwise conv, then a 1x1 pointwise conv."""

    def __init__(self, cin: int, out: int) -> None:
        super().__init__(nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False), nn.Conv2d(cin, out, 1, bias=False))


class Reduction(nn.Module):
    """[ReLU]-sepconv-BN-ReLU-sepconv-BN-same max pool, plus Conv2D(out, 1x1, strides 2, "same") + BN of the input."""

    def __init__(self, cin: int, mid: int, out: int, pre_relu: bool = True) -> None:
        super().__init__()
        self.pre_relu = pre_relu
        self.sepconv1, self.sepconv1_bn = SeparableConv(cin, mid), nn.BatchNorm2d(mid, eps=EPS)
        self.sepconv2, self.sepconv2_bn = SeparableConv(mid, out), nn.BatchNorm2d(out, eps=EPS)
        self.residual = nn.Sequential(nn.Conv2d(cin, out, 1, 2, bias=False), nn.BatchNorm2d(out, eps=EPS))  # 1x1 "same" pads nothing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.sepconv1_bn(self.sepconv1(F.relu(x) if self.pre_relu else x))
        y = self.sepconv2_bn(self.sepconv2(F.relu(y)))
        return same_max_pool(y) + self.residual(x)


class Middle(nn.Module):
    """Three times ReLU-sepconv-BN at 728 channels, plus the identity."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList([m for _ in range(3) for m in (SeparableConv(728, 728), nn.BatchNorm2d(728, eps=EPS))])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for conv, bn in zip(self.convs[::2], self.convs[1::2]):
            y = bn(conv(F.relu(y)))
        return y + x


class Xception(nn.Module):
    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 32, 3, 2, bias=False), nn.BatchNorm2d(32, eps=EPS), nn.ReLU(),  # block1_conv1, "valid"
            nn.Conv2d(32, 64, 3, bias=False), nn.BatchNorm2d(64, eps=EPS), nn.ReLU(),  # block1_conv2
        )  # fmt: skip
        self.entry = nn.Sequential(Reduction(64, 128, 128, pre_relu=False), Reduction(128, 256, 256), Reduction(256, 728, 728))
        self.middle = nn.Sequential(*[Middle() for _ in range(8)])
        self.exit = Reduction(728, 728, 1024)
        self.head = nn.Sequential(
            SeparableConv(1024, 1536), nn.BatchNorm2d(1536, eps=EPS), nn.ReLU(),
            SeparableConv(1536, 2048), nn.BatchNorm2d(2048, eps=EPS), nn.ReLU(),
        )  # fmt: skip
        self.predictions = nn.Linear(2048, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.exit(self.middle(self.entry(self.stem(x)))))
        return self.predictions(x.mean((2, 3)))


def test_same_max_pool_pads_the_end_of_an_even_map() -> None:
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    # windows start at 0 and 2; the second reads rows and columns 2, 3 and a padded 4: max at (3, 3) = 15
    assert same_max_pool(x).flatten().tolist() == [10.0, 11.0, 14.0, 15.0]
    assert same_max_pool(torch.arange(25.0).reshape(1, 1, 5, 5)).shape == (1, 1, 3, 3)  # odd: one cell each side


def test_xception_equals_keras_xception() -> None:
    # Keras' smallest input is 71x71, where every pooled map is odd-sized and "same" padding is symmetric. At 79x75
    # the maps are 37x35 -> 19x18 -> 10x9 -> 5x5 -> 3x3: both parities, so padding on the wrong side would show.
    spec = netdsl.compile(SPECS / "xception.yaml", input_shape="3x79x75", seed=0)
    x = torch.randn(2, 3, 79, 75, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert same_function(spec, Xception(), x).shape == (2, 1000)


def test_xception_pools_as_tensorflow_at_its_published_size() -> None:
    graph = netdsl.load(SPECS / "xception.yaml")
    model = netdsl.compile(graph, seed=0)
    pools = [node for node in graph if node.op == "maxpool"]
    assert [node.input_shapes[0][1:] for node in pools] == [(147, 147), (74, 74), (37, 37), (19, 19)]  # 74: padded at the end only
    for node in pools:
        x = torch.randn(1, 2, *node.input_shapes[0][1:], generator=torch.Generator().manual_seed(0))
        out = model.get_submodule(node.name)(x)
        assert torch.equal(out[0] if isinstance(out, tuple) else out, same_max_pool(x)), node.name
