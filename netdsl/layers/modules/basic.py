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


class Permute(nn.Module):
    """x.permute(0, *dims): the batch dim stays first; `dims` are tensor dims (per-sample dims + 1)."""

    def __init__(self, dims: tuple[int, ...]):
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, *self.dims)

    def extra_repr(self) -> str:
        return f"dims={self.dims}"


class Reshape(nn.Module):
    """Each sample to a fixed shape (no -1 left): x.reshape(batch, *shape)."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


class Transpose(nn.Module):
    """x.transpose(a, b) with tensor dims (per-sample dims + 1)."""

    def __init__(self, a: int, b: int):
        super().__init__()
        self.a, self.b = a, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(self.a, self.b)

    def extra_repr(self) -> str:
        return f"a={self.a}, b={self.b}"


class Split(nn.Module):
    """torch.split(x, sizes, dim): a tuple of parts, the first one first."""

    def __init__(self, sizes: tuple[int, ...], dim: int):
        super().__init__()
        self.sizes, self.dim = sizes, dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(torch.split(x, list(self.sizes), dim=self.dim))

    def extra_repr(self) -> str:
        return f"sizes={self.sizes}, dim={self.dim}"


class Select(nn.Module):
    """x.select(dim, index): that dim removed (dim is a tensor dim, index may be negative)."""

    def __init__(self, dim: int, index: int):
        super().__init__()
        self.dim, self.index = dim, index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.select(self.dim, self.index)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, index={self.index}"


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of N x C x H x W, as torchvision's ConvNeXt LayerNorm2d: permute, normalize, permute back."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class StochasticDepth(nn.Module):
    """torchvision.ops.StochasticDepth: while training, drop a residual branch with probability p and scale survivors by 1/(1-p).

    mode 'row' draws one keep/drop per sample, 'batch' one for the whole batch; eval mode (or p == 0) is the identity.
    """

    def __init__(self, p: float, mode: str):
        super().__init__()
        self.p, self.mode = p, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        size = [x.shape[0]] + [1] * (x.dim() - 1) if self.mode == "row" else [1] * x.dim()
        noise = torch.empty(size, dtype=x.dtype, device=x.device).bernoulli_(survival)
        if survival > 0.0:
            noise.div_(survival)
        return x * noise

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}"


class SamePool(nn.Module):
    """Max or average pooling with Keras/TensorFlow 'same' padding when it is uneven (the extra cell at the end).

    Max pads with -inf; an average counts the padded cells only with count_include_pad (Keras leaves them out).
    """

    def __init__(self, kernel: tuple[int, ...], stride: tuple[int, ...], pads: tuple[tuple[int, int], ...], average: bool, count_include_pad: bool):
        super().__init__()
        self.kernel, self.stride, self.average, self.count_include_pad = kernel, stride, average, count_include_pad
        self.pads = tuple(p for pair in reversed(pads) for p in pair)  # F.pad wants the last dim first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool = (F.avg_pool2d if self.average else F.max_pool2d) if len(self.kernel) == 2 else (F.avg_pool1d if self.average else F.max_pool1d)
        if not self.average:
            return pool(F.pad(x, self.pads, value=float("-inf")), self.kernel, self.stride)
        total = pool(F.pad(x, self.pads), self.kernel, self.stride)
        if self.count_include_pad:
            return total
        ones = F.pad(torch.ones_like(x[:1, :1]), self.pads)
        return total / pool(ones, self.kernel, self.stride)  # the mean over the real cells of each window
