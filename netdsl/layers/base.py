"""The layer contract and its argument kinds: one definition feeds the schema, the checks and the backends."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from netdsl.errors import ShapeError

if TYPE_CHECKING:
    from torch import nn

Shape = tuple[int, ...]
"""A per-sample shape; the batch dimension is symbolic and not stored."""

Tensor = tuple[str, tuple[int, ...]]
"""A parameter or buffer: its path relative to the layer, and its shape."""

MAX_SIZE = 1 << 24  # sizes above this are certainly a typo
MAX_RANK = 8  # per-sample dims a layout option (permute, reshape, ...) can name


@dataclass(frozen=True)
class ArgKind:
    """How an argument is written in a spec: its JSON Schema and its check after expressions are evaluated."""

    name: str
    schema: dict[str, Any]
    check: Callable[[Any], Any]  # returns the normalized value or raises ValueError("what is allowed")
    words: tuple[str, ...] | None = ()  # strings taken literally; any other string is an expression (None: all literal)
    port: int | None = None  # a reference to another layer: which of its outputs it reads (None: not a reference)
    source: bool = False  # a reference that also reads the named layer's own input (max_unpool: the size to restore)


def _int_check(lo: int, hi: int = MAX_SIZE) -> Callable[[Any], int]:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            else:
                raise ValueError(f"an integer {_range(lo, hi)}")
        if not lo <= v <= hi:
            raise ValueError(f"an integer {_range(lo, hi)}")
        return v

    return check


def _range(lo: int, hi: int) -> str:
    return f">= {lo}" if hi >= MAX_SIZE else f"from {lo} to {hi}"


def _pair_check(lo: int) -> Callable[[Any], tuple[int, ...]]:
    one = _int_check(lo)

    def check(v: Any) -> tuple[int, ...]:
        if isinstance(v, (list, tuple)):
            try:
                return tuple(one(x) for x in v)
            except ValueError:
                raise ValueError(f"an integer >= {lo} or a list of them") from None
        try:
            return (one(v),)
        except ValueError:
            raise ValueError(f"an integer >= {lo} or a list of them") from None

    return check


def _float_check(lo: float, hi: float, lo_open: bool = False) -> Callable[[Any], float]:
    def check(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"a number in {'(' if lo_open else '['}{lo}, {hi}]")
        if v < lo or v > hi or (lo_open and v == lo):
            raise ValueError(f"a number in {'(' if lo_open else '['}{lo}, {hi}]")
        return float(v)

    return check


def _bool_check(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError("true or false")
    return v


def _padding_check(v: Any) -> str | tuple[int, ...]:
    if v in ("same", "valid"):
        return str(v)
    try:
        return _pair_check(0)(v)
    except ValueError:
        raise ValueError("an integer >= 0, a list of them, 'same' or 'valid'") from None


_INT_OR_EXPR = {"type": "string", "description": "an expression, e.g. 'c * 4'"}


def _num(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, _INT_OR_EXPR]}


def int_kind(lo: int = 1, hi: int = MAX_SIZE) -> ArgKind:
    return ArgKind(f"int>={lo}", _num({"type": "integer", "minimum": lo, "maximum": hi}), _int_check(lo, hi))


def tuple_kind(lo: int = 1) -> ArgKind:
    item = {"type": "integer", "minimum": lo, "maximum": MAX_SIZE}
    schema = {"anyOf": [item, {"type": "array", "items": {"anyOf": [item, _INT_OR_EXPR]}, "minItems": 1, "maxItems": 3}, _INT_OR_EXPR]}
    return ArgKind(f"size>={lo}", schema, _pair_check(lo))


def float_kind(lo: float, hi: float, lo_open: bool = False) -> ArgKind:
    bound = {"exclusiveMinimum": lo} if lo_open else {"minimum": lo}
    return ArgKind("number", _num({"type": "number", **bound, "maximum": hi}), _float_check(lo, hi, lo_open))


def dim_kind() -> ArgKind:
    """A per-sample dim, counted from 0 (the batch left out), or from the end when negative."""
    return int_kind(-MAX_RANK, MAX_RANK - 1)


def int_list_kind(lo: int, hi: int, min_items: int, minus_one: bool = False) -> ArgKind:
    """A list of integers in [lo, hi] (and -1 if `minus_one`), at least `min_items` of them; checked into a tuple."""
    item: dict[str, Any] = {"type": "integer", "minimum": lo, "maximum": hi}
    if minus_one:
        item = {"anyOf": [{"const": -1}, item]}
    schema = {"anyOf": [{"type": "array", "items": {"anyOf": [item, _INT_OR_EXPR]}, "minItems": min_items, "maxItems": MAX_RANK}, _INT_OR_EXPR]}
    allowed = f"a list of {min_items} to {MAX_RANK} integers from {lo} to {hi}" + (" or -1" if minus_one else "")

    def check(v: Any) -> tuple[int, ...]:
        if not isinstance(v, (list, tuple)) or not min_items <= len(v) <= MAX_RANK:
            raise ValueError(allowed)
        out = []
        for x in v:
            if isinstance(x, float) and x.is_integer():
                x = int(x)
            if isinstance(x, bool) or not isinstance(x, int) or not (lo <= x <= hi or (minus_one and x == -1)):
                raise ValueError(allowed)
            out.append(x)
        return tuple(out)

    return ArgKind("list", schema, check)


DIM = dim_kind()
BOOL = ArgKind("bool", {"anyOf": [{"type": "boolean"}, _INT_OR_EXPR]}, _bool_check)
PADDING = ArgKind(
    "padding",
    {
        "anyOf": [
            {"enum": ["same", "valid"]},
            {"type": "integer", "minimum": 0, "maximum": MAX_SIZE},
            {"type": "array", "items": {"anyOf": [{"type": "integer", "minimum": 0}, _INT_OR_EXPR]}, "minItems": 1, "maxItems": 3},
            _INT_OR_EXPR,
        ]
    },
    _padding_check,
    words=("same", "valid"),
)


def enum_kind(*choices: str) -> ArgKind:
    def check(v: Any) -> str:
        if v not in choices:
            raise ValueError("one of " + ", ".join(repr(c) for c in choices))
        return str(v)

    name_in_scope = {"type": "string", "pattern": "^(=.*|[A-Za-z_][A-Za-z0-9_]*)$", "description": "a parameter or variable in scope, or =expression"}
    return ArgKind("enum", {"anyOf": [{"enum": list(choices)}, name_in_scope]}, check, words=None)


def _ref_check(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, (str, int)) or v == "" or (isinstance(v, int) and v < 0):
        raise ValueError("a layer name, as in 'from'")
    return str(v)


def ref_kind(port: int = 0, what: str = "a layer", source: bool = False) -> ArgKind:
    """A reference to another layer by name, resolved exactly as `from:` names are (scopes, `input`, members, /paths).

    The named layer's output (its output number `port`) becomes an extra input of the node, after the normal
    one(s): the layer's `infer` receives its shape and its torch module receives the tensor. `what` says which
    layers may be named when `port` > 0 (only layers with that many outputs can be). With `source`, the named
    layer's own first input follows as one more input (max_unpool restores the size its pool's input had).
    """
    schema = {"anyOf": [{"type": "string", "minLength": 1}, {"type": "integer", "minimum": 0}], "title": "a layer name"}
    return ArgKind(what, schema, _ref_check, words=None, port=port, source=source)


class Ref(NamedTuple):
    """A reference argument: which argument, the layer it names (as written while building; in the IR's layers the
    resolved path, as in Node.inputs), the output it reads, and whether the named layer's input follows it."""

    arg: str
    name: str
    port: int
    source: bool

    @property
    def width(self) -> int:
        """How many inputs it adds to the node."""
        return 2 if self.source else 1


