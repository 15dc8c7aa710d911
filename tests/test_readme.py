"""The README is tested: its commands run with the output it shows, its specs load, its files are the real ones."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import netdsl
from netdsl.graph.load import load_net_text
from netdsl.layers import LAYERS
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
FENCE = re.compile(r"(?:<!-- (?P<marker>\w+): (?P<path>\S+) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)```", re.S)
BLOCKS = [m.groupdict() for m in FENCE.finditer(README)]
SLOW_STEP = re.compile(r".+: [\d,]+ in \d+\.\ds")


def blocks(lang: str, marker: str | None = None) -> list[dict]:
    return [b for b in BLOCKS if b["lang"] == lang and b["marker"] == marker]


def console_commands() -> list[tuple[str, list[str], int]]:
    """(command, expected output lines, exit status) for every `$ ...` line in console blocks."""
    out = []
    for block in blocks("console"):
        current = None
        for line in block["body"].splitlines():
            if line.startswith("$ "):
                current = [line[2:], [], 0]
                out.append(current)
            elif current is not None and line.startswith("# exit "):
                current[2] = int(line.removeprefix("# exit "))
            elif current is not None:
                current[1].append(line)
    return [tuple(c) for c in out]


def matches(expected: list[str], actual: list[str]) -> bool:
    """Line-by-line equality where a `...` line stands for any number of lines and `text...` for a line starting with text."""
    if not expected:
        return not actual
    if expected[0] == "...":
        return any(matches(expected[1:], actual[i:]) for i in range(len(actual) + 1))
    head = expected[0]
    same = actual and (actual[0].startswith(head[:-3]) if head.endswith("...") else actual[0] == head)  # `text...` matches a prefix
    return bool(same) and matches(expected[1:], actual[1:])


@pytest.mark.parametrize(("command", "expected", "status"), console_commands(), ids=[c[0] for c in console_commands()])
def test_console_examples(command, expected, status):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(command, shell=True, capture_output=True, text=True, cwd=ROOT, env=env)
    assert proc.returncode == status, proc.stderr
    # a data step that happened to take a second or more adds "{step}: {count} in {seconds}s" to stderr (progress.task):
    # how long it takes depends on the machine's load, so such lines are not part of the documented output
    notes = [line for line in proc.stderr.splitlines() if not SLOW_STEP.fullmatch(line)]
    assert matches(expected, proc.stdout.splitlines() + notes), proc.stdout + proc.stderr


def test_there_are_console_examples():
    assert len(console_commands()) >= 5


@pytest.mark.parametrize("block", blocks("yaml", "file") + blocks("net", "file"), ids=lambda b: b["path"])
def test_shown_files_are_the_real_files(block):
    assert block["body"] == (ROOT / block["path"]).read_text()


@pytest.mark.parametrize("block", blocks("yaml", "excerpt"), ids=lambda b: b["path"])
def test_excerpts_are_verbatim(block):
    assert block["body"] in (ROOT / block["path"]).read_text()


@pytest.mark.parametrize("index", range(len(blocks("yaml"))))
def test_inline_specs_load(index):
    body = blocks("yaml")[index]["body"]
    graph = netdsl.load_text(body, f"README.md yaml block {index}")
    assert graph.nodes


@pytest.mark.parametrize("index", range(len(blocks("net"))))
def test_inline_text_specs_load(index):
    body = blocks("net")[index]["body"]
    graph = load_net_text(body, f"README.md net block {index}")
    assert graph.nodes


def test_text_format_is_shown():
    assert blocks("net", "file"), "the README shows a .net spec next to its YAML"


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_examples_print_what_their_comments_say(index):
    code = blocks("python")[index]["body"].replace('"specs/', f'"{ROOT}/specs/')
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        exec(compile(code, "README.md", "exec"), {})
    promised = re.findall(r"^print\(.*\)\s+# -> (.*)$", code, re.M)
    assert promised and buffer.getvalue().splitlines()[: len(promised)] == promised  # later prints are illustrations


def test_make_commands_exist_and_ci_runs_the_test_command():
    shown = {line.split()[1] for b in blocks("sh") for line in b["body"].splitlines() if line.startswith("make ")}
    assert shown == {"demo", "test", "light-installs", "bench", "schema", "zoo-full", "fuzz", "kill-resume"}
    for target in shown:
        assert subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True).returncode == 0, target
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_make_demo_runs():
    proc = subprocess.run(["make", "demo"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "specs/vgg16.yaml: ok (138,357,544 params" in proc.stdout
    assert "Params: 61,706 total, 61,706 trainable, 0 frozen" in proc.stdout
    accuracy = float(proc.stdout.split("test_accuracy ")[1].split()[0])
    assert accuracy >= 0.97  # the bar for LeNet-5 on the digits


def test_layer_table_lists_every_layer_type_and_option():
    table = README.split("<!-- layers:start -->")[1].split("<!-- layers:end -->")[0]
    rows = {line.split("|")[1].strip().strip("`"): line for line in table.splitlines()[2:] if line.startswith("| `")}
    assert set(rows) == set(LAYERS)
    for name, cls in LAYERS.items():
        for spec in cls.args():
            assert spec.name in rows[name], (name, spec.name)
        for alias in cls.aliases:
            assert alias in rows[name].split("|")[2]


def test_zoo_table_names_every_spec():
    zoo = README.split("## The zoo")[1].split("## ")[0]
    for spec in (ROOT / "specs").glob("*.yaml"):
        assert f"`{spec.stem}`" in zoo, spec.stem


def test_import_row_lists_every_builtin_library():
    row = next(line for line in README.splitlines() if line.startswith("| `import` |"))
    listed = set(re.findall(r"`(\w+)`", row.split("built-in", 1)[1].split(", or", 1)[0]))
    assert listed == {p.stem for p in (ROOT / "netdsl" / "blocks").glob("*.yaml")}
