"""Budgets on what a spec can make the compiler do (issue 15): repeat counts, nodes after expansion, nesting, expression
size and the values expressions build, and sizes beyond any machine -- each a one-line located error, exit 2, checked
before the work, so a hostile spec is refused within 2 s and 300 MB."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from netdsl.graph.build import MAX_NESTING, MAX_REPEAT, block_defs, build_graph
from netdsl.lang.limits import DEFAULT_NODES
from netdsl.lang.schema import shipped_schema
from netdsl.lang.yaml_tree import load_yaml

HEAD = "netdsl: 1\nname: t\ninput: 3x32x32\nlayers:\n"
NET_HEAD = "netdsl: 1\nname: t\ninput: 3x32x32\n\n"
NODES = f"beyond the budget of {DEFAULT_NODES:,} nodes (raise it with limits: {{nodes: N}})"


def check(cli, path) -> str:
    """The one line `netdsl check` prints for a bad spec (exit 2, no traceback)."""
    code, out, err = cli("check", str(path))
    assert code == 2, (out, err)
    assert "Traceback" not in err
    (line,) = err.splitlines()
    return line


def nested_repeats(counts: tuple[int, ...]) -> str:
    """repeat counts[0] { repeat counts[1] { ... relu } } in YAML."""
    body = "[relu]"
    for n in reversed(counts):
        body = f"[{{repeat: {{n: {n}, layers: {body}}}}}]"
    return HEAD + f"  - {body[2:-2]}\n"


def block_levels(levels: int, uses: int) -> str:
    """Blocks b1..b<levels>, each using the one below `uses` times (b0 is one relu); the spec uses the top one."""
    lines = ["netdsl: 1", "name: t", "input: 3x32x32", "blocks:", "  b0:", "    layers: [relu]"]
    for k in range(1, levels + 1):
        lines += [f"  b{k}:", "    layers:", *[f"      - b{k - 1}" for _ in range(uses)]]
    return "\n".join([*lines, "layers:", f"  - b{levels}"]) + "\n"


BOMBS = {  # name: (spec text, line:col, message) -- the repros of this part
    "repeat_pow": (HEAD + '  - repeat: {n: "10**9", layers: [relu]}\n', "5:17", f"repeat: 'n' must be an integer >= 1 and <= {MAX_REPEAT}; got 1000000000"),
    "repeat_huge_expr": (
        HEAD + '  - repeat: {n: "999999999999999999999", layers: [relu]}\n',
        "5:17",
        "repeat: 'n' must be an integer >= 1 and <= 100000; got 999999999999999999999",
    ),
    "nested_repeats": (nested_repeats((1000, 1000, 1000)), "5:5", f"the network reaches at least 1,000,000,000 nodes with this repeat, {NODES}"),
    "block_levels": (block_levels(10, 10), "128:5", f"the network reaches at least 10,000,000,000 nodes with this use of block 'b10', {NODES}"),
    "string_bomb": (
        HEAD + "  - flatten\n  - linear: {out: \"len('a' * 10**9)\"}\n",
        "6:19",
        "linear '1': 'out': ''a' * 10 ** 9' would build a string of 1,000,000,000 characters; expressions may build at most 10,000",
    ),
    "list_bomb": (
        HEAD + '  - flatten\n  - linear: {out: "len([1] * 10**9)"}\n',
        "6:19",
        "linear '1': 'out': '[1] * 10 ** 9' would build a list of 1,000,000,000 items; expressions may build at most 10,000",
    ),
    "name_bomb": (
        HEAD + "  - relu: {name: \"{'a' * 10**10}\"}\n",
        "5:18",
        "''a' * 10 ** 10' would build a string of 10,000,000,000 characters; expressions may build at most 10,000",
    ),
    "net_repeat_pow": (NET_HEAD + "repeat(10**9) { relu }\n", "5:8", "repeat: 'n' must be an integer >= 1 and <= 100000; got 1000000000"),
    "net_nested_repeats": (
        NET_HEAD + "repeat(1000) {\n  repeat(1000) {\n    repeat(1000) { relu }\n  }\n}\n",
        "5:1",
        f"the network reaches at least 1,000,000,000 nodes with this repeat, {NODES}",
    ),
    "net_string_bomb": (
        NET_HEAD + "flatten\nlinear(out=len('a' * 10**9))\n",
        "6:12",
        "linear '1': 'out': ''a' * 10 ** 9' would build a string of 1,000,000,000 characters; expressions may build at most 10,000",
    ),
}


def bomb_file(spec_file, name: str):
    return spec_file(BOMBS[name][0], f"{name}.net" if name.startswith("net_") else f"{name}.yaml")


@pytest.mark.parametrize("name", BOMBS)
def test_bombs_are_refused_with_a_located_line(cli, spec_file, name):
    path = bomb_file(spec_file, name)
    _, at, message = BOMBS[name]
    assert check(cli, path) == f"{path}:{at}: {message}"


def test_a_literal_repeat_count_and_a_computed_one_share_the_bound(cli, spec_file):
    literal = spec_file(HEAD + "  - repeat: {n: 999999999999999999999, layers: [relu]}\n", "literal.yaml")
    computed = spec_file(HEAD + '  - repeat: {n: "999999999999999999999", layers: [relu]}\n', "computed.yaml")
    assert check(cli, literal).removeprefix(str(literal)) == check(cli, computed).removeprefix(str(computed))
    repeat = shipped_schema()["$defs"]["layer"]["anyOf"][1]["properties"]["repeat"]
    assert repeat["properties"]["n"]["anyOf"][0]["maximum"] == MAX_REPEAT


# CPU seconds and peak RSS of each bomb, measured in a child whose address space is capped at 1.5 GB (a bomb that
# escaped its budget dies there instead of taking the machine down)
BOUNDED = """
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (1536 << 20, 1536 << 20))
from netdsl.cli.main import main
sys.stderr = open("/dev/null", "w")
out = {}
for path in sys.argv[1:]:
    start = time.process_time()
    code = main(["check", path])
    out[path] = [code, time.process_time() - start]
