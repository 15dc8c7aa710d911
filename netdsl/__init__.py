"""netdsl: declarative network definitions, checked before anything is built."""

from netdsl.errors import Diagnostic, Loc, SpecError
from netdsl.ir import Graph, Node
from netdsl.spec.load import load, load_text

__version__ = "0.1.0"

__all__ = ["Diagnostic", "Graph", "Loc", "Node", "SpecError", "__version__", "load", "load_text"]
