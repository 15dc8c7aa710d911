"""Which input sizes a network accepts, found by re-running shape inference over the IR at other sizes.

Shape rules are cheap (no weights), so a dozen probes cost milliseconds. The answer reads like
"H, W >= 32 and divisible by 32", or "H, W = 32 only" where a flatten feeds a linear layer.
"""

from __future__ import annotations

from dataclasses import dataclass

from netdsl.errors import ShapeError
from netdsl.ir import INPUT, Graph
from netdsl.layers.base import Shape, Tensor

PERIOD_LIMIT = 64  # the largest divisibility rule looked for


def fits(graph: Graph, input_shape: Shape, relaxed: bool = False) -> bool:
    """Whether the graph's shape rules accept another input shape with the same weights.

    relaxed: ignore weight shapes and merge mismatches; then fitting is monotone in the size
    (every window rule is), which makes the minimum a binary search.
    """
    shapes: dict[str, Shape] = {INPUT: input_shape}
    weights = _weights(graph)
    for node in graph.nodes:
        inputs = tuple(shapes[i] for i in node.inputs)
        try:
            shapes[node.name] = node.layer.infer(inputs)
        except ShapeError:
            if not (relaxed and node.layer.arity == 0):
                return False
            smallest = min(inputs, key=lambda s: s[1:])
            shapes[node.name] = (node.shape[0], *smallest[1:])
        if not relaxed and weights.get(node.name) and node.layer.params(inputs) != weights[node.name]:  # the same weights must fit
            return False
    return True


_WEIGHTS: dict[int, tuple[Graph, dict[str, list[Tensor]]]] = {}


def _weights(graph: Graph) -> dict[str, list[Tensor]]:
    """Each node's parameters at the graph's own input (computed once per graph: a rule probes a dozen sizes)."""
    cached = _WEIGHTS.get(id(graph))
    if cached is None or cached[0] is not graph:
        _WEIGHTS.clear()  # one graph at a time: the cache never grows
        cached = _WEIGHTS[id(graph)] = (graph, {n.name: n.layer.params(n.input_shapes) for n in graph.nodes})
    return cached[1]


@dataclass(frozen=True)
class InputRule:
    """Accepted spatial sizes n: n >= minimum and (n - minimum) % multiple == 0, or n == minimum if exact."""

    minimum: int
    multiple: int = 1
    exact: bool = False
    dims: str = "H, W"
    maximum: int | None = None  # e.g. a flatten feeding a linear layer tolerates only a few sizes

    def __str__(self) -> str:
        if self.exact:
            return f"{self.dims} = {self.minimum} only"
        text = f"{self.dims} from {self.minimum} to {self.maximum}" if self.maximum else f"{self.dims} >= {self.minimum}"
        if self.multiple > 1:
            offset = self.minimum % self.multiple
            text += f" and divisible by {self.multiple}" if offset == 0 else f" and = {offset} mod {self.multiple}"
        return text

    def accepts(self, n: int) -> bool:
        if self.exact:
            return n == self.minimum
        return self.minimum <= n <= (self.maximum or n) and (n - self.minimum) % self.multiple == 0


def input_rule(graph: Graph) -> InputRule | None:
    """The rule for square spatial inputs of a C x H x W (or C x L) network, or for the length of an L x E sequence
    (a 2-D input whose second dim cannot change: attention, recurrent layers); None for feature vectors."""
    shape = graph.input_shape
    if len(shape) < 2:
        return None
    rule = _rule(graph, tuple(range(1, len(shape))), "H, W" if len(shape) == 3 else "L")
    if len(shape) == 2 and (rule is None or rule.exact):
        sequence = _rule(graph, (0,), "L (the sequence)")
        if sequence is not None and not sequence.exact:
            return sequence
    return rule


def _rule(graph: Graph, axes: tuple[int, ...], dims: str) -> InputRule | None:
    """The rule for the input sizes along `axes` (all set to one size n)."""
    shape = graph.input_shape

    def sized(n: int) -> Shape:
        return tuple(n if i in axes else d for i, d in enumerate(shape))

    own = max(shape[i] for i in axes)
    if not fits(graph, sized(own)):
        return None  # non-square input whose square version does not fit: no simple rule
    lo, hi = 1, own
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fits(graph, sized(mid), relaxed=True) else (mid + 1, hi)
    first = next((n for n in range(lo, min(lo + PERIOD_LIMIT, own) + 1) if fits(graph, sized(n))), own)
    for step in range(1, PERIOD_LIMIT + 1):
        if fits(graph, sized(first + step)):
            break
    else:
        return InputRule(first, exact=True, dims=dims)
    far = max(4 * own, first + 4 * PERIOD_LIMIT) // step
    if fits(graph, sized(first + far * step)):
        return InputRule(first, step, dims=dims)
    lo, hi = 1, far  # the sizes form a range: find its top
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(graph, sized(first + mid * step)) else (lo, mid - 1)
    return InputRule(first, step, dims=dims, maximum=first + lo * step)
