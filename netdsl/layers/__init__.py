"""Layer types, one family per module (activation.py, conv.py, ...): registry.LAYERS imports a family when a spec uses
one of its types (netdsl/layers/index.py says which module holds which type)."""

from netdsl.layers.base import Layer, Shape, Tensor
from netdsl.layers.registry import ALIASES, LAYERS, canonical, register

__all__ = ["ALIASES", "LAYERS", "Layer", "Shape", "Tensor", "canonical", "register"]
