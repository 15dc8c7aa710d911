"""A fixture for the ONNX tests: torch.onnx's function registry built once per opset, not on every export.

torch.onnx.export rebuilds its registry of ~500 onnxscript functions (about 1 s) for each call; a test module
that exports dozens of models shares one. It patches a private torch API, so it steps aside if that moved.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module", autouse=True)
def shared_onnx_registry() -> Iterator[None]:
    from torch.onnx._internal.exporter import _registration

    original = getattr(_registration.ONNXRegistry, "from_torchlib", None)
    if original is None:
        yield
        return
    cache: dict[object, object] = {}

    def from_torchlib(*args: object, **kwargs: object) -> object:
        key = (args, tuple(sorted(kwargs.items())))
        if key not in cache:
            cache[key] = original(*args, **kwargs)
        return cache[key]

    _registration.ONNXRegistry.from_torchlib = staticmethod(from_torchlib)  # called on the class and on instances
    yield
    _registration.ONNXRegistry.from_torchlib = original
