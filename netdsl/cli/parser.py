"""The argument parser: the root (--version, --debug), each command group's subcommands, and every subcommand's
examples epilog. The shell completion scripts and the install-group messages read the same parser."""

from __future__ import annotations

import argparse

from netdsl.cli import deploy, spec, train
from netdsl.cli.common import SPEC_HELP, Parser, SubParser


def build_parser() -> argparse.ArgumentParser:
    from netdsl.version import __version__

    parser = Parser(prog="netdsl", description="Declarative network definitions: check shapes and count parameters before anything is built.")
    parser.add_argument("--version", action="version", version=f"netdsl {__version__}")
    parser.add_argument("--debug", action="store_true", help="print the traceback of an internal error (before or after the subcommand)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=SubParser)
    spec.add_commands(sub)
    train.add_commands(sub)
    deploy.add_commands(sub)
    p = sub.add_parser("completion", help="print a shell completion script: subcommands, options, spec and model files")
    p.add_argument("shell", choices=("bash", "zsh", "fish"), help="the shell the script is for")

    _finish_help(parser, [])
    return parser


POSITIONAL_HELP = {"spec": SPEC_HELP, "specs": "spec files (.yaml or .net)"}  # where a command gives none of its own


class _HelpFormatter(argparse.HelpFormatter):
    """Wraps descriptions as argparse does, but keeps the `examples:` epilog's lines as written (a RawDescriptionHelpFormatter
    would leave long descriptions unwrapped too)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("examples:"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def _finish_help(parser: argparse.ArgumentParser, path: list[str]) -> None:
    """Give every subcommand its examples epilog (netdsl/cli/examples.py), and positionals without help the common one."""
    from netdsl.cli.examples import epilog

    parser.formatter_class = _HelpFormatter
    if path:
        parser.epilog = epilog(" ".join(path))
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                _finish_help(child, [*path, name])
        elif action.help is None and not action.option_strings:
            action.help = POSITIONAL_HELP.get(action.dest)
