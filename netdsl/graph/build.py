"""Expand a validated spec tree (groups, repeats, blocks, references) into the IR, inferring every shape on the way.

Shapes are inferred as nodes are created because expansion may depend on them (`in_channels` in a block).
Problems are collected as diagnostics; a node whose input shape is unknown (an upstream error) is skipped quietly.
Expansion is budgeted: a repeat count, however computed, obeys the literal bound; the layers visited obey the node
budget (`limits: {nodes: N}`), predicted before a repeat, group or block is expanded; nesting is bounded.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from netdsl.errors import Diagnostic, Loc, ShapeError, did_you_mean
from netdsl.graph.names import PORT_SEPARATOR, name_problem
from netdsl.ir import INPUT, Graph, Group, Node
from netdsl.lang.expr import ExprError, evaluate, interpolate
from netdsl.lang.limits import DEFAULT_NODES, node_budget
from netdsl.lang.params import REQUIRED, Param, declare_all
from netdsl.lang.schema import COMMON, STRUCTURAL
from netdsl.lang.validate import unknown_type_message
from netdsl.lang.yaml_tree import YList, YMap, plain
from netdsl.layers import LAYERS, canonical
from netdsl.layers.base import ArgKind, Layer, Shape, fmt_shape

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_BLOCK_DEPTH = 32
MAX_REPEAT = 100_000  # the repeat schema's literal maximum; a computed count obeys it too
MAX_NESTING = 64  # groups, repeats and block uses inside each other (each costs a few Python frames)


@dataclass(frozen=True)
class BlockDef:
    """A user block: its declared parameters, the names of its inputs, its layer list, and whether the spec itself defines
    it (then it sees the spec's parameters, as a function sees its module's globals; a library's block sees only its own)."""

    name: str
    params: dict[str, Param]
    layers: YList
    loc: Loc
    inputs: tuple[str, ...] = (INPUT,)
    local: bool = True


@dataclass(frozen=True)
class Entry:
    """A layer item about to be built, with the variables in force and a name forced by a repeat."""

    item: Any
    loc: Loc
    env: dict[str, Any]
    forced_name: str | None = None


@dataclass
class Frame:
    """One list being built: its module-path prefix, input, names defined so far, and lexical parent."""

    prefix: str
    input_ref: str | None
    parent: Frame | None
    frozen: bool
    scope: dict[str, str | None] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    locs: dict[str, Loc] = field(default_factory=dict)
    later: dict[str, Loc] = field(default_factory=dict)
    skipped: set[str] = field(default_factory=set)


class NodeBudgetExceeded(Exception):
    """Expansion stops: the layers it would visit exceed the node budget (carries the located diagnostic)."""

    def __init__(self, diagnostic: Diagnostic):
        super().__init__(str(diagnostic))
        self.diagnostic = diagnostic


class Builder:
    """Turns layer lists into nodes. Use build_graph()."""

    def __init__(self, file: str, blocks: dict[str, BlockDef], variables: dict[str, Any], node_budget: int = DEFAULT_NODES):
        self.file = file
        self.blocks = blocks
        self.variables = variables
        self.node_budget = node_budget
        self.visits = 0  # layers visited so far, those a `when` switches off included: what the node budget counts
        self.depth = 0  # items being built inside each other
        self.too_deep = False
        self.least_known: dict[int, tuple[Any, int]] = {}  # id(item) -> (item, least_visits(item)), the item kept alive
        self.least_blocks: dict[str, int] = {}
        self.least_open: set[str] = set()  # blocks whose bound is being computed (a block that uses itself counts 1)
        self.nodes: list[Node] = []
        self.shapes: dict[str, Shape] = {}
        self.outputs: dict[str, str | None] = {}  # every named item's full path -> its output ref
        self.port_counts: dict[str, int] = {}  # each node's number of outputs
        self.groups: list[Group] = []
        self.diagnostics: list[Diagnostic] = []
        self.trace: list[str] = []

    # -- diagnostics --------------------------------------------------------------------------
    def error(self, loc: Loc, message: str, kind: str = "") -> None:
        if any(d.loc == loc and d.message == message for d in self.diagnostics):
            return  # the same definition error in every instance of a block: report it once
        self.diagnostics.append(Diagnostic(loc, message, "; ".join(reversed(self.trace)), kind))

    # -- the node budget -------------------------------------------------------------------------
    def over_budget(self, loc: Loc, total: int, what: str, exact: bool = False) -> NodeBudgetExceeded:
        figure = f"{total:,}" if exact else f"at least {total:,}"
        message = f"the network reaches {figure} nodes with this {what}, beyond the budget of {self.node_budget:,} nodes (raise it with limits: {{nodes: N}})"
        return NodeBudgetExceeded(Diagnostic(loc, message, "; ".join(reversed(self.trace))))

    def visit(self, loc: Loc) -> None:
        """Count one layer visited (built, or switched off by its `when`); stop expanding past the node budget."""
        self.visits += 1
        if self.visits > self.node_budget:
            raise self.over_budget(loc, self.visits, "layer", exact=True)

    def least_visits(self, item: Any, depth: int = 0) -> int:
        """A lower bound on the layers expanding `item` visits (in a spec without other errors): a repeat with an expression
        for n counts once, an item with `when` once. Cheap (remembered per item and per block), so the node budget can be
        checked before the work."""
        known = self.least_known.get(id(item))
        if known is not None and known[0] is item:
            return known[1]
        word, args = _split(item) if isinstance(item, (str, YMap)) and item else ("", None)
        opts = args if isinstance(args, YMap) else YMap()
        count = 1  # a layer, an item under `when` (skipped, it is one visit), or past the depth this looks into
        if depth >= MAX_NESTING or "when" in opts:
            pass
        elif word == "group":
            count = self.least_list(opts.get("layers"), depth + 1)
        elif word == "repeat":
            n = opts.get("n")
            count = (n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1) * self.least_list(opts.get("layers"), depth + 1)
        elif word in self.blocks and word not in self.least_open:
            if word not in self.least_blocks:
                self.least_open.add(word)
                try:
                    self.least_blocks[word] = self.least_list(self.blocks[word].layers, depth + 1)
                finally:
                    self.least_open.discard(word)
            count = self.least_blocks[word]
        self.least_known[id(item)] = (item, count)
        return count

    def least_list(self, items: Any, depth: int) -> int:
        return sum(self.least_visits(item, depth) for item in items) if isinstance(items, list) else 0

    def check_budget(self, entries: list[Entry]) -> None:
        """Refuse a list whose expansion would pass the node budget, at the item where it would, before building it."""
        total = self.visits
        for entry in entries:
            total += self.least_visits(entry.item)
            if total > self.node_budget:
                raise self.over_budget(entry.loc, total, self.what(entry.item))

    def what(self, item: Any) -> str:
        """What an item is, for a budget message: this repeat, group, use of block 'x' or layer."""
        word = _split(item)[0] if isinstance(item, (str, YMap)) and item else ""
        if word in STRUCTURAL:
            return word
        return f"use of block '{word}'" if word in self.blocks else "layer"

    # -- lists ----------------------------------------------------------------------------------
    def entries(self, items: YList, env: dict[str, Any]) -> list[Entry]:
        return [Entry(item, loc, env) for item, loc in zip(items, items.item_locs)]

    def build_list(self, entries: list[Entry], frame: Frame, cur: str | None, index: int = 0) -> tuple[str | None, int]:
        """Build entries in order; returns the last output ref and the next auto-name index."""
        self.check_budget(entries)
        for entry in entries:
            name = _literal_name(entry.item)
            if name and name not in frame.scope:
                frame.later.setdefault(name, entry.loc)
        for entry in entries:
            cur, index = self.build_item(entry, frame, cur, index)
        return cur, index

    def build_item(self, entry: Entry, frame: Frame, cur: str | None, index: int) -> tuple[str | None, int]:
        if self.depth >= MAX_NESTING:
            if not self.too_deep:  # once: every item at the limit would say the same
                self.error(entry.loc, f"layers nest more than {MAX_NESTING} levels deep here (groups, repeats and block uses inside each other)")
            self.too_deep = True
            return None, index
        self.depth += 1
        try:
            return self.build_item_at_depth(entry, frame, cur, index)
        finally:
            self.depth -= 1

    def build_item_at_depth(self, entry: Entry, frame: Frame, cur: str | None, index: int) -> tuple[str | None, int]:
        word, args = _split(entry.item)
        opts = args if isinstance(args, YMap) else YMap()
        env, loc = entry.env, entry.loc
        if "when" in opts and not self.value(opts["when"], env, _vloc(opts, "when", loc), None):
            explicit = self.name_of(opts, env, loc)
            seen = len(self.diagnostics)
            srcs = self.sources(opts, frame, cur, env, loc, word)  # a skipped item's `from` may name what is switched off too
            del self.diagnostics[seen:]
            if explicit and explicit not in frame.scope and srcs and srcs[0] is not None:
                frame.scope[explicit] = srcs[0]  # a skipped layer stands for its input: `from: downsample` still works
                frame.skipped.add(explicit)
            self.visit(loc)
            return cur, index
        srcs = self.sources(opts, frame, cur, env, loc, word)
        if word == "repeat" and "name" not in opts:
            return self.build_repeat(opts, loc, env, frame, srcs, index, splice=True)
        name = entry.forced_name or self.name_of(opts, env, loc) or str(index)
        index += 1
        if name in frame.scope and name not in frame.skipped:  # an active item may take a skipped alternative's name
            first = frame.locs.get(name)
            self.error(loc, f"duplicate name '{name}'" + (f" (first at line {first.line})" if first else ""))
        path = frame.prefix + name
        frozen = opts.get("frozen", frame.frozen)
        if srcs is None:
            out: str | None = None
        elif word == "group":
            out = self.build_group(opts["layers"], path, loc, env, frame, srcs, frozen, "group")
        elif word == "repeat":
            sub = Frame(path + ".", self.single(srcs, word, name, loc), frame, frozen)
            self.groups.append(Group(path, "repeat", loc))
            out, _ = self.build_repeat(opts, loc, env, sub, [sub.input_ref], 0, splice=False)
        elif word in self.blocks:
            out = self.instantiate(self.blocks[word], opts, loc, env, frame, srcs, path, frozen)
        elif canonical(word):
            out = self.add_layer(word, args, loc, env, srcs, path, frozen, frame)
        else:
            self.error(loc, unknown_type_message(word, self.blocks))
            out = None
        frame.scope[name], frame.paths[name], frame.locs[name] = out, path, loc
        frame.skipped.discard(name)
        frame.later.pop(name, None)
        self.outputs[path] = out
        return out, index

    def build_group(
        self, items: YList, path: str, loc: Loc, env: dict[str, Any], frame: Frame | None, srcs: list[str | None], frozen: bool, kind: str
    ) -> str | None:
        self.groups.append(Group(path, kind, loc))
        src = self.single(srcs, kind, path.rsplit(".", 1)[-1], loc)
        sub = Frame(path + ".", src, frame, frozen)
        return self.build_list(self.entries(items, env), sub, src)[0]

    def build_repeat(
        self, opts: YMap, loc: Loc, env: dict[str, Any], frame: Frame, srcs: list[str | None] | None, index: int, splice: bool
    ) -> tuple[str | None, int]:
        n = self.value(opts["n"], env, _vloc(opts, "n", loc), None)
        if n is _FAILED:
            return None, index
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_REPEAT:
            self.error(_vloc(opts, "n", loc), f"repeat: 'n' must be an integer >= 1 and <= {MAX_REPEAT}; got {n!r}")
            return None, index
        body: YList = opts["layers"]
        total = self.visits + n * self.least_list(body, 0)
        if total > self.node_budget:
            raise self.over_budget(loc, total, "repeat")
        var = opts.get("var", "i")
        cur = self.single(srcs, "repeat", "", loc) if srcs is not None else None
        entries: list[Entry] = []
        for i in range(n):
            scope = {**env, var: i, "first": i == 0, "last": i == n - 1}
            if splice and "each" not in opts:  # an unnamed repeat splices its items into the enclosing list
                entries.extend(Entry(item, item_loc, scope) for item, item_loc in zip(body, body.item_locs))
                continue
            if "each" in opts:
                it_name = self.name_text(opts["each"], scope, _vloc(opts, "each", loc))
            else:
                it_name = str(i)
            if len(body) == 1 and not _has_name(body[0]):
                entries.append(Entry(body[0], body.item_locs[0], scope, it_name))
            else:
                entries.append(Entry(_group_of(body, loc), loc, scope, it_name))
        for entry in entries:
            cur, index = self.build_item(entry, frame, cur, index)
        return cur, index

    # -- blocks ---------------------------------------------------------------------------------
    def instantiate(
        self, block: BlockDef, opts: YMap, loc: Loc, env: dict[str, Any], frame: Frame, srcs: list[str | None], path: str, frozen: bool
    ) -> str | None:
        if len(self.trace) >= MAX_BLOCK_DEPTH:
            self.error(loc, f"block '{block.name}' nests more than {MAX_BLOCK_DEPTH} deep (does it use itself?)")
            return None
        where = f"defined at {block.loc}"
        values: dict[str, Any] = {}
        ok = True
        for key, raw in opts.items():
            if key in COMMON:
                continue
            if key not in block.params:
                options = ", ".join(block.params) or "none"
                self.error(
                    opts.key_locs[key], f"block '{block.name}' has no parameter '{key}'{did_you_mean(key, block.params)} (parameters: {options}; {where})"
                )
                ok = False
                continue
            values[key] = self.param_value(raw, env, _vloc(opts, key, loc), block.params[key], f"block '{block.name}': '{key}': ")
        for key, param in block.params.items():
            if key not in values and key not in opts:
                if param.default is REQUIRED:
                    self.error(loc, f"block '{block.name}' needs parameter '{key}' ({where})")
                    ok = False
                else:
                    values[key] = param.default
        inputs = self.block_inputs(block, srcs, path.rsplit(".", 1)[-1], loc)
        if not ok or inputs is None or any(v is _FAILED for v in values.values()):
            return None
        in_shapes = tuple(self.shapes[src] for src in inputs)
        scope = {**(self.variables if block.local else {}), **values, "in_channels": in_shapes[0][0], "in_shape": in_shapes[0], "in_shapes": in_shapes}
        self.groups.append(Group(path, block.name, loc, tuple(values.items())))
        self.trace.append(f"in block '{block.name}' used at {loc}")
        try:
            sub = Frame(path + ".", inputs[0], None, frozen)
            if block.inputs != (INPUT,):
                for name, src in zip(block.inputs, inputs):
                    sub.scope[name], sub.locs[name] = src, block.loc
            return self.build_list(self.entries(block.layers, scope), sub, inputs[0])[0]
        finally:
            self.trace.pop()

    def block_inputs(self, block: BlockDef, srcs: list[str | None], name: str, loc: Loc) -> list[str] | None:
        """The refs a block's inputs take at a use: one for a plain block, one per declared input for a multi-input one."""
        if block.inputs == (INPUT,):
            src = self.single(srcs, block.name, name, loc)
            return None if src is None else [src]
        if any(s is None for s in srcs):
            return None
        if len(srcs) != len(block.inputs):
            given = f"from: [{', '.join(str(s) for s in srcs)}]" if len(srcs) > 1 else "one"
            self.error(loc, f"block '{block.name}' takes {len(block.inputs)} inputs ({', '.join(block.inputs)}); got {given}")
            return None
        return [str(s) for s in srcs]

    def param_value(self, raw: Any, env: dict[str, Any], loc: Loc, param: Param, context: str) -> Any:
        """A block parameter's value at a use: a name in scope passes its value on, a word must be one of the parameter's
        choices, anything else is an expression; _FAILED after reporting an error."""
        if isinstance(raw, str) and not raw.startswith("=") and param.choices is not None and raw in param.choices:
            if raw in env:
                self.error(loc, f"{context}'{raw}' is both one of its choices and a name in scope; write ={raw} to pass the name's value on")
                return _FAILED
            return raw
        if isinstance(raw, str) and _WORD.fullmatch(raw) and raw not in env and not raw.startswith("=") and param.choices is not None:
            self.error(loc, f"{context}{param.check(raw)}")
            return _FAILED
        value = self.value(raw, env, loc, None, context=context)
        if value is not _FAILED and param.check(value):
            self.error(loc, f"{context}{param.check(value)}")
            return _FAILED
        return value

    # -- layers ---------------------------------------------------------------------------------
    def add_layer(self, word: str, args: Any, loc: Loc, env: dict[str, Any], srcs: list[str | None], path: str, frozen: bool, frame: Frame) -> str | None:
        self.visit(loc)
        cls = LAYERS[canonical(word) or word]
        label = f"{word} '{path}'"
        layer = self.make_layer(cls, word, args, loc, env, label)
        if layer is None or any(s is None for s in srcs):
            return None
        if cls.arity == 1 and len(srcs) != 1:
            self.error(loc, f"{label}: takes one input; got from: [{', '.join(str(s) for s in srcs)}]")
            return None
        if cls.arity == 0 and len(srcs) < 2:
            self.error(loc, f"{label}: needs two or more inputs, e.g. from: [input, {path.rsplit('.', 1)[-1]}_branch]")
            return None
        pairs = [_unport(s) for s in srcs if s is not None]
        data = tuple(name for name, _ in pairs)
        written = {ref.arg: str(ref.name) for ref in layer.refs()}
        extra = self.ref_inputs(layer, args, loc, env, frame, label)
        if extra is None:
            return None
        resolved = {ref.arg: ref_name for ref, (ref_name, _, _) in zip(layer.refs(), (e for e in extra if not e[2]))}
        if resolved:
            layer = dataclasses.replace(cast(Any, layer), **resolved)  # the IR's layer names what it reads by path, as Node.inputs does
        refs = data + tuple(ref for ref, _, _ in extra)
        ports = tuple(port for _, port in pairs) + tuple(port for _, port, _ in extra)
        in_shapes = tuple(self.shapes[_key(s, p)] for s, p in zip(refs, ports))
        try:
            shape = layer.infer(in_shapes)
        except ShapeError as exc:
            names = {f"in{i}": r for i, r in enumerate(data)} if cls.arity == 0 else {}
            names.update(written)
            message = str(exc)
            for key, name in names.items():
                message = message.replace("{" + key + "}", f"'{name}'")
            got = ", ".join(fmt_shape(s) for s in in_shapes[: len(data)])
            self.error(loc, f"{label}: {message}" + ("" if cls.arity == 0 or got in message or "input" in message else f" (input {got})"), "shape")
            return None
        init = plain(args.get("init")) if isinstance(args, YMap) else None
        self.nodes.append(Node(path, layer.type_name, layer, refs, in_shapes, shape, loc, bool(frozen), init, ports if any(ports) else ()))
        self.shapes[path] = shape
        port_shapes = layer.port_shapes(in_shapes, shape)
        self.port_counts[path] = len(port_shapes)
        for port, port_shape in enumerate(port_shapes[1:], 1):
            self.shapes[_key(path, port)] = port_shape
        return path

    def ref_inputs(self, layer: Layer, args: Any, loc: Loc, env: dict[str, Any], frame: Frame, label: str) -> list[tuple[str, int, bool]] | None:
        """The nodes a layer's reference arguments add as inputs: (node, output read, whether it is a named layer's source
        input that follows it); None after an error."""
        out: list[tuple[str, int, bool]] = []
        for ref in layer.refs():
            key = next((k for k in (args if isinstance(args, YMap) else ()) if k == ref.arg or k in _aliases(layer, ref.arg)), ref.arg)
            where = _vloc(args, key, loc)
            text = self.ref_text(ref.name, env, where, frame)
            if text is None:
                return None
            resolved = self.resolve(text, frame, where, key)
            if resolved is _UNRESOLVED or resolved is None:
                return None
            name, port = _unport(str(resolved))
            node = next((n for n in reversed(self.nodes) if n.name == name), None)
            if ref.port and (port or _key(name, ref.port) not in self.shapes):
                kind = next(s.kind for s in layer.ref_args() if s.name == ref.arg)
                found = f"a {node.op}" if node is not None else "the input"
                self.error(where, f"{label}: '{key}' must name {kind.name}; '{ref.name}' is {'an output of ' if port else ''}{found}")
                return None
            out.append((name, ref.port or port, False))
            if ref.source:
                if node is None:
                    self.error(where, f"{label}: '{key}' must name a layer, not the input")
                    return None
                out.append((node.inputs[0], node.port(0), True))
        return out

    def make_layer(self, cls: type[Layer], word: str, args: Any, loc: Loc, env: dict[str, Any], label: str) -> Layer | None:
        specs = {s.name: s for s in cls.args()}
        alias_of = {a: s.name for s in specs.values() for a in s.alias}
        values: dict[str, Any] = {}
        raw_items: list[tuple[str, Any]] = list(args.items()) if isinstance(args, YMap) else []
        if cls.primary and args is not None and not isinstance(args, YMap):
            raw_items = [(cls.primary, args)]
        ok = True
        for key, raw in raw_items:
            if key in COMMON or key == "init":
                continue
            name = alias_of.get(key, key)
            vloc = _vloc(args, key, loc) if isinstance(args, YMap) else loc
            if name in values:
                self.error(vloc, f"{label}: '{key}' repeats '{name}'; give it once")
                ok = False
                continue
            spec = specs[name]
            value = self.value(raw, env, vloc, spec.kind, context=f"{label}: '{key}': ")
            if value is _FAILED:
                ok = False
                continue
            try:
                values[name] = spec.kind.check(value)
            except ValueError as exc:
                hint = did_you_mean(value, _literals(spec.kind)) if isinstance(value, str) else ""
                self.error(vloc, f"{label}: '{key}' must be {exc}; got {value!r}{hint}")
                ok = False
        for spec in specs.values():
            if spec.name not in values and not spec.required and spec.default is not None:
                values[spec.name] = spec.kind.check(spec.default)  # normalize defaults as given values are
        missing = [s.name for s in specs.values() if s.required and s.name not in values]
        if ok and missing:
            self.error(loc, f"{label}: missing required option '{missing[0]}'")
        if not ok or missing:
            return None
        layer = cls(**values)
        try:
            layer.check_args()
            layer = layer.resolved()
        except ValueError as exc:
            self.error(loc, f"{label}: {exc}")
            return None
        return layer

    # -- values and names -----------------------------------------------------------------------
    def value(self, raw: Any, env: dict[str, Any], loc: Loc, kind: ArgKind | None, context: str = "") -> Any:
        """A spec value with its expressions evaluated; _FAILED after reporting an error.

        A word that names a parameter or variable in scope stands for its value (`act: act` passes `act` on); a word the
        option takes literally (`same`, an enum's choice) is itself, and one that is both is an error; `=expr` is always
        an expression. A reference to a layer is left for `resolve`.
        """
        if isinstance(raw, list):
            items = [self.value(x, env, loc, kind, context=context) for x in raw]
            return _FAILED if _FAILED in items else items
        if not isinstance(raw, str):
            return plain(raw)
        words = kind.words if kind else ()
        if raw.startswith("="):
            text = raw[1:]
        elif kind is not None and kind.port is not None:
            return raw
        elif _WORD.fullmatch(raw) and raw in env:
            if raw in _literals(kind):
                self.error(loc, f"{context}'{raw}' is both a value this option takes and a name in scope; write ={raw} to pass the name's value on")
                return _FAILED
            return env[raw]
        elif words is None or raw in words:
            return raw
        else:
            text = raw
        try:
            return evaluate(text, env)
        except ExprError as exc:
            self.error(loc, f"{context}{exc}")
            return _FAILED

    def name_text(self, raw: Any, env: dict[str, Any], loc: Loc) -> str:
        try:
            text = interpolate(str(raw), env)
        except ExprError as exc:
            self.error(loc, str(exc))
            return "?"
        why = name_problem(text)
        if why:
            self.error(loc, f"bad name '{text}': {why}")
        return text

    def name_of(self, opts: YMap, env: dict[str, Any], loc: Loc) -> str | None:
        return self.name_text(opts["name"], env, _vloc(opts, "name", loc)) if "name" in opts else None

    def sources(self, opts: YMap, frame: Frame, cur: str | None, env: dict[str, Any], loc: Loc, word: str) -> list[str | None] | None:
        """The refs an item reads: its `from` names resolved, or the previous output. None if unresolvable."""
        if "from" not in opts:
            return [cur]
        raw = opts["from"]
        where = _vloc(opts, "from", loc)
        if raw == [] or raw is None:  # a block use's options escape the schema's check of `from`
            self.error(where, "'from' names no layer; name one or more earlier layers, or leave it out to read the previous one")
            return None
        names: list[str] = []
        for r in raw if isinstance(raw, list) else [raw]:
            value = env.get(r) if isinstance(r, str) and _WORD.fullmatch(r) else None
            if isinstance(value, list) and all(isinstance(v, str) for v in value):  # a parameter naming several inputs
                if r in _visible(frame):
                    self.error(where, f"'{r}' names both a layer and a parameter in scope; rename one")
                    return None
                names.extend(value)
            else:
                names.append(str(r))  # `from: 0` names an unnamed layer
        out: list[str | None] = []
        for ref in names:
            text = self.ref_text(ref, env, where, frame)
            if text is None:
                return None
            resolved = self.resolve(text, frame, where)
            if resolved is _UNRESOLVED:
                return None
            out.append(resolved)  # type: ignore[arg-type]
        return out

    def ref_text(self, raw: str, env: dict[str, Any], loc: Loc, frame: Frame | None = None) -> str | None:
        """A layer name as written, with a parameter naming a layer replaced by its value and {expr} interpolated;
        None after an error."""
        value = env.get(raw) if _WORD.fullmatch(raw) else None
        if isinstance(value, str):  # `from: src` with a block parameter src: x
            if frame is not None and raw in _visible(frame):
                self.error(loc, f"'{raw}' names both a layer and a parameter in scope; rename one")
                return None
            return value
        try:
            return interpolate(raw, env)
        except ExprError as exc:
            self.error(loc, str(exc))
            return None

    def resolve(self, ref: str, frame: Frame, loc: Loc, key: str = "from") -> str | object | None:
        """The node (or `input`) a name in `from` (or in another reference, `key`) stands for; _UNRESOLVED after an error."""
        head, _, rest = ref.partition(".")
        if ref.startswith("/"):  # an absolute module path, e.g. `from: /layer1.0.bn2` (what `expand` writes)
            if ref == "/" + INPUT:
                return INPUT
            if ref[1:] in self.outputs:
                return self.outputs[ref[1:]]
            path, _, port = ref[1:].rpartition(".")
            if port.isdigit() and self.outputs.get(path) and 0 < int(port) < self.port_counts.get(str(self.outputs[path]), 1):
                return _key(str(self.outputs[path]), int(port))  # `/s.1`: output 1 of the layer at path s
            self.error(loc, f"no earlier layer has the module path '{ref[1:]}'")
            return _UNRESOLVED
        f: Frame | None = frame
        while f is not None:
            if head == INPUT and not rest:
                return f.input_ref
            if head in f.scope:
                if not rest:
                    return f.scope[head]
                full = f"{f.paths.get(head, head)}.{rest}"
                if full in self.outputs:
                    return self.outputs[full]
                member, _, port = ref.rpartition(".")
                target = f.scope[head] if member == head else self.outputs.get(full.rpartition(".")[0])
                count = self.port_counts.get(target, 1) if target is not None else 1
                if count > 1 and port.isdigit():  # `from: split.1`: output 1 of a layer with several outputs
                    if int(port) < count:
                        return _key(str(target), int(port))
                    self.error(loc, f"'{ref}': '{member}' has {count} outputs, {member}.0 to {member}.{count - 1}")
                    return _UNRESOLVED
                self.error(loc, f"'{ref}': '{head}' has no member '{rest}'")
                return _UNRESOLVED
            if head in f.later:
                later = f.later[head]
                self.error(loc, f"'{ref}' is defined later (line {later.line}); '{key}' must name an earlier layer, so the graph has no cycles")
                return _UNRESOLVED
            f = f.parent
        known = sorted(_visible(frame))
        self.error(loc, f"unknown layer '{ref}' in '{key}'{did_you_mean(ref, known)} (known here: {', '.join(known[-12:])})")
        return _UNRESOLVED

    def top_outputs(self, tree: YMap, root: Frame, env: dict[str, Any]) -> tuple[list[str], tuple[str, ...]]:
        """The nodes a top-level `outputs:` names (resolved as `from` is, at the top level) and the names as written."""
        raw = tree["outputs"]
        items = list(zip(raw, raw.item_locs)) if isinstance(raw, YList) else [(raw, tree.value_locs["outputs"])]
        refs: list[str] = []
        names: list[str] = []
        for item, loc in items:
            name = self.ref_text(str(item), env, loc)
            if name is None:
                continue
            if name in names:
                self.error(loc, f"'{name}' is listed twice in 'outputs'")
                continue
            if name.partition(".")[0] in root.skipped:  # a head switched off by its `when` (GoogLeNet's aux_logits: false) is no output
                if not refs and not names:
                    self.error(loc, f"the main output '{name}' is switched off by its 'when'; list an active layer first")
                continue
            resolved = self.resolve(name, root, loc, "outputs")
            if isinstance(resolved, str) and PORT_SEPARATOR in resolved:
                self.error(loc, f"'outputs' names a layer's main output; '{name}' is a further output of it (add an identity layer reading it)")
            elif isinstance(resolved, str):
                refs.append(resolved)
                names.append(name)
        return refs, tuple(names)

    def single(self, srcs: list[str | None] | None, what: str, name: str, loc: Loc) -> str | None:
        if not srcs:
            return None
        if len(srcs) != 1:
            self.error(loc, f"{what} '{name}' takes one input; use a merge layer (add, concat, mul) to combine several")
            return None
        return srcs[0]


_FAILED = object()
_UNRESOLVED = object()


def _key(name: str, port: int) -> str:
    """The reference to output `port` of node `name` (the name itself for output 0)."""
    return name if port == 0 else f"{name}{PORT_SEPARATOR}{port}"


def _unport(ref: str) -> tuple[str, int]:
    """A reference split into its node and output number."""
    name, sep, port = ref.rpartition(PORT_SEPARATOR)
    return (name, int(port)) if sep else (ref, 0)


_LITERALS: dict[int, tuple[ArgKind, tuple[str, ...]]] = {}


def _literals(kind: ArgKind | None) -> tuple[str, ...]:
    """The words an option takes as themselves (cached by the kind's identity: kinds are made once, with their layer type)."""
    if kind is None:
        return ()
    cached = _LITERALS.get(id(kind))
    if cached is None or cached[0] is not kind:
        enum = next((b["enum"] for b in kind.schema.get("anyOf", ()) if "enum" in b), ())
        cached = _LITERALS[id(kind)] = (kind, tuple(kind.words or ()) + tuple(str(w) for w in enum))
    return cached[1]


def _visible(frame: Frame) -> set[str]:
    names: set[str] = {INPUT}
    f: Frame | None = frame
    while f is not None:
        names |= {n for n, ref in f.scope.items()}
        f = f.parent
    return names


def _aliases(layer: Layer, arg: str) -> tuple[str, ...]:
    return next((s.alias for s in layer.args() if s.name == arg), ())


def _split(item: Any) -> tuple[str, Any]:
    if isinstance(item, str):
        return item, None
    word = next(iter(item))
    return word, item[word]


def _literal_name(item: Any) -> str | None:
    if isinstance(item, YMap) and len(item) == 1:
        args = next(iter(item.values()))
        if isinstance(args, YMap) and isinstance(args.get("name"), str) and "{" not in args["name"]:
            return str(args["name"])
    return None


def _has_name(item: Any) -> bool:
    return isinstance(item, YMap) and len(item) == 1 and isinstance(next(iter(item.values())), YMap) and "name" in next(iter(item.values()))


def _group_of(body: YList, loc: Loc) -> YMap:
    inner = YMap(layers=body)
    inner.loc, inner.key_locs, inner.value_locs = loc, {"layers": loc}, {"layers": body.loc}
    outer = YMap(group=inner)
    outer.loc, outer.key_locs, outer.value_locs = loc, {"group": loc}, {"group": loc}
    return outer


def _vloc(opts: Any, key: str, default: Loc) -> Loc:
    return opts.value_locs.get(key, default) if isinstance(opts, YMap) else default


def build_graph(
    tree: YMap, file: str, input_shape: Shape, variables: dict[str, Any], blocks: dict[str, BlockDef], *, partial: bool = False
) -> tuple[Graph | None, list[Diagnostic]]:
    """Expand the top-level layer list into a Graph; returns it (None if any error) and the diagnostics.

    partial=True: on errors, a Graph of the nodes built so far (the editor shows their shapes), output its last node."""
    builder = Builder(file, blocks, variables, node_budget(tree))
    builder.shapes[INPUT] = input_shape
    layers: YList = tree["layers"]
    root = Frame("", INPUT, None, False)
    try:
        out, _ = builder.build_list(builder.entries(layers, dict(variables)), root, INPUT)
    except NodeBudgetExceeded as exc:  # errors found so far stand; no input size would cure the budget, so none is probed
        return _partial(builder, tree, file, input_shape) if partial else None, [dataclasses.replace(d, kind="") for d in builder.diagnostics] + [
            exc.diagnostic
        ]
    outputs: list[str] = [out] if out is not None else []
    names: tuple[str, ...] = ()
    if "outputs" in tree:  # checked even after an error in the layers: a wrong name there is worth reporting too
        outputs, names = builder.top_outputs(tree, root, dict(variables))
    if builder.diagnostics or not outputs:
        return _partial(builder, tree, file, input_shape) if partial else None, builder.diagnostics
    init = plain(tree.get("init", {}))
    graph = Graph(
        str(tree["name"]), input_shape, tuple(builder.nodes), outputs[0], tuple(builder.groups), file, dict(variables), init, tuple(outputs[1:]), names
    )
    return graph, []


def _partial(builder: Builder, tree: YMap, file: str, input_shape: Shape) -> Graph:
    nodes = tuple(builder.nodes)
    return Graph(str(tree.get("name", "")), input_shape, nodes, nodes[-1].name if nodes else INPUT, tuple(builder.groups), file)


def block_defs(tree: YMap, sources: Iterable[tuple[str, YMap]] = ()) -> tuple[dict[str, BlockDef], list[Diagnostic]]:
    """Collect block definitions from the spec (and imported libraries), refusing clashes with layer types."""
    out: dict[str, BlockDef] = {}
    diags: list[Diagnostic] = []
    libraries = list(sources)
    for i, (_, blocks) in enumerate([*libraries, ("", tree.get("blocks", YMap()))]):
        for name, body in blocks.items():
            loc = blocks.key_locs[name]
            if canonical(name) or name in STRUCTURAL:
                diags.append(Diagnostic(loc, f"block name '{name}' is a built-in layer type; choose another name"))
                continue
            if name in out:
                diags.append(Diagnostic(loc, f"block '{name}' is defined twice (also at {out[name].loc})"))
                continue
            params, problems = declare_all(body.get("params", YMap()), name)
            diags += problems
            inputs = tuple(str(n) for n in body.get("inputs", [INPUT]))
            for at, problem in _input_problems(inputs, params):
                diags.append(Diagnostic(body.get("inputs").item_locs[at] if isinstance(body.get("inputs"), YList) else loc, f"block '{name}': {problem}"))
            out[name] = BlockDef(name, params, body["layers"], loc, inputs, local=i == len(libraries))
    return out, diags


def _input_problems(inputs: tuple[str, ...], params: dict[str, Param]) -> list[tuple[int, str]]:
    out = []
    for at, name in enumerate(inputs):
        why = name_problem(name) if name != INPUT else None
        if why:
            out.append((at, f"bad input name '{name}': {why}"))
        elif name in inputs[:at]:
            out.append((at, f"the input '{name}' is listed twice"))
        elif name in params:
            out.append((at, f"'{name}' is both an input and a parameter"))
    return out
