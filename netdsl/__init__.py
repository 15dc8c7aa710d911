"""netdsl: declarative network definitions, checked before anything is built."""

from typing import Any

from netdsl.errors import Diagnostic, Loc, SpecError
from netdsl.graph.load import load, load_text
from netdsl.ir import Graph, Node
from netdsl.version import __version__

__all__ = ["Diagnostic", "Graph", "Loc", "Node", "SpecError", "__version__", "compile", "export", "load", "load_text"]


def compile(spec: Any, **options: Any) -> Any:
    """A spec file (or loaded Graph) as a torch.fx.GraphModule; imports torch (see netdsl.backends.pytorch.compile)."""
    from netdsl.backends.pytorch import compile as compile_torch

    return compile_torch(spec, **options)


def export(spec: Any, output: Any, *, input_shape: Any = None, variables: Any = None, **options: Any) -> Any:
    """A spec file (or loaded Graph) as a verified, self-describing ONNX file; imports torch (see netdsl.deploy.onnx.export)."""
    from netdsl.deploy.onnx import export as export_onnx

    graph = spec if isinstance(spec, Graph) else load(spec, input_shape=input_shape, variables=variables)
    return export_onnx(graph, output, **options)