def arg(kind: ArgKind, default: Any = dataclasses.MISSING, *, doc: str, alias: tuple[str, ...] = ()) -> Any:
    """Declare a layer argument: its kind, default (absent = required), doc and short aliases."""
    meta = {"kind": kind, "doc": doc, "alias": alias}
    if isinstance(default, (list, dict)):
        raise TypeError("mutable default")
    return field(default=default, metadata=meta)


class Saved(NamedTuple):
    """A tensor autograd keeps for the backward pass while the layer trains (`summarize --train`): the layer's input
    number `of` (an int), its output ("out"; "out1": its second output), or a tensor of its own ("own": max-pool
    indices, BatchNorm's batch statistics) with its `shape` (per sample; `batched` False: once per batch); `itemsize`
    is its bytes per element (int64 indices: 8)."""

    of: int | str
    shape: Shape = ()
    itemsize: int = 4
    batched: bool = True


@dataclass(frozen=True)
class ArgSpec:
    """An argument as the schema and the checker see it."""

    name: str
    kind: ArgKind
    doc: str
    alias: tuple[str, ...]
    required: bool
    default: Any


class Layer:
    """Base of every layer type: its arguments are dataclass fields, its rules are methods.

    Subclasses are frozen dataclasses registered with @register. Shapes are per sample.
    """

    type_name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    doc: ClassVar[str] = ""
    primary: ClassVar[str | None] = None  # the argument a bare value sets: `- linear: 10`
    arity: ClassVar[int] = 1  # number of inputs; 0 means "two or more"
    has_weights: ClassVar[bool] = False  # accepts `init`
    holds_tensor: ClassVar[bool] = False  # its one parameter sits at its own path (ViT's class_token): netdsl/layers/tensors.py
    is_view: ClassVar[bool] = False  # its output is its input's elements, reshaped (flatten): autograd keeps them once
    examples: ClassVar[tuple[dict[str, Any], ...]] = ()
    example_input: ClassVar[Shape] = (4, 16, 16)
    example_before: ClassVar[tuple[str, ...]] = ()  # YAML layer items the examples need before them (a layer they name)

    @classmethod
    def ref_args(cls) -> list[ArgSpec]:
        """The arguments that name another layer (ref_kind), in declaration order."""
        return list(_ref_args_of(cls))

    def refs(self) -> list[Ref]:
        """Each reference argument given, in declaration order: the node's extra inputs, after its data input(s)."""
        return [Ref(s.name, getattr(self, s.name), s.kind.port or 0, s.kind.source) for s in self.ref_args() if getattr(self, s.name) is not None]

    def resolved(self) -> Layer:
        """The layer the IR holds for this one (`activation: {fn: relu}` becomes relu); itself for most types."""
        return self

    def check_args(self) -> None:
        """Raise ValueError("what is wrong") for arguments that contradict each other (the builder locates it)."""

    def port_shapes(self, inputs: tuple[Shape, ...], out: Shape) -> tuple[Shape, ...]:
        """The shape of each tensor the torch module returns; more than one makes it return a tuple (port 0 = `out`,
        what ordinary consumers read; a reference argument with `port` reads another)."""
        return (out,)

    @classmethod
    def args(cls) -> list[ArgSpec]:
        """Its arguments, in declaration order (computed once per type: the builder asks for every layer)."""
        return list(_args_of(cls))

    def infer(self, inputs: tuple[Shape, ...]) -> Shape:
        """Output shape from input shapes (raises ShapeError)."""
        return self.output_shape(inputs[0])

    def output_shape(self, x: Shape) -> Shape:
        return x

    def params(self, inputs: tuple[Shape, ...]) -> list[Tensor]:
        """Trainable tensors as (path, shape), named as the PyTorch module names them."""
        return []

    def buffers(self, inputs: tuple[Shape, ...]) -> list[Tensor]:
        """Non-trainable state as (path, shape), e.g. BatchNorm running statistics."""
        return []

    def macs(self, inputs: tuple[Shape, ...], out: Shape) -> int:
        """Multiply-accumulates per sample, counted as torchvision counts them (conv and linear only)."""
        return 0

    def saved(self, inputs: tuple[Shape, ...], out: Shape) -> list[Saved]:
        """The tensors autograd keeps for backward while training (float32), as torch's derivative formulas save them.
        By default every input: what conv, linear and most pointwise ops with a learnt or input-dependent gradient keep."""
        return [Saved(i) for i in range(len(inputs))]

    def to_torch(self, inputs: tuple[Shape, ...]) -> nn.Module:
        """The PyTorch module for this layer at these input shapes (imports torch; backends only)."""
        raise NotImplementedError(f"{self.type_name} has no PyTorch builder")

    def describe(self) -> str:
        """Short argument summary for tables, e.g. '64, k=3, s=1, p=1'."""
        parts = []
        for spec in self.args():
            value = getattr(self, spec.name)
            if spec.required:
                parts.append(_fmt(value))
            elif value != spec.default:
                parts.append(f"{spec.alias[0] if spec.alias else spec.name}={_fmt(value)}")
        return ", ".join(parts)


