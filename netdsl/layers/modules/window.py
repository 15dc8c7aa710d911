"""PyTorch modules behind netdsl/layers/window.py: Swin's shifted-window attention and patch merging (channels last),
and MaxViT's relative attention over partitioned maps.

Written from torchvision's swin_transformer.py (ShiftedWindowAttention, shifted_window_attention, PatchMerging) and
maxvit.py (RelativePositionalMultiHeadAttention) with the same parameter and buffer names and order, so their state
dicts load with strict=True; torchvision is not imported.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def relative_position_index(window: tuple[int, int]) -> torch.Tensor:
    """For each pair (query, key) of a window's Wh*Ww positions, flattened, the row of the bias table for their offset."""
    coords = torch.stack(torch.meshgrid(torch.arange(window[0]), torch.arange(window[1]), indexing="ij")).flatten(1)  # 2, N
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()  # N, N, 2
    relative[:, :, 0] += window[0] - 1
    relative[:, :, 1] += window[1] - 1
    relative[:, :, 0] *= 2 * window[1] - 1
    return relative.sum(-1).flatten()


def effective_shift(window: tuple[int, int], shift: tuple[int, int], padded: tuple[int, int]) -> tuple[int, int]:
    """torchvision's rule: no shift along a dim whose (padded) size the window covers."""
    return (0 if window[0] >= padded[0] else shift[0], 0 if window[1] >= padded[1] else shift[1])


def shift_mask(window: tuple[int, int], shift: tuple[int, int], padded: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
    """windows x N x N: 0 where query and key came from the same region before the cyclic shift, -100 elsewhere."""
    mask = like.new_zeros(padded)
    h_slices = ((0, -window[0]), (-window[0], -shift[0]), (-shift[0], None))
    w_slices = ((0, -window[1]), (-window[1], -shift[1]), (-shift[1], None))
    count = 0
    for h in h_slices:
        for w in w_slices:
            mask[h[0] : h[1], w[0] : w[1]] = count
            count += 1
    mask = mask.view(padded[0] // window[0], window[0], padded[1] // window[1], window[1])
    mask = mask.permute(0, 2, 1, 3).reshape(-1, window[0] * window[1])
    mask = mask.unsqueeze(1) - mask.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)


class ShiftedWindowAttention(nn.Module):
    """Multi-head self-attention within (shifted) windows of a B x H x W x C map, with a learned relative position bias."""

    relative_position_index: torch.Tensor

    def __init__(self, dim: int, window: tuple[int, int], shift: tuple[int, int], heads: int, attention_dropout: float = 0.0, dropout: float = 0.0):
        super().__init__()
        self.window, self.shift, self.heads = window, shift, heads
        self.attention_dropout, self.dropout = attention_dropout, dropout
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        # torchvision's order: the table (its own parameter) and index (its own buffer) come before qkv and proj in state_dict()
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window[0] - 1) * (2 * window[1] - 1), heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(window))

    def relative_position_bias(self) -> torch.Tensor:
        """1 x heads x N x N: the table's row for each (query, key) offset."""
        n = self.window[0] * self.window[1]
        bias = self.relative_position_bias_table[self.relative_position_index].view(n, n, -1)
        return bias.permute(2, 0, 1).contiguous().unsqueeze(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        wh, ww = self.window
        x = F.pad(x, (0, 0, 0, (ww - w % ww) % ww, 0, (wh - h % wh) % wh))
        padded = (x.shape[1], x.shape[2])
        shift = effective_shift(self.window, self.shift, padded)
        if sum(shift) > 0:
            x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
        windows = (padded[0] // wh) * (padded[1] // ww)
        n = wh * ww
        x = x.view(b, padded[0] // wh, wh, padded[1] // ww, ww, c).permute(0, 1, 3, 2, 4, 5).reshape(b * windows, n, c)

        qkv = self.qkv(x).reshape(b * windows, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * (c // self.heads) ** -0.5, qkv[1], qkv[2]
        attn = q.matmul(k.transpose(-2, -1)) + self.relative_position_bias()
        if sum(shift) > 0:
            mask = shift_mask(self.window, shift, padded, x)
            attn = (attn.view(b, windows, self.heads, n, n) + mask.unsqueeze(1).unsqueeze(0)).view(-1, self.heads, n, n)
        attn = F.dropout(attn.softmax(dim=-1), p=self.attention_dropout, training=self.training)
        x = attn.matmul(v).transpose(1, 2).reshape(b * windows, n, c)
        x = F.dropout(self.proj(x), p=self.dropout, training=self.training)

        x = x.view(b, padded[0] // wh, padded[1] // ww, wh, ww, c).permute(0, 1, 3, 2, 4, 5).reshape(b, padded[0], padded[1], c)
        if sum(shift) > 0:
            x = torch.roll(x, shifts=shift, dims=(1, 2))
        return x[:, :h, :w, :].contiguous()

    def extra_repr(self) -> str:
        return f"heads={self.heads}, window={list(self.window)}, shift={list(self.shift)}"


class PatchMerging(nn.Module):
    """Halve H and W of a B x H x W x C map (odd sizes padded with zeros) by stacking each 2x2 patch's 4C features, then
    LayerNorm(4C) and a linear reduction to 2C without bias."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)  # defined first: torchvision's state_dict order
        self.norm = nn.LayerNorm(4 * dim, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-3], x.shape[-2]
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[..., 0::2, 0::2, :], x[..., 1::2, 0::2, :], x[..., 0::2, 1::2, :], x[..., 1::2, 1::2, :]], -1)
        return self.reduction(self.norm(x))


class RelativeAttention(nn.Module):
    """Multi-head self-attention within each group of a B x G x P x C input, P = size * size tokens, with a learned
    relative position bias (torchvision's RelativePositionalMultiHeadAttention)."""

    relative_position_index: torch.Tensor

    def __init__(self, dim: int, head_dim: int, size: int):
        super().__init__()
        self.heads, self.head_dim, self.size = dim // head_dim, head_dim, size
        self.to_qkv = nn.Linear(dim, dim * 3)
        self.scale = dim**-0.5  # torchvision scales by feat_dim, not head_dim
        self.merge = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * size - 1) ** 2, self.heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index((size, size)).view(size * size, size * size))

    def relative_position_bias(self) -> torch.Tensor:
        """1 x heads x P x P: the table's row for each (query, key) offset."""
        p = self.size * self.size
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)].view(p, p, -1)
        return bias.permute(2, 0, 1).contiguous().unsqueeze(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, g, p, c = x.shape
        q, k, v = (t.reshape(b, g, p, self.heads, self.head_dim).transpose(2, 3) for t in self.to_qkv(x).chunk(3, dim=-1))
        attn = (q.matmul((k * self.scale).transpose(-2, -1)) + self.relative_position_bias()).softmax(dim=-1)
        return self.merge(attn.matmul(v).transpose(2, 3).reshape(b, g, p, c))

    def extra_repr(self) -> str:
        return f"heads={self.heads}, head_dim={self.head_dim}, size={self.size}"
