"""The compiled modules compute what hand-written PyTorch computes: weights copied by path, float64, train and eval."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import netdsl
from tests.conftest import SPECS
from tests.handwritten import DenseBlock, ResNet18


class LeNet5(nn.Module):
    """LeCun et al. 1998, 32x32 input, tanh and average pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c3 = nn.Conv2d(1, 6, 5), nn.Conv2d(6, 16, 5)
        self.f5, self.f6, self.output = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(torch.tanh(self.c1(x)), 2)
        x = F.avg_pool2d(torch.tanh(self.c3(x)), 2).flatten(1)
        return self.output(torch.tanh(self.f6(torch.tanh(self.f5(x)))))


DENSE_SPEC = """netdsl: 1
name: dense_block
input: 16x8x8
import: [densenet]
layers:
  - dense_block: {name: block, n: 3, growth: 4}
"""


def same_function(ours: nn.Module, theirs: nn.Module, x: torch.Tensor) -> None:
    theirs_state = theirs.state_dict()
    assert set(theirs_state) == set(ours.state_dict())
    for value in theirs_state.values():  # random, not default, parameters and running statistics
        if value.is_floating_point():
            value.copy_(torch.randn_like(value).abs() + 0.5 if value.dim() == 1 else torch.randn_like(value) * 0.1)
    ours.load_state_dict(theirs_state, strict=True)
    for train in (False, True):
        ours.train(train)
        theirs.train(train)
        with torch.no_grad():
            assert torch.allclose(ours(x), theirs(x), rtol=1e-10, atol=1e-12), f"train={train}"


def test_lenet5():
    same_function(netdsl.compile(SPECS / "lenet5.yaml").double(), LeNet5().double(), torch.randn(4, 1, 32, 32, dtype=torch.float64))


def test_resnet18():
    ours = netdsl.compile(SPECS / "resnet18.yaml", input_shape="3x64x64").double()
    same_function(ours, ResNet18().double(), torch.randn(2, 3, 64, 64, dtype=torch.float64))


def test_dense_block():
    ours = netdsl.compile(netdsl.load_text(DENSE_SPEC, str(SPECS / "dense.yaml"))).double()
    theirs = nn.Module()
    theirs.block = DenseBlock(16, 4, 3)
    theirs.forward = theirs.block.forward  # type: ignore[method-assign]
    same_function(ours, theirs.double(), torch.randn(3, 16, 8, 8, dtype=torch.float64))


@pytest.mark.parametrize("train", [False, True])
def test_gradients_match(train):
    ours = netdsl.compile(SPECS / "lenet5.yaml").double().train(train)
    theirs = LeNet5().double().train(train)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(4, 1, 32, 32, dtype=torch.float64)
    ours(x).square().sum().backward()
    theirs(x).square().sum().backward()
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-10), name
