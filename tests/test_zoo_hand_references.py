"""Zoo specs without a torchvision twin compute their paper's function: each equals a hand-written PyTorch module.

The references are written from the papers' descriptions or the authors' code (not from the specs): U-Net
(Ronneberger et al. 2015) with "same" 3x3 convolutions, with and without batch norm, the convolutional denoising
autoencoder of specs/autoencoder_digits.yaml, LeNet-5 and SegNet here; the CIFAR residual and dense networks in
test_zoo_hand_references_cifar.py, Xception in test_zoo_hand_references_xception.py. Both sides get the same values
(in state_dict order: equal shapes, one after the other) and must give the same outputs in float64 eval mode.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import netdsl
from tests.conftest import SPECS

pytestmark = pytest.mark.usefixtures("one_thread")


def double_conv(cin: int, c: int, bn: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(2):
        layers.append(nn.Conv2d(cin if i == 0 else c, c, 3, padding=1, bias=not bn))
        if bn:
            layers.append(nn.BatchNorm2d(c))
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """Contracting path: depth + 1 stages of two 3x3 conv-ReLU (base channels, doubling), 2x2 max pool between; expanding
    path: 2x2 up-convolution halving the channels, concatenation with the contracting stage of that size, two 3x3 conv-ReLU;
    a 1x1 conv to the classes."""

    def __init__(self, cin: int, classes: int, base: int, depth: int, bn: bool) -> None:
        super().__init__()
        self.encoders = nn.ModuleList()
        for i in range(depth + 1):
            self.encoders.append(double_conv(cin if i == 0 else base * 2 ** (i - 1), base * 2**i, bn))
        self.stages = nn.ModuleList()
        for i in range(depth):
            c = base * 2 ** (depth - 1 - i)
            self.stages.append(nn.ModuleList([nn.ConvTranspose2d(2 * c, c, 2, stride=2), double_conv(2 * c, c, bn)]))
        self.head = nn.Conv2d(base, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, encoder in enumerate(self.encoders):
            x = encoder(x if i == 0 else nn.functional.max_pool2d(x, 2))
            skips.append(x)
        for i, stage in enumerate(self.stages):
            up, conv = stage[0], stage[1]  # type: ignore[index]
            x = conv(torch.cat([skips[-2 - i], up(x)], 1))  # the contracting path's map first, as in the paper's figure
        return self.head(x)


def same_function(spec: nn.Module, reference: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Fill both modules alike (state_dict order), run them in float64 eval mode, require equal outputs; the spec's output.

    Weights are scaled by 1 / sqrt(fan-in), so that a thousand-layer network's activations stay finite in float64."""
    ours, theirs = spec.state_dict(), reference.state_dict()
    assert [tuple(v.shape) for v in ours.values()] == [tuple(v.shape) for v in theirs.values()]
    g = torch.Generator().manual_seed(3)
    filled = {k: fill(k, v, g) for k, v in ours.items()}
    spec.double().load_state_dict(filled)
    reference.double().load_state_dict(dict(zip(theirs, filled.values())))
    spec.eval()
    reference.eval()
    with torch.no_grad():
        got, want = spec(x), reference(x)
    assert got.shape == want.shape
    assert torch.isfinite(want).all() and want.abs().max() > 0
    assert torch.allclose(got, want, rtol=1e-9, atol=1e-9), float((got - want).abs().max())
    return got