out["maxrss_kb"] = int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))  # since exec
print(json.dumps(out))
"""


def test_bombs_stop_within_2_s_and_300_mb(spec_file):
    paths = [str(bomb_file(spec_file, name)) for name in BOMBS]
    done = subprocess.run([sys.executable, "-c", BOUNDED, *paths], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    for path in paths:
        code, seconds = result[path]
        assert code == 2 and seconds < 2.0, (path, code, seconds)
    assert result["maxrss_kb"] < 300 * 1024


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("int(float('inf'))", "'float('inf')' gives inf; a spec value must be finite"),
        ("round(1e308*10)", "'1e+308 * 10' gives inf; a spec value must be finite"),
        ("ceil(1e400)", "a number in the expression is too large for a float (it reads as inf); a spec value must be finite"),
        ("make_divisible(float('inf'))", "'float('inf')' gives inf; a spec value must be finite"),
        ("make_divisible(8, 0)", "division by zero in 'make_divisible(8, 0)'"),
        ("float('nan')", "'float('nan')' gives nan; a spec value must be finite"),
        ("sqrt(-1)", "'sqrt(-1)': math domain error"),
        ("+".join(["1"] * 500), "expression '1+1+1+1+1+1+1+1+1...' nests 500 levels deep; expressions are limited to 100"),
        ("-" * 600 + "1", "expression '-----------------...' nests 601 levels deep; expressions are limited to 100"),
        ("+".join(["1"] * 5000), "expression '1+1+1+1+1+1+1+1+1...' is 9,999 characters long; expressions are limited to 2,000"),
        ("2 ** 1000", "'2 ** 1000' is too large: at least 1,001 bits; integers in expressions are limited to 256"),
    ],
)
def test_expression_faults_are_located_lines(cli, spec_file, expr, message):
    """Each printed an OverflowError, ZeroDivisionError or RecursionError traceback (exit 1) before."""
    path = spec_file(HEAD + f'  - flatten\n  - linear: {{out: "{expr}"}}\n')
    assert check(cli, path) == f"{path}:6:19: linear '1': 'out': {message}"


def test_input_beyond_any_machine_is_refused_at_the_input(cli, spec_file):
    # 64 * 3 * 3 * 3 + 64 conv parameters and 64 * 99998**2 * 10 + 10 linear ones
    text = "netdsl: 1\nname: t\ninput: 3x100000x100000\nlayers:\n  - conv: {out: 64, kernel: 3}\n  - flatten\n  - linear: 10\n"
    path = spec_file(text)
    assert check(cli, path) == (
        f"{path}:3:8: input 3x100000x100000 gives 6,399,744,004,362 parameters, beyond the default budget of 1,000,000,000,000 "
        "(raise it with limits: {params: 7T}); biggest: 2 6,399,744,002,570 (100%), 0 1,792 (0%)"
    )
    raised = spec_file(text.replace("layers:", "limits: {params: 7T, activations: 6T}\nlayers:"), "raised.yaml")
    code, out, err = cli("check", str(raised))
    assert (code, err) == (0, "") and "6,399,744,004,362 params" in out


def test_input_given_on_the_command_line_is_located_there(cli, spec_file):
    path = spec_file(HEAD + "  - flatten\n  - linear: 100\n")
    code, _, err = cli("check", str(path), "--input", "3x100000x100000")
    assert code == 2
    assert err.splitlines() == [
        "--input: input 3x100000x100000 gives 3,000,000,000,100 parameters, beyond the default budget of 1,000,000,000,000 "
        "(raise it with limits: {params: 4T}); biggest: 1 3,000,000,000,100 (100%)"
    ]


def test_the_node_budget_is_raised_in_the_spec(cli, spec_file):
    """`limits: {nodes: N}` (the schema learns the key with `make schema`)."""
    text = "netdsl: 1\nname: t\ninput: 3x32x32\nlimits: {nodes: LIMIT}\nlayers:\n  - repeat: {n: 60, layers: [relu]}\n"
    low = spec_file(text.replace("LIMIT", "50"), "low.yaml")
    assert (
        check(cli, low)
        == f"{low}:6:5: the network reaches at least 60 nodes with this repeat, beyond the budget of 50 nodes (raise it with limits: {{nodes: N}})"
    )
    code, out, err = cli("check", str(spec_file(text.replace("LIMIT", "60"), "enough.yaml")))
    assert (code, err) == (0, "") and "ok (0 params" in out


def build_errors(text: str, variables: dict | None = None) -> list[str]:
    """Expansion's diagnostics for spec text (schema validation aside)."""
    tree = load_yaml(text, "t.yaml")
    blocks, problems = block_defs(tree)
    assert problems == []
    graph, diagnostics = build_graph(tree, "t.yaml", (3, 32, 32), {"width_mult": 1.0, "depth_mult": 1.0, **(variables or {})}, blocks)
    assert (graph is None) == bool(diagnostics)
    return [str(d) for d in diagnostics]


