"""The fuzzer's mutations (tests/fuzz.py): each takes (text, rng, context) and returns the new text, or None where it
does not apply. Text holds raw bytes that are not UTF-8 as lone surrogates (surrogateescape), so a cut in the middle of
a character survives."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

NUMBERS = ["0", "-1", "1000000000000000000000000000000", "1.5", "0.0", "-0.5", '"abc"', "abc", "inf", ".inf", "-.inf", "nan", ".nan"]
NUMBERS += ["1e308", "1e400", "10**9", "2**64", "999999999999999999999", "true", "null", "[]", "{}", "0x10", "1_000", "16777217", "-999999999"]
COUNTS = ["0", "-1", "1000000000", '"10**9"', "10**9", "999999999999999999999", "2**64", "1e9", "1.5", "'a'", "n", "inf", "nan", "100000", "1000"]
COUNTS += ['"9" * 30', "true", "null", "[3]", '"i"', "len('a' * 10**9)"]
SHAPES = ["3x100000x100000", "0x224x224", "3x1x1", "3x224", "3x224x224x224", "99999999999999999999", "3x-1x5", "1x1", "x", "3x224x", "[3, 0, 5]"]
SHAPES += ["[3, 1e9, 1e9]", "16777216x16777216x16777216", "1"]
EXPRESSIONS = [
    "'a' * 10**9",
    "len('a' * 10**9)",
    "len([1] * 10**9)",
    "int(float('inf'))",
    "round(1e308*10)",
    "ceil(1e400)",
    "floor(float('nan'))",
    "make_divisible(float('inf'))",
    "make_divisible(8, 0)",
    "make_divisible(-8, -1)",
    "+".join(["1"] * 500),
    "-" * 600 + "1",
    "(" * 200 + "1" + ")" * 200,
    "1" + "+1" * 5000,
    "[" * 120 + "]" * 120,
    "not " * 300 + "1",
    "__import__('os')",
    "().__class__",
    "(lambda: 1)()",
    "[x for x in range(9)]",
    "f'{1}'",
    "1 if",
    "(2**64)**64",
    "2**64 * 2**64 * 2**64 * 2**64",
    "sqrt(-1)",
    "sqrt(float('inf'))",
    "float('nan')",
    "min()",
    "max([])",
    "sum([1] * 10**6)",
    "sum([[1]] * 3)",
    "1/0",
    "1 // 0",
    "1 % 0",
    "0 ** -1",
    "0.0 ** -1",
    "int('9' * 5000)",
    "int('x')",
    "float('1e400') - float('1e400')",
    "'x'[0]",
    "[1, 2][5]",
    "[1, 2][-3]",
    "{1: 2}",
    "{1, 2}",
    "...",
    "b'x'",
    "1j",
    "not",
    "c * ",
    "c ** 64",
    "1e308 * 1e308",
    "abs(-1e400)",
    "round(float('nan'))",
    "int(1e300) * int(1e300)",
    "max(1, 'a')",
    "len(5)",
    "i if first else",
    "x := 1",
    "*a",
    "a.b",
    "`1`",
    "\\",
    "'\x00'",
    "'\x1b[31m'",
]
VALUES = ["null", "[1, 2]", "{a: 1}", "'x'", "true", "false", "=x", "=shortcut", "=", "''", "-", "~", "[]", "{}", "[[[]]]", "*anchor", "&a 1"]
VALUES += ["!!python/object:os.system 1", "!!binary aGk=", "<<: {a: 1}", "same", "valid", "none", "'{'", "'}'", "1:2", "a b c"]
FROM_TARGETS = ["input", "nonexistent", "/nonexistent", "/layer1.0.bn2", "parts.1", "x.99", "[a, b]", "[]", "..", "0", "-1", '""', "/", ".", "input.5"]
FROM_TARGETS += ["[input, input]", "{a: 1}", "null", "/features.0.0", "layer1.0", "a..b", "é"]
IMPORTS = ["nonexistent.yaml", "../specs/lenet5.yaml", "[resnet, resnet]", "[common, resnet, densenet]", "/etc/passwd.yaml", "bogus"]
IMPORTS += ['""', "[]", "123", "[null]", "[[resnet]]", "{a: b}", "/dev/zero.yaml", "lenet5.net", ".yaml", "resnet.yaml"]
CHARACTERS = ["\x00", "\x01", "\x07", "\x08", "\x0b", "\x0c", "\x1b", "\x1b[2J", "\x7f", "\x85", "\xa0", "\u2028", "\u2029", "\ufeff", "\ufffe"]
CHARACTERS += ["\udcff", "\udcc3", "é", "ß", "İ", "🙂", "\u0301", "\u202e", "\u200b", "\t", "\r", "\r\n", "\\", '"', "'", "{", "}", "[", "]"]
CHARACTERS += ["#", ":", ": ", "&a ", "*a", "!", "%", "@", "`", "|", ">", "- ", "---\n", "...\n", "(", ")", "->", "=", ",", "\n"]
TOP_LINES = ["limits: {nodes: 10}", "limits: {params: 1}", "limits: {nodes: 1000000000000}", "limits: {macs: -1}", "outputs: [nonexistent]"]
TOP_LINES += ["outputs: []", "netdsl: 2", "netdsl: 999999999999999999999", "params: {n: 10**9}", "blocks: {}", "layers: []", "import: [common]"]
TOP_LINES += ["train: {data: {source: digits, split: {train: 0.9, val: 0.9, test: 0.9}}}", "train: {epochs: -1}", "name: '\x1b[31mred'"]

ALIAS_BOMB = "".join(f"a{k}: &a{k} [{', '.join([f'*a{k - 1}'] * 10 if k else ['x'] * 10)}]\n" for k in range(9))  # 10**9 leaves


def _block_tower(levels: int, fan: int) -> str:
    """blocks: b0 .. b{levels-1}, each using the one below `fan` times: fan**levels layers once expanded."""
    lines = ["blocks:", "  b0: {layers: [relu]}"]
    lines += [f"  b{k}: {{layers: [repeat: {{n: {fan}, layers: [b{k - 1}]}}]}}" for k in range(1, levels)]
    return "\n".join(lines) + "\n"


_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e-?\d+)?(?![\w.])")
_SHAPE = re.compile(r"\b\d+(?:x\d+){1,2}\b")
_KEY = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)(?=\s*[:=](?!=))")
_PAIR = re.compile(r"\b([a-z_][a-z0-9_]*\s*[:=]\s*)([^,}\)\]\n#]+)")
_FROM = re.compile(r"\b(from:?\s+)([^,}\)\n#]+)")
_NAME = re.compile(r"(?:\bname:\s*|\bas\s+)([\w.\-]+)")
_REPEAT = re.compile(r"(\bn:\s*|\brepeat\()([^,}\)\n#]+)")
_IMPORT = re.compile(r"(^import:\s*)(.*)$", re.M)
_QUOTED = re.compile(r"\"([^\"\n]*)\"")
_YAML_BODY = re.compile(r"layers: \[([^\[\]\n]*)\]")
_NET_BODY = re.compile(r"\{ ([^{}\n]*) \}")


@dataclass
class Context:
    """What a mutator may draw on: the spec's own names and lines of other specs."""

    fmt: str  # "yaml" or "net"
    names: list[str]
    donors: list[str]


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def _pick(rng: random.Random, pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    matches = list(pattern.finditer(text))
    return rng.choice(matches) if matches else None


def _replace(text: str, m: re.Match[str], group: int, new: str) -> str:
    return text[: m.start(group)] + new + text[m.end(group) :]


def _as_value(expr: str, ctx: Context) -> str:
    """An expression written as a value: double-quoted (escaped) in YAML, as it is in the text format."""
    if ctx.fmt == "net":
        return expr
    return '"' + expr.replace("\\", "\\\\").replace('"', '\\"') + '"'


def delete_line(text: str, rng: random.Random, ctx: Context) -> str | None:
    lines = _lines(text)
    if not lines:
        return None
    del lines[rng.randrange(len(lines))]
    return "".join(lines)


def duplicate_line(text: str, rng: random.Random, ctx: Context) -> str | None:
    lines = _lines(text)
    if not lines:
        return None
    i = rng.randrange(len(lines))
    lines.insert(rng.randrange(len(lines) + 1), lines[i] if lines[i].endswith("\n") else lines[i] + "\n")
    return "".join(lines)


def swap_lines(text: str, rng: random.Random, ctx: Context) -> str | None:
    lines = _lines(text)
    if len(lines) < 2:
        return None
    i = rng.randrange(len(lines) - 1)
    j = i + 1 if rng.random() < 0.5 else rng.randrange(len(lines))
    lines[i], lines[j] = lines[j], lines[i]
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def change_number(text: str, rng: random.Random, ctx: Context) -> str | None:
    m = _pick(rng, _NUMBER, text)
    return _replace(text, m, 0, rng.choice(NUMBERS)) if m else None


def change_shape(text: str, rng: random.Random, ctx: Context) -> str | None:
    m = _pick(rng, _SHAPE, text)
    return _replace(text, m, 0, rng.choice(SHAPES)) if m else None


def near_miss_key(text: str, rng: random.Random, ctx: Context) -> str | None:
    m = _pick(rng, _KEY, text)
    if not m:
        return None
    key = m.group(1)
    i = rng.randrange(len(key))
    how = rng.randrange(4)
    if how == 0 and len(key) > 1:
        key = key[:i] + key[i + 1 :]
    elif how == 1:
        key = key[:i] + key[i] + key[i:]
    elif how == 2 and len(key) > 1:
        i = min(i, len(key) - 2)
        key = key[:i] + key[i + 1] + key[i] + key[i + 2 :]
    else:
        key = key[:i] + key[i].swapcase() + key[i + 1 :]
    return _replace(text, m, 1, key)


def insert_character(text: str, rng: random.Random, ctx: Context) -> str:
    lines = _lines(text)
    if lines and rng.random() < 0.5:  # inside a value: just before a line's end, or after its first ': ' or '('
        i = rng.randrange(len(lines))
        line = lines[i]
        spots = [m.end() for m in re.finditer(r": |\(|=", line)] + [len(line.rstrip("\r\n"))]
        at = rng.choice(spots)
        lines[i] = line[:at] + rng.choice(CHARACTERS) + line[at:]
        return "".join(lines)
    at = rng.randrange(len(text) + 1)
    return text[:at] + rng.choice(CHARACTERS) + text[at:]


def truncate(text: str, rng: random.Random, ctx: Context) -> str | None:
    data = text.encode("utf-8", "surrogateescape")
    if not data:
        return None
    return data[: rng.randrange(len(data))].decode("utf-8", "surrogateescape")


def change_indentation(text: str, rng: random.Random, ctx: Context) -> str | None:
    lines = _lines(text)
    filled = [i for i, line in enumerate(lines) if line.strip()]
    if not filled:
        return None
    i = rng.choice(filled)
    body = lines[i].lstrip(" \t")
    indent = lines[i][: len(lines[i]) - len(body)]
    lines[i] = rng.choice([indent + " ", indent + "  ", indent + "    ", indent[1:], indent[2:], "", "\t" + indent, indent + "\t", " " * 80]) + body
    return "".join(lines)


def change_from(text: str, rng: random.Random, ctx: Context) -> str | None:
    targets = FROM_TARGETS + ctx.names
    m = _pick(rng, _FROM, text)
    if m and rng.random() < 0.75:
        return _replace(text, m, 2, rng.choice(targets))
    opener = _pick(rng, re.compile(r"\{(?=\w)") if ctx.fmt == "yaml" else re.compile(r"\)(?= as| ->|$)", re.M), text)
    if not opener:
        return None
    target = rng.choice(targets)
    return _replace(text, opener, 0, f"{{from: {target}, " if ctx.fmt == "yaml" else f") from {target}")


def change_value(text: str, rng: random.Random, ctx: Context) -> str | None:
    """A block parameter or layer option gets another value: a number, a word, a name, an expression, YAML oddities."""
    m = _pick(rng, _PAIR, text)
    if not m:
        return None
    pool = rng.choice([VALUES, NUMBERS, ctx.names or VALUES, [_as_value(e, ctx) for e in EXPRESSIONS]])
    return _replace(text, m, 2, rng.choice(pool))


def change_repeat(text: str, rng: random.Random, ctx: Context) -> str | None:
    m = _pick(rng, _REPEAT, text)
    if m and rng.random() < 0.7:
        return _replace(text, m, 2, rng.choice(COUNTS))
    n = rng.choice(["1000", "100", "10", "1000000", "0"])
    if ctx.fmt == "yaml":
        body = _pick(rng, _YAML_BODY, text)
        return _replace(text, body, 1, f"repeat: {{n: {n}, layers: [{body.group(1)}]}}") if body else None
    body = _pick(rng, _NET_BODY, text)
    return _replace(text, body, 1, f"repeat({n}) {{ {body.group(1)} }}") if body else None


def mangle_expression(text: str, rng: random.Random, ctx: Context) -> str | None:
    """Replace a value by a hostile expression, or break an existing one (an operator, a bracket, a name template)."""
    how = rng.randrange(4)
    if how == 0:
        m = _pick(rng, _QUOTED, text) or _pick(rng, _PAIR, text)
        if not m:
            return None
        old = m.group(1) if m.re is _QUOTED else m.group(2)
        cut = rng.randrange(len(old) + 1)
        new = old[:cut] + rng.choice(["(", ")", "*", "**", " if ", "[", "{", "}", "'", ",", " + ", "-", "//", "<"]) + old[cut:]
        group = 1 if m.re is _QUOTED else 2
        return _replace(text, m, group, new)
    if how == 1:
        m = _pick(rng, _NAME, text)
        template = rng.choice(["{'a' * 10**10}", "{i}", "{", "}", "{{}}", "{1/0}", "{x}", "stage{i + 1}", "{'\x1b'}", "{[1] * 10**8}", "{}"])
        return _replace(text, m, 1, _as_value(template, ctx)) if m else None
    m = _pick(rng, _PAIR, text)
    return _replace(text, m, 2, _as_value(rng.choice(EXPRESSIONS), ctx)) if m else None


def change_import(text: str, rng: random.Random, ctx: Context) -> str | None:
    m = _pick(rng, _IMPORT, text)
    if not m:
        return None
    return _replace(text, m, 2, rng.choice(IMPORTS))


def splice_line(text: str, rng: random.Random, ctx: Context) -> str:
    """Insert a line of another spec (same format) at a random line."""
    lines = _lines(text)
    donor = rng.choice(ctx.donors)
    lines.insert(rng.randrange(len(lines) + 1), donor if donor.endswith("\n") else donor + "\n")
    return "".join(lines)


def add_top_line(text: str, rng: random.Random, ctx: Context) -> str:
    lines = _lines(text)
    first = next((i for i, line in enumerate(lines) if line.startswith(("layers", "name"))), len(lines))
    lines.insert(first, rng.choice([*TOP_LINES, ALIAS_BOMB.rstrip("\n")]) + "\n")
    return "".join(lines)


def add_block_tower(text: str, rng: random.Random, ctx: Context) -> str | None:
    """A YAML spec without blocks gets a tower of blocks (10 levels, each using the one below 10 times), used once."""
    if ctx.fmt != "yaml" or re.search(r"^blocks:", text, re.M):
        return None
    item = _pick(rng, re.compile(r"^(\s+- )(.+)$", re.M), text)
    if not item:
        return None
    levels, fan = rng.choice([(10, 10), (3, 1000), (2, 100000), (20, 2), (40, 1), (4, 10)])
    body = _replace(text, item, 2, f"b{levels - 1}")
    top = re.search(r"^layers:", body, re.M)
    at = top.start() if top else len(body)
    return body[:at] + _block_tower(levels, fan) + body[at:]


Mutator = Callable[[str, random.Random, Context], "str | None"]
MUTATORS: list[tuple[Mutator, int]] = [
    (delete_line, 6),
    (duplicate_line, 4),
    (swap_lines, 4),
    (change_number, 8),
    (change_shape, 2),
    (near_miss_key, 5),
    (insert_character, 6),
    (truncate, 3),
    (change_indentation, 4),
    (change_from, 5),
    (change_value, 6),
    (change_repeat, 5),
    (mangle_expression, 8),
    (change_import, 2),
    (splice_line, 3),
    (add_top_line, 2),
    (add_block_tower, 1),
]
