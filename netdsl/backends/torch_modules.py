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


class ResizeTo(nn.Module):
    """Interpolate x to the spatial size of a second tensor, read at run time (`upsample: {to: NAME}`)."""

    def __init__(self, mode: str, align_corners: bool | None):
        super().__init__()
        self.mode, self.align_corners = mode, align_corners

    def forward(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=like.shape[-2:], mode=self.mode, align_corners=self.align_corners)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, align_corners={self.align_corners}"


class MaxUnpool(nn.Module):
    """Max unpooling to the size of a third tensor (the pool's input), read at run time: odd sizes come back exactly."""

    def __init__(self, kernel: tuple[int, ...], stride: tuple[int, ...], padding: tuple[int, ...]):
        super().__init__()
        self.kernel, self.stride, self.padding = kernel, stride, padding

    def forward(self, x: torch.Tensor, indices: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        n = len(self.kernel)
        size = like.shape[-n:]
        if n == 1:
            return F.max_unpool1d(x, indices, self.kernel, self.stride, self.padding, output_size=size)
        return F.max_unpool2d(x, indices, self.kernel, self.stride, self.padding, output_size=size)

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}, stride={self.stride}, padding={self.padding}"


class CropTo(nn.Module):
    """Center crop of the trailing dims to a second tensor's, offsets rounded as torchvision's center_crop."""

    def forward(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        for dim in range(2, x.dim()):
            size = like.shape[dim]
            start = round((x.shape[dim] - size) / 2.0)  # torchvision: int(round(...)), Python's rounding (half to even)
            x = x.narrow(dim, start, size)
        return x


class PadTo(nn.Module):
    """Zero padding of the trailing dims to a second tensor's: diff // 2 before, the rest after (U-Net's F.pad)."""

    def forward(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        pad: list[int] = []
        for dim in reversed(range(2, x.dim())):  # F.pad lists the last dim first
            diff = like.shape[dim] - x.shape[dim]
            pad += [diff // 2, diff - diff // 2]
        return F.pad(x, pad)
