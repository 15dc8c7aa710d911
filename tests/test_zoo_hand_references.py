"""Zoo specs without a torchvision twin compute their paper's function: each equals a hand-written PyTorch module.

The references are written from the papers' descriptions (not from the specs): U-Net (Ronneberger et al. 2015) with
"same" 3x3 convolutions, with and without batch norm, and the convolutional denoising autoencoder of
specs/autoencoder_digits.yaml. Both sides get the same values (in state_dict order: equal shapes, one after the
other) and must give the same outputs in float64 eval mode.
"""

from __future__ import annotations

import torch
from torch import nn

import netdsl
from tests.conftest import SPECS


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
        for i, (up, conv) in enumerate(self.stages):
            x = conv(torch.cat([skips[-2 - i], up(x)], 1))  # the contracting path's map first, as in the paper's figure
        return self.head(x)


def same_function(spec: nn.Module, reference: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Fill both modules alike (state_dict order), run them in float64 eval mode, require equal outputs; the spec's output."""
    ours, theirs = spec.state_dict(), reference.state_dict()
    assert [tuple(v.shape) for v in ours.values()] == [tuple(v.shape) for v in theirs.values()]
    g = torch.Generator().manual_seed(3)
    filled = {
        k: (
            torch.rand(v.shape, generator=g, dtype=torch.float64) + 0.5
            if k.endswith("running_var")
            else torch.randn(v.shape, generator=g, dtype=torch.float64) * 0.3
        )
        if v.is_floating_point()
        else v
        for k, v in ours.items()
    }
    spec.double().load_state_dict(filled)
    reference.double().load_state_dict(dict(zip(theirs, filled.values())))
    spec.eval()
    reference.eval()
    with torch.no_grad():
        got, want = spec(x), reference(x)
    assert got.shape == want.shape
    assert torch.allclose(got, want, rtol=1e-9, atol=1e-9), float((got - want).abs().max())
    return got


def test_unet_equals_the_hand_written_unet():
    spec = netdsl.compile(SPECS / "unet.yaml", variables={"base": 8}, seed=0)  # the paper's 64 channels, scaled down for speed
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    same_function(spec, UNet(3, 2, base=8, depth=4, bn=False), x)


def test_unet_with_batch_norm_equals_the_hand_written_unet():
    spec = netdsl.compile(SPECS / "unet.yaml", variables={"base": 8, "depth": 2, "bn": True}, input_shape="3x32x32", seed=0)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    same_function(spec, UNet(3, 2, base=8, depth=2, bn=True), x)


def test_unet_shapes_demo_equals_the_hand_written_unet():
    spec = netdsl.compile(SPECS / "unet_shapes.yaml", seed=0)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    same_function(spec, UNet(3, 4, base=16, depth=2, bn=True), x)


def test_denoising_autoencoder_equals_the_hand_written_one():
    reference = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # encoder: 16 x 8 x 8
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # the code: 32 x 4 x 4
        nn.ConvTranspose2d(32, 32, 2, stride=2), nn.ReLU(),  # decoder: 32 x 8 x 8
        nn.ConvTranspose2d(32, 16, 2, stride=2), nn.ReLU(),  # 16 x 16 x 16
        nn.Conv2d(16, 1, 3, padding=1), nn.Sigmoid(),
    )  # fmt: skip
    x = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    same_function(netdsl.compile(SPECS / "autoencoder_digits.yaml", seed=0), reference, x)
