"""The text format (.net): parse it with lark into the same raw tree the YAML loader builds.

`conv(64, k=3) as c1 from stem` becomes `{conv: {name: c1, from: stem, out: 64, k: 3}}`, a YMap whose positions
point into the .net file, so the schema check, the expansion and every error message after this are shared with YAML.
The grammar is netdsl.lark beside this file; `ToTree` has one method per rule.
"""

from __future__ import annotations

import ast
import re
import warnings
from collections.abc import Iterator, Sequence
from functools import cache
from importlib import resources
from typing import Any, NamedTuple

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from netdsl.errors import Diagnostic, Loc, SpecError, did_you_mean
from netdsl.lang.files import printable
from netdsl.lang.yaml_tree import YList, YMap
from netdsl.layers import LAYERS, canonical

MAX_NESTING = 100  # brackets and bodies; the transformer recurses once per level

Located = tuple[Any, Loc]  # a raw value and where it starts


class Pair(NamedTuple):
    key: str
    key_loc: Loc
    value: Any
    value_loc: Loc


class Positional(NamedTuple):
    value: Any
    loc: Loc


def primary_option(word: str) -> str | None:
    """The option a positional value sets: the layer type's primary option, or repeat's `n`."""
    if word == "repeat":
        return "n"
    name = canonical(word)
    return LAYERS[name].primary if name else None


# ---- the parser ------------------------------------------------------------------------------------------------


class _TooDeep(Exception):
    def __init__(self, tok: Token):
        self.tok = tok


class _Brackets:
    """Post-lexer: newlines inside (...), [...] and a {...} mapping continue the line; refuses absurd nesting.

    A `{` after `=`, `:`, `,` or `[` opens a mapping value; anywhere else it opens a body, whose lines are statements.
    """

    always_accept = ("_NL",)

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        open_: list[str] = []
        depth = 0
        previous = ""
        for tok in stream:
            kind = tok.type
            if kind in ("LPAR", "LSQB") or (kind == "LBRACE" and previous in ("EQUAL", "COLON", "COMMA", "LSQB")):
                open_.append(kind)
            elif kind in ("RPAR", "RSQB", "RBRACE") and open_ and _CLOSER[open_[-1]] == kind:
                open_.pop()
            if kind in ("LPAR", "LSQB", "LBRACE"):
                depth += 1
                if depth > MAX_NESTING:
                    raise _TooDeep(tok)
            elif kind in ("RPAR", "RSQB", "RBRACE"):
                depth = max(0, depth - 1)
            if kind == "_NL" and open_:
                continue
            previous = kind
            yield tok


_CLOSER = {"LPAR": "RPAR", "LSQB": "RSQB", "LBRACE": "RBRACE"}


@cache
def parser() -> Lark:
    """The LALR parser for netdsl.lark, built once per process (lark caches its tables in a temporary file)."""
    grammar = resources.files("netdsl.lang").joinpath("netdsl.lark").read_text(encoding="utf-8")
    return Lark(
        grammar, parser="lalr", lexer="contextual", postlex=_Brackets(), propagate_positions=True, start=["start", "value"], maybe_placeholders=True, cache=True
    )


def parse_net(text: str, file: str = "<spec>") -> Any:
    """Parse .net text into YMap/YList/scalars with positions (None for an empty file), or raise SpecError."""
    return _parse(text, file, "start")


def parse_value(text: str) -> Any:
    """One .net value on its own (`64`, `c * 4`, `[1, 7]`, `"x"`); raises SpecError if it is not exactly one."""
    value, _ = _parse(text, "<value>", "value")
    return value


def _parse(text: str, file: str, start: str) -> Any:
    try:
        tree = parser().parse(text, start=start)
    except UnexpectedInput as exc:
        raise SpecError([syntax_error(exc, text, file)]) from None
    except _TooDeep as exc:
        raise SpecError([Diagnostic(Loc(file, exc.tok.line or 1, exc.tok.column or 1), f"nested more than {MAX_NESTING} deep")]) from None
    builder = ToTree(text, file)
    try:
        out = builder.transform(tree)
    except VisitError as exc:  # an exception inside a transformer method arrives wrapped
        if isinstance(exc.orig_exc, SpecError):
            raise exc.orig_exc from None
        raise
    if builder.diagnostics:
        raise SpecError(builder.diagnostics)
    return out