def fill(key: str, value: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A random value for one state_dict entry: positive running variances, fan-in scaled weights, small vectors."""
    if not value.is_floating_point():
        return value
    if key.endswith("running_var"):
        return torch.rand(value.shape, generator=g, dtype=torch.float64) + 0.5
    scale = 0.3 if value.dim() < 2 else value[0].numel() ** -0.5
    return torch.randn(value.shape, generator=g, dtype=torch.float64) * scale


def test_unet_equals_the_hand_written_unet() -> None:
    spec = netdsl.compile(SPECS / "unet.yaml", variables={"base": 8}, seed=0)  # the paper's 64 channels, scaled down for speed
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    same_function(spec, UNet(3, 2, base=8, depth=4, bn=False), x)


def test_unet_with_batch_norm_equals_the_hand_written_unet() -> None:
    spec = netdsl.compile(SPECS / "unet.yaml", variables={"base": 8, "depth": 2, "bn": True}, input_shape="3x32x32", seed=0)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    same_function(spec, UNet(3, 2, base=8, depth=2, bn=True), x)


def test_unet_shapes_demo_equals_the_hand_written_unet() -> None:
    spec = netdsl.compile(SPECS / "unet_shapes.yaml", seed=0)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    same_function(spec, UNet(3, 4, base=16, depth=2, bn=True), x)


def test_denoising_autoencoder_equals_the_hand_written_one() -> None:
    reference = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # encoder: 16 x 8 x 8
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # the code: 32 x 4 x 4
        nn.ConvTranspose2d(32, 32, 2, stride=2), nn.ReLU(),  # decoder: 32 x 8 x 8
        nn.ConvTranspose2d(32, 16, 2, stride=2), nn.ReLU(),  # 16 x 16 x 16
        nn.Conv2d(16, 1, 3, padding=1), nn.Sigmoid(),
    )  # fmt: skip
    x = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    same_function(netdsl.compile(SPECS / "autoencoder_digits.yaml", seed=0), reference, x)


def test_lenet5_equals_the_hand_written_lenet5() -> None:
    # LeCun et al. 1998 at 32x32 as the spec's header states it: full connections between the maps (the paper's C3 is
    # sparse), tanh, 2x2 average pooling without the paper's trainable coefficients, a linear output (not RBF units)
    reference = nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2),  # C1: 6 x 28 x 28, S2: 6 x 14 x 14
        nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2),  # C3: 16 x 10 x 10, S4: 16 x 5 x 5
        nn.Flatten(), nn.Linear(400, 120), nn.Tanh(), nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, 10),
    )  # fmt: skip
    x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert same_function(netdsl.compile(SPECS / "lenet5.yaml", seed=0), reference, x).shape == (2, 10)


def conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]


class SegNet(nn.Module):
    """Badrinarayanan et al. 2017 as the authors' Caffe model (SegNet-Tutorial segnet_train.prototxt): five encoder stages
    of 3x3 conv-BN-ReLU, each ending in a 2x2 stride-2 max pool (Caffe rounds its output size up) whose argmax indices
    the mirrored decoder stage unpools with, back to the encoder map's size (Caffe's upsample_h/w); a decoder stage's
    last conv narrows to the next stage's width, and the first stage ends in a plain 3x3 conv to the classes."""

    def __init__(self, classes: int, widths: tuple[int, ...] = (64, 128, 256, 512, 512), depths: tuple[int, ...] = (2, 2, 3, 3, 3)) -> None:
        super().__init__()
        self.encoders = nn.ModuleList()
        cin = 3
        for c, n in zip(widths, depths):
            self.encoders.append(nn.Sequential(*[m for i in range(n) for m in conv_bn_relu(cin if i == 0 else c, c)]))
            cin = c
        self.decoders = nn.ModuleList()
        for stage in reversed(range(5)):
            c, n = widths[stage], depths[stage]
            layers = [m for _ in range(n - 1) for m in conv_bn_relu(c, c)]
            if stage > 0:
                layers += conv_bn_relu(c, widths[stage - 1])
            self.decoders.append(nn.Sequential(*layers))
        self.classifier = nn.Conv2d(widths[0], classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = []
        for encoder in self.encoders:
            x = encoder(x)
            size = x.shape[-2:]
            x, indices = F.max_pool2d(x, 2, 2, ceil_mode=True, return_indices=True)
            pooled.append((indices, size))
        for decoder in self.decoders:
            indices, size = pooled.pop()
            x = decoder(F.max_unpool2d(x, indices, (2, 2), (2, 2), output_size=size))
        return self.classifier(x)


def test_segnet_equals_the_hand_written_segnet() -> None:
    # full widths at a small input (the parameters do not depend on it) whose sizes are odd at three of the five
    # pools: 36x44 pools to 18x22, 9x11, 5x6, 3x3, 2x2, so each unpooling restores an odd size from rounded-up pooling
    spec = netdsl.compile(SPECS / "segnet.yaml", input_shape="3x36x44", seed=0)
    x = torch.randn(2, 3, 36, 44, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert same_function(spec, SegNet(11), x).shape == (2, 11, 36, 44)
