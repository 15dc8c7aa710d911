"""Layer types, one family per module; importing this package registers them all."""

from netdsl.layers import activation, conv, core, crop, merge, named_activation, norm, pool, sequence, shape, tensors, window  # noqa: F401  (registration)
from netdsl.layers.base import Layer, Shape, Tensor
from netdsl.layers.registry import ALIASES, LAYERS, canonical, register

__all__ = ["ALIASES", "LAYERS", "Layer", "Shape", "Tensor", "canonical", "register"]
