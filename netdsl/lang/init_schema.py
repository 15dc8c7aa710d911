"""The vocabulary of weight initialization in specs (schema only; the PyTorch backend applies it)."""

from __future__ import annotations

from typing import Any

METHOD_ARGS: dict[str, tuple[str, ...]] = {
    "default": (),
    "kaiming_normal": ("a", "mode", "nonlinearity"),
    "kaiming_uniform": ("a", "mode", "nonlinearity"),
    "xavier_normal": ("gain",),
    "xavier_uniform": ("gain",),
    "normal": ("mean", "std"),
    "uniform": ("a", "b"),
    "trunc_normal": ("mean", "std", "a", "b"),
    "zeros": (),
    "ones": (),
    "constant": ("val",),
    "orthogonal": ("gain",),
}
ALIASES = {"glorot_normal": "xavier_normal", "glorot_uniform": "xavier_uniform", "he_normal": "kaiming_normal", "he_uniform": "kaiming_uniform"}
METHODS = [*METHOD_ARGS, *ALIASES]
NONLINEARITIES = ["linear", "conv1d", "conv2d", "sigmoid", "tanh", "relu", "leaky_relu", "selu"]


def canonical_method(name: str) -> str:
    return ALIASES.get(name, name)


def init_schema() -> dict[str, Any]:
    """A layer's `init`: a method name, or {method, its arguments, bias}."""
    number = {"type": "number"}
    return {
        "description": "weight initialization: a method name, or {method, arguments, bias}; the PyTorch backend applies it",
        "anyOf": [
            {"enum": METHODS},
            {
                "type": "object",
                "properties": {
                    "method": {"enum": METHODS},
                    "mode": {"enum": ["fan_in", "fan_out"]},
                    "nonlinearity": {"enum": NONLINEARITIES},
                    "a": number,
                    "b": number,
                    "gain": number,
                    "mean": number,
                    "std": {"type": "number", "exclusiveMinimum": 0},
                    "val": number,
                    "bias": {"anyOf": [{"enum": METHODS}, number]},
                },
                "additionalProperties": False,
            },
        ],
    }
