"""Help texts, examples and shell completion, checked over the real parser tree so new subcommands are covered too."""

from __future__ import annotations

import argparse
import glob
import shlex
import subprocess
from collections.abc import Iterator

import pytest

from netdsl.cli.completion import completion_script
from netdsl.cli.examples import EXAMPLES
from netdsl.cli.parser import build_parser
from tests.conftest import ROOT


def subcommands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """(command path, parser) for every subcommand, nested ones ("data pack") included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield (*path, name), child
                yield from subcommands(child, (*path, name))


COMMANDS = [" ".join(path) for path, _ in subcommands(build_parser())]


def test_every_argument_has_help():
    missing = []
    for path, parser in [((), build_parser()), *subcommands(build_parser())]:
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)) or action.help == argparse.SUPPRESS:
                continue  # --help, the subcommand list (each has help below), the hidden --debug and --run-dir
            if not (action.help or "").strip():
                missing.append(f"netdsl {' '.join(path)}: {action.option_strings or action.dest}")
    assert missing == []


def test_every_subcommand_help_lists_a_subcommand_with_help():
    for path, parser in [((), build_parser()), *subcommands(build_parser())]:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {choice.dest: choice.help for choice in action._choices_actions}
                assert all(helps.get(name) for name in action.choices), (path, helps)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_help_ends_with_examples(command):
    parser = dict(subcommands(build_parser()))[tuple(command.split())]
    text = parser.format_help()
    examples = EXAMPLES.get(command)
    assert examples, f"add examples for `netdsl {command}` to netdsl/cli/examples.py"
    assert text.rstrip().endswith("\n".join(f"  {line}" for line in examples))  # the lines exactly as written
    assert "\nexamples:\n" in text


def test_examples_name_only_real_subcommands():
    assert sorted(set(EXAMPLES) - set(COMMANDS)) == []


@pytest.mark.parametrize(("command", "line"), [(c, line) for c, lines in EXAMPLES.items() if c in COMMANDS for line in lines])
def test_every_example_parses_and_runs_its_own_command(command, line):
    words = shlex.split(line)
    for stop in (">", "|"):  # a redirect or a pipe ends the netdsl part
        words = words[: words.index(stop)] if stop in words else words
    assert words[0] == "netdsl"
    args = build_parser().parse_args(words[1:])  # argparse exits (2) on anything it does not take
    assert [args.command, *([args.data_command] if args.command == "data" else [])][: len(command.split())] == command.split()
    for word in words[1:]:  # the files an example names in the repository exist (a pattern: at least one match)
        if word.startswith(("specs/", "examples/")):
            assert glob.glob(str(ROOT / word)), f"{line}: {word} does not exist"


def test_descriptions_are_wrapped_and_examples_kept(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["infer", "--help"])
    text = capsys.readouterr().out
    before, _, examples = text.partition("\nexamples:\n")
    assert max(len(line) for line in before.splitlines()) <= 100  # argparse wraps to the terminal width (80 under pytest)
    assert examples.splitlines() == [f"  {line}" for line in EXAMPLES["infer"]]


# --- completion ---------------------------------------------------------------


@pytest.fixture(scope="module")
def bash_script(tmp_path_factory):
    path = tmp_path_factory.mktemp("completion") / "netdsl.bash"
    path.write_text(completion_script("bash"))
    return path


def complete(script, words: list[str], cwd=ROOT) -> list[str]:
    """What bash offers for `words` (the last one being completed), through the script's own function."""
    array = " ".join(shlex.quote(w) for w in words)
    program = f"source {shlex.quote(str(script))}; COMP_WORDS=({array}); COMP_CWORD={len(words) - 1}; _shtab_netdsl; printf '%s\\n' \"${{COMPREPLY[@]}}\""
    result = subprocess.run(["bash", "-c", program], capture_output=True, text=True, cwd=cwd, timeout=20)
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line]


def test_bash_completes_subcommands_and_options(bash_script):
    assert complete(bash_script, ["netdsl", "su"]) == ["summarize"]
    assert complete(bash_script, ["netdsl", "summarize", "--de"]) == ["--depth", "--depth-mult"]
    assert complete(bash_script, ["netdsl", "completion", ""]) == ["bash", "zsh", "fish"]
    assert complete(bash_script, ["netdsl", "data", "p"]) == ["pack"]


def test_bash_completes_spec_files_and_folders_only(bash_script, tmp_path):
    for name in ("a.yaml", "b.net", "notes.txt", "m.onnx"):
        (tmp_path / name).write_text("")
    (tmp_path / "run").mkdir()
    assert sorted(complete(bash_script, ["netdsl", "check", ""], cwd=tmp_path)) == ["a.yaml", "b.net", "run"]
    assert sorted(complete(bash_script, ["netdsl", "infer", ""], cwd=tmp_path)) == ["m.onnx", "run"]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_scripts_name_every_subcommand(shell):
    script = completion_script(shell)
    for command in COMMANDS:
        assert command.split()[-1] in script, command
    assert "*.yaml" in script and "*.onnx" in script  # spec and model arguments complete their files


def test_completion_command_prints_the_script_and_refuses_other_shells(cli):
    code, out, _ = cli("completion", "bash")
    assert code == 0 and out.rstrip().endswith("complete -o bashdefault -F _shtab_netdsl netdsl")
    code, _, err = cli("completion", "tcsh")
    assert code == 2 and "argument shell: invalid choice: 'tcsh'" in err