# ---- syntax errors ---------------------------------------------------------------------------------------------

_TERMINALS = {
    "NAME": "a name",
    "REF": "a layer name",
    "INT": "a number",
    "NUMBER": "a number",
    "STRING": "a quoted string",
    "SHAPE": "a shape like 3x224x224",
    "AMOUNT": "an amount like 5M",
    "PATH": "a .yaml or .net path",
    "BINOP": "an operator",
    "MINUS": "an operator",
    "_NL": "a new line",
    "_ARROW": "'->'",
    "$END": "the end of the file",
}
_VALUE_START = {"NAME", "NUMBER", "STRING", "SHAPE", "AMOUNT", "LSQB", "LBRACE", "LPAR", "MINUS", "PLUS", "NOT"}
_OPERATORS = {"MINUS", "PLUS", "BINOP", "AND", "OR", "IF", "ELSE", "IN", "NOT"}


def syntax_error(exc: UnexpectedInput, text: str, file: str) -> Diagnostic:
    """A lark error as one located line: what was found, and what the grammar expected there."""
    loc = Loc(file, exc.line if exc.line > 0 else 1, exc.column if exc.column > 0 else 1)
    if isinstance(exc, UnexpectedCharacters):
        char = text[exc.pos_in_stream] if exc.pos_in_stream is not None and exc.pos_in_stream < len(text) else ""
        if char in "\"'":
            return Diagnostic(loc, "unterminated string (a string ends on its line with the same quote)")
        return Diagnostic(loc, f"unexpected character {char!r}{_expected(exc.allowed)}")
    if isinstance(exc, UnexpectedToken):
        tok = exc.token
        if tok.type == "$END":
            return Diagnostic(_end_loc(text, file), f"unexpected end of file{_expected(exc.expected)}")
        found = "end of line" if tok.type == "_NL" else repr(str(tok))
        return Diagnostic(loc, f"unexpected {found}{_expected(exc.expected)}")
    if isinstance(exc, UnexpectedEOF):
        return Diagnostic(_end_loc(text, file), f"unexpected end of file{_expected(exc.expected)}")
    return Diagnostic(loc, f"syntax error: {exc}")  # pragma: no cover - lark has no other kind


def _end_loc(text: str, file: str) -> Loc:
    lines = text.rstrip("\n").split("\n")
    return Loc(file, len(lines), len(lines[-1]) + 1)


def _expected(names: Any) -> str:
    names = set(names or ())
    phrases: list[str] = []
    if {"NAME", "NUMBER"} <= names:
        names -= _VALUE_START
        phrases.append("a value")
    if len(names & _OPERATORS) >= 3:
        names -= _OPERATORS
        phrases.append("an operator")
    for name in sorted(names):
        if name in _TERMINALS:
            phrases.append(_TERMINALS[name])
            continue
        try:
            pattern = parser().get_terminal(name).pattern
        except KeyError:
            continue
        phrases.append(repr(pattern.value) if pattern.type == "str" else name.lower())
    phrases = list(dict.fromkeys(phrases))
    if not phrases:
        return ""
    if len(phrases) == 1:
        return f"; expected {phrases[0]}"
    return f"; expected {', '.join(phrases[:-1])} or {phrases[-1]}"


# ---- parse tree -> raw tree ------------------------------------------------------------------------------------

_INT = re.compile(r"[-+]?[0-9]+")
_FLOAT = re.compile(r"[-+]?([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)([eE][-+]?[0-9]+)?")
_STRING = re.compile(r""""([^"\\\n]|\\[^\n])*"|'([^'\\\n]|\\[^\n])*'""")
_CONSTANTS = {"true": True, "false": False, "null": None}


