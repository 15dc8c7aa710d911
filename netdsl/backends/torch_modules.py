"""Small parameter-free modules for layer types PyTorch has no module for (merges, shortcuts, pooling)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Add(nn.Module):
    """Elementwise sum of all inputs (residual connections)."""

    def forward(self, x: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        for y in rest:
            x = x + y
        return x


class Mul(nn.Module):
    """Elementwise product of all inputs, broadcasting (squeeze-and-excitation gating)."""

    def forward(self, x: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        for y in rest:
            x = x * y
        return x


class Concat(nn.Module):
    """Concatenation along the channel dim."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=1)


class GlobalAvgPool(nn.Module):
    """Mean over all spatial dims; keepdim keeps them as size 1."""

    def __init__(self, keepdim: bool = False):
        super().__init__()
        self.keepdim = keepdim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=tuple(range(2, x.dim())), keepdim=self.keepdim)

    def extra_repr(self) -> str:
        return f"keepdim={self.keepdim}"


class Subsample(nn.Module):
    """x[:, :, ::s, ::s], the CIFAR ResNet option-A shortcut's downsampling."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :: self.stride, :: self.stride]

    def extra_repr(self) -> str:
        return f"stride={self.stride}"


class PadChannels(nn.Module):
    """Zero channels added before and after (the parameter-free shortcut of CIFAR ResNet option A and PyramidNet)."""

    def __init__(self, before: int, after: int):
        super().__init__()
        self.before, self.after = before, after

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (0, 0, 0, 0, self.before, self.after))

    def extra_repr(self) -> str:
        return f"before={self.before}, after={self.after}"