_ARGS: dict[type, tuple[ArgSpec, ...]] = {}
_REF_ARGS: dict[type, tuple[ArgSpec, ...]] = {}


def _args_of(cls: type[Layer]) -> tuple[ArgSpec, ...]:
    if cls not in _ARGS:
        out = []
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            required = f.default is dataclasses.MISSING
            out.append(ArgSpec(f.name, f.metadata["kind"], f.metadata["doc"], f.metadata["alias"], required, None if required else f.default))
        _ARGS[cls] = tuple(out)
    return _ARGS[cls]


def _ref_args_of(cls: type[Layer]) -> tuple[ArgSpec, ...]:
    if cls not in _REF_ARGS:
        _REF_ARGS[cls] = tuple(s for s in _args_of(cls) if s.kind.port is not None)
    return _REF_ARGS[cls]


def _fmt(value: Any) -> str:
    if isinstance(value, tuple):
        return "x".join(str(v) for v in value) if len(set(value)) > 1 else str(value[0])
    return str(value).lower() if isinstance(value, bool) else str(value)


def expect_rank(x: Shape, ranks: tuple[int, ...], what: str) -> None:
    """Raise ShapeError unless the per-sample shape has one of the given ranks."""
    if len(x) not in ranks:
        names = {1: "features", 2: "C x L", 3: "C x H x W"}
        allowed = " or ".join(names.get(r, f"rank {r}") for r in ranks)
        raise ShapeError(f"{what} needs a {allowed} input, got {fmt_shape(x)}")


