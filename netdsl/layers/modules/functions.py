"""The functions the compiled forward calls for layers that hold one tensor at their own path (netdsl/layers/tensors.py)."""

from __future__ import annotations

import operator

import torch

add = operator.add
mul = operator.mul


def prepend_token(x: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
    """[token; x] along the sequence dim: ViT's class token, one copy per sample."""
    return torch.cat([token.expand(x.shape[0], -1, -1), x], dim=1)