class _Map:
    """Builds a YMap entry by entry; a repeated key is a diagnostic, as in the YAML loader."""

    def __init__(self, loc: Loc, diagnostics: list[Diagnostic]):
        self.map = YMap()
        self.map.loc, self.map.key_locs, self.map.value_locs = loc, {}, {}
        self.diagnostics = diagnostics

    def add(self, key: str, key_loc: Loc, value: Any, value_loc: Loc) -> None:
        if key in self.map:
            first = self.map.key_locs[key]
            self.diagnostics.append(Diagnostic(key_loc, f"duplicate key '{key}' (first at line {first.line})"))
            return
        self.map[key] = value
        self.map.key_locs[key], self.map.value_locs[key] = key_loc, value_loc


def _items(chains: list[Any]) -> list[Located]:
    return [item for chain in chains if chain is not None for item in chain[2]]


def _ylist(items: list[Located], loc: Loc) -> YList:
    out = YList(v for v, _ in items)
    out.loc, out.item_locs = loc, [at for _, at in items]
    return out


@v_args(meta=True)
class ToTree(Transformer[Token, Any]):
    """One method per grammar rule; each returns raw values with their positions."""

    def __init__(self, text: str, file: str):
        super().__init__()
        self.text = text
        self.file = file
        self.diagnostics: list[Diagnostic] = []

    def at(self, tok: Any) -> Loc:
        return Loc(self.file, tok.line, tok.column)

    def error(self, loc: Loc, message: str) -> None:
        self.diagnostics.append(Diagnostic(loc, message))

    # -- the file --------------------------------------------------------------------------------------------------
    def start(self, meta: Any, statements: list[Any]) -> YMap | None:
        if not statements:
            return None
        root = _Map(statements[0][1], self.diagnostics)
        layers: YList | None = None
        blocks: _Map | None = None
        for kind, loc, *rest in statements:
            if kind == "setting":
                key, value, value_loc = rest
                root.add(key, loc, value, value_loc)
            elif kind == "block":
                name, definition = rest
                if blocks is None:
                    blocks = _Map(loc, self.diagnostics)
                    root.add("blocks", loc, blocks.map, loc)
                blocks.add(name, loc, definition, definition.loc)
            else:  # a chain of layer items
                if layers is None:
                    layers = _ylist([], loc)
                    root.add("layers", loc, layers, loc)
                layers.extend(v for v, _ in rest[0])
                layers.item_locs.extend(at for _, at in rest[0])
        return root.map

    def setting(self, meta: Any, children: list[Any]) -> tuple[Any, ...]:
        key, value = children
        value, value_loc = value if value is not None else (None, self.at(key))  # `params:` alone is null, as in YAML
        return ("setting", self.at(key), str(key), value, value_loc)

    def values(self, meta: Any, items: list[Located]) -> Located:
        return items[0] if len(items) == 1 else (_ylist(items, items[0][1]), items[0][1])

    def kwargs(self, meta: Any, pairs: list[Pair]) -> Located:
        return self.pairs(pairs, pairs[0].key_loc), pairs[0].key_loc

    def pairs(self, pairs: Sequence[Pair | None], loc: Loc) -> YMap:
        """A mapping from key-value pairs (None: an empty optional slot of the grammar)."""
        out = _Map(loc, self.diagnostics)
        for pair in pairs:
            if pair is not None:
                out.add(*pair)
        return out.map

    def kwarg(self, meta: Any, children: list[Any]) -> Pair:
        (key, key_loc), (value, value_loc) = children
        return Pair(key, key_loc, value, value_loc)

    def key(self, meta: Any, children: list[Token]) -> Located:
        (tok,) = children
        return (self.string(tok) if tok.type == "STRING" else str(tok)), self.at(tok)

    def import_stmt(self, meta: Any, items: list[Located | None]) -> tuple[Any, ...]:
        present = [i for i in items if i is not None]
        loc = Loc(self.file, meta.line, meta.column)
        return ("setting", loc, "import", _ylist(present, present[0][1] if present else loc), present[0][1] if present else loc)

    def extends_stmt(self, meta: Any, children: list[Token]) -> tuple[Any, ...]:
        (tok,) = children
        value = self.string(tok) if tok.type == "STRING" else str(tok)
        return ("setting", Loc(self.file, meta.line, meta.column), "extends", value, self.at(tok))

    def import_item(self, meta: Any, children: list[Token]) -> Located:
        (tok,) = children
        return (self.string(tok) if tok.type == "STRING" else str(tok)), self.at(tok)

    # -- blocks ----------------------------------------------------------------------------------------------------
    def block_def(self, meta: Any, children: list[Any]) -> tuple[Any, ...]:
        name, params, inputs, body = children
        definition = _Map(self.at(name), self.diagnostics)
        if body is not None and body[0] is not None:
            doc, doc_loc = body[0]
            definition.add("doc", doc_loc, doc, doc_loc)
        if params is not None:
            definition.add("params", params[1], params[0], params[1])
        if inputs is not None:
            definition.add("inputs", inputs[1], inputs[0], inputs[1])
        if body is not None:  # without a body the block has no `layers`, as a YAML block without the key
            _, items, body_loc = body
            definition.add("layers", body_loc, _ylist(items, body_loc), body_loc)
        return ("block", self.at(name), str(name), definition.map)

    def block_params(self, meta: Any, params: list[Pair | None]) -> Located:
        loc = Loc(self.file, meta.line, meta.column)
        return self.pairs(params, loc), loc

    def param(self, meta: Any, children: list[Any]) -> Pair:
        name, choices, doc, value = children
        value, value_loc = value if value is not None else (None, self.at(name))  # no default: required, as `c: null`
        if choices is None and doc is None:
            return Pair(str(name), self.at(name), value, value_loc)
        declaration = _Map(self.at(name), self.diagnostics)  # `act: [relu, relu6] "doc" = relu` is {default, choices, doc}
        if value is not None:
            declaration.add("default", value_loc, value, value_loc)
        if choices is not None:
            declaration.add("choices", choices[1], choices[0], choices[1])
        if doc is not None:
            declaration.add("doc", self.at(doc), self.string(doc), self.at(doc))
        return Pair(str(name), self.at(name), declaration.map, self.at(name))

    def block_inputs(self, meta: Any, names: list[Located]) -> Located:
        loc = Loc(self.file, meta.line, meta.column)
        return _ylist(names, names[0][1]), loc

    def block_input(self, meta: Any, children: list[Token]) -> Located:
        (tok,) = children
        return (self.string(tok) if tok.type == "STRING" else str(tok)), self.at(tok)

    def block_body(self, meta: Any, children: list[Any]) -> tuple[Located | None, list[Located], Loc]:
        doc, *chains = children
        return doc, _items(chains), Loc(self.file, meta.line, meta.column)

    def docstring(self, meta: Any, children: list[Token]) -> Located:
        return self.string(children[0]), self.at(children[0])

    # -- layer items -----------------------------------------------------------------------------------------------
    def chain(self, meta: Any, items: list[Located]) -> tuple[Any, ...]:
        return ("chain", items[0][1], items)

    def item(self, meta: Any, children: list[Any]) -> Located:
        word, call, alias, source, body = children
        loc = self.at(word)
        if call is None and alias is None and source is None and body is None:
            return str(word), loc
        outer = _Map(loc, self.diagnostics)
        args, call_loc = call if call is not None else ([], None)
        positional = [a for a in args if isinstance(a, Positional)]
        if len(args) == 1 and positional and alias is None and source is None and body is None:
            outer.add(str(word), loc, positional[0].value, positional[0].loc)  # a bare value: `linear(10)` is `- linear: 10`
            return outer.map, loc
        opts_loc = call_loc or (alias or source or body)[1]
        opts = _Map(opts_loc, self.diagnostics)
        if alias is not None:
            name, as_loc, name_loc = alias
            opts.add("name", as_loc, name, name_loc)
        if source is not None:
            refs, from_loc, refs_loc = source
            opts.add("from", from_loc, refs, refs_loc)
        if positional:
            self.primary(str(word), positional, opts)
        for arg in args:
            if isinstance(arg, Pair):
                opts.add(*arg)
        if body is not None:
            opts.add("layers", body[1], body[0], body[1])
        outer.add(str(word), loc, opts.map, opts_loc)
        return outer.map, loc

    def primary(self, word: str, positional: list[Positional], opts: _Map) -> None:
        """A positional value next to named ones sets the primary option, which must exist and be given once."""
        value, value_loc = positional[0]
        key = primary_option(word)
        if key is None:
            if word == "group" or canonical(word):
                self.error(value_loc, f"{word} takes no positional value (it has no primary option); write option=value")
            else:
                hint = did_you_mean(word, [*LAYERS, "repeat"])
                self.error(value_loc, f"'{word}' is not a layer type, so its arguments need names: {word}(param=value){hint}")
            return
        opts.add(key, value_loc, value, value_loc)
        for extra in positional[1:]:
            self.error(extra.loc, f"{word} takes one positional value (its primary option '{key}'); write the others as option=value")

    def call(self, meta: Any, args: list[Any]) -> tuple[list[Any], Loc]:
        return [a for a in args if a is not None], Loc(self.file, meta.line, meta.column)

    def positional(self, meta: Any, children: list[Located]) -> Positional:
        return Positional(*children[0])

    def alias(self, meta: Any, children: list[Token]) -> tuple[str, Loc, Loc]:
        (tok,) = children
        name = self.string(tok) if tok.type == "STRING" else str(tok)
        return name, Loc(self.file, meta.line, meta.column), self.at(tok)

    def source(self, meta: Any, refs: list[Any]) -> tuple[Any, Loc, Loc]:
        from_loc = Loc(self.file, meta.line, meta.column)
        if len(refs) == 1 and isinstance(refs[0][0], YList):
            return refs[0][0], from_loc, refs[0][1]
        if len(refs) == 1:
            return refs[0][0], from_loc, refs[0][1]
        return _ylist(refs, refs[0][1]), from_loc, refs[0][1]

    def ref_list(self, meta: Any, refs: list[Located | None]) -> Located:
        loc = Loc(self.file, meta.line, meta.column)
        return _ylist([r for r in refs if r is not None], loc), loc

    def ref(self, meta: Any, children: list[Token]) -> Located:
        (tok,) = children
        if tok.type == "STRING":
            return self.string(tok), self.at(tok)
        return (int(tok) if tok.isdigit() else str(tok)), self.at(tok)  # `from 0` names an unnamed layer, as `from: 0`

    def body(self, meta: Any, chains: list[Any]) -> tuple[YList, Loc]:
        loc = Loc(self.file, meta.line, meta.column)
        return _ylist(_items(chains), loc), loc

    # -- values ----------------------------------------------------------------------------------------------------
    def sequence(self, meta: Any, items: list[Located | None]) -> Located:
        loc = Loc(self.file, meta.line, meta.column)
        return _ylist([i for i in items if i is not None], loc), loc

    def mapping(self, meta: Any, pairs: list[Pair | None]) -> Located:
        loc = Loc(self.file, meta.line, meta.column)
        return self.pairs(pairs, loc), loc

    def pair(self, meta: Any, children: list[Any]) -> Pair:
        (key, key_loc), (value, value_loc) = children
        return Pair(key, key_loc, value, value_loc)

    def expr(self, meta: Any, children: list[Any]) -> Located:
        text = self.text[meta.start_pos : meta.end_pos]
        loc = Loc(self.file, meta.line, meta.column)
        if _INT.fullmatch(text):
            return int(text), loc
        if _FLOAT.fullmatch(text):
            return float(text), loc
        if text in _CONSTANTS:
            return _CONSTANTS[text], loc
        if _STRING.fullmatch(text):
            return self.string_text(text, loc), loc
        return text, loc  # an expression or a word: the builder decides, exactly as for a YAML string

    def string(self, tok: Token) -> str:
        return self.string_text(str(tok), self.at(tok))

    def string_text(self, text: str, loc: Loc) -> str:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return str(ast.literal_eval(text))
        except (ValueError, SyntaxError) as exc:
            self.error(loc, f"bad string {printable(text)}: {exc}")  # a raw NUL is refused here: show it escaped
            return text[1:-1]