def axis(d: int, x: Shape, what: str) -> int:
    """A per-sample dim as a non-negative index into x, or ShapeError."""
    if not -len(x) <= d < len(x):
        raise ShapeError(f"{what} {d} is out of range for the input {fmt_shape(x)} (dims 0..{len(x) - 1}, or -{len(x)}..-1 from the end)")
    return d % len(x)


def parse_shape(text: Any) -> Shape | None:
    """'3x224x224', [3, 224, 224] or 784 -> a per-sample shape; None if malformed."""
    if isinstance(text, bool):
        return None
    if isinstance(text, int):
        return (text,) if 1 <= text <= MAX_SIZE else None
    if isinstance(text, str):
        if not re.fullmatch(r"\d+(x\d+){0,2}", text.strip()):
            return None
        dims = tuple(int(d) for d in text.strip().split("x"))
    elif isinstance(text, (list, tuple)) and all(isinstance(d, int) and not isinstance(d, bool) for d in text):
        dims = tuple(text)
    else:
        return None
    return dims if 1 <= len(dims) <= 3 and all(1 <= d <= MAX_SIZE for d in dims) else None


def fmt_shape(x: Shape) -> str:
    return "x".join(str(d) for d in x) if x else "scalar"


def spatial(value: tuple[int, ...], n: int, what: str) -> tuple[int, ...]:
    """Broadcast a 1-element size to n spatial dims; reject a wrong count."""
    if len(value) == 1:
        return value * n
    if len(value) != n:
        raise ShapeError(f"{what} has {len(value)} values but the input has {n} spatial dims")
    return value


def window_out(n: int, k: int, s: int, p: int, d: int = 1, ceil: bool = False) -> int:
    """floor((N - F_eff + 2P)/S) + 1 with F_eff = D(F - 1) + 1 (ceil with ceil_mode, as PyTorch)."""
    eff = d * (k - 1) + 1
    span = n + 2 * p - eff
    if ceil:
        out = -(-span // s) + 1
        if (out - 1) * s >= n + p:  # PyTorch: the last window must start inside the input or left padding
            out -= 1
        return out
    return span // s + 1