def test_a_computed_count_is_checked_when_known():
    """n from a parameter counts once in the prediction of the list; the repeat checks it again once evaluated."""
    text = "netdsl: 1\nname: t\ninput: 3x32x32\nlimits: {nodes: 50}\nlayers:\n  - relu\n  - repeat: {n: k, layers: [relu, relu]}\n"
    assert build_errors(text, {"k": 24}) == []
    assert build_errors(text, {"k": 25}) == [
        "t.yaml:7:5: the network reaches at least 51 nodes with this repeat, beyond the budget of 50 nodes (raise it with limits: {nodes: N})"
    ]


def test_switched_off_layers_count_and_the_layer_that_crosses_is_named():
    """A group under `when` is predicted as one layer; expanding it, its list is checked before it is built."""
    group = '  - group: {when: "k > 0", layers: [relu, relu, relu]}\n'
    text = "netdsl: 1\nname: t\ninput: 3x32x32\nlimits: {nodes: 10}\nlayers:\n" + group * 4
    assert build_errors(text, {"k": 0}) == []  # four switched-off groups: four visits
    assert build_errors(text, {"k": 1}) == [
        "t.yaml:9:43: the network reaches at least 11 nodes with this layer, beyond the budget of 10 nodes (raise it with limits: {nodes: N})"
    ]


def test_a_block_that_uses_itself_is_bounded():
    text = "netdsl: 1\nname: t\ninput: 3x32x32\nblocks:\n  loop:\n    layers: [relu, loop]\nlayers:\n  - loop\n"
    (line,) = build_errors(text)
    assert line.startswith("t.yaml:6:20: block 'loop' nests more than 32 deep (does it use itself?) (in block 'loop' used at t.yaml:6:20;")


def test_nesting_is_bounded_before_python_runs_out_of_stack(cli, spec_file):
    """Twenty blocks, each wrapping the use of the one below in three groups: 80 levels."""
    lines = ["netdsl: 1", "name: t", "input: 3x32x32", "blocks:", "  c0:", "    layers: [relu]"]
    for k in range(1, 21):
        lines += [f"  c{k}:", f"    layers: [{{group: {{layers: [{{group: {{layers: [{{group: {{layers: [c{k - 1}]}}}}]}}}}]}}}}]"]
    path = spec_file("\n".join([*lines, "layers:", "  - c20"]) + "\n")
    line = check(cli, path)
    assert line.startswith(
        f"{path}:16:68: layers nest more than {MAX_NESTING} levels deep here (groups, repeats and block uses inside each other) (in block 'c5'"
    )
    assert line.endswith(f"in block 'c20' used at {path}:48:5)")


def test_an_empty_from_in_a_block_use_is_located(cli, spec_file):
    """Found by the fuzzer (swin_t.yaml, `from: []` in a block use): a SpecError without any line, before."""
    path = spec_file("netdsl: 1\nname: t\ninput: 3x32x32\nblocks:\n  b:\n    layers: [relu]\nlayers:\n  - b: {from: []}\n")
    assert check(cli, path) == f"{path}:8:15: 'from' names no layer; name one or more earlier layers, or leave it out to read the previous one"


def test_layers_written_out_past_the_budget_are_refused_before_the_schema_check(cli, spec_file, monkeypatch):
    # a megabyte of literal layers: jsonschema would take ~100 us each, so the budget is checked on the raw tree first
    import netdsl.graph.load as load_module

    def no_schema(*args, **kwargs):
        raise AssertionError("the schema check ran")

    monkeypatch.setattr(load_module, "validate_tree", no_schema)
    nested = HEAD + "  - relu\n" * 9 + "  - group:\n      layers:\n" + "        - relu\n" * 12 + "  - relu\n"
    path = spec_file(nested.replace("3x32x32", "3x32x32\nlimits: {nodes: 20}"), "literal.yaml")  # the 21st: the group's 12th, line 28
    assert check(cli, path) == (
        f"{path}:28:11: the network reaches at least 21 nodes with this layer, beyond the budget of 20 nodes (raise it with limits: {{nodes: N}})"
    )
    many = spec_file(HEAD + "  - relu\n" * (DEFAULT_NODES + 5), "many.yaml")
    assert check(cli, many) == f"{many}:{5 + DEFAULT_NODES}:5: the network reaches at least {DEFAULT_NODES + 1:,} nodes with this layer, {NODES}"
