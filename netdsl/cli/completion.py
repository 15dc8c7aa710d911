"""`netdsl completion bash|zsh|fish`: a shell completion script written from the real argument parser.

shtab, not argcomplete: shtab writes a static script once (subcommands, options, choices, and file patterns for spec and
model arguments), so a TAB costs the shell nothing, whereas argcomplete starts Python and imports netdsl on every TAB
(about 0.3 s here) and needs a hook in main(). shtab (>= 1.8) writes fish scripts too, so one library covers the three
shells. The script can go stale only when netdsl's options change: regenerate it after an upgrade.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

SPEC_FILES = ("*.yaml", "*.yml", "*.net")
POSITIONAL_FILES = {  # dest: file patterns; folders are offered too (a run folder is a SPEC for eval, predict, export)
    "spec": SPEC_FILES,
    "specs": SPEC_FILES,
    "a": SPEC_FILES,
    "b": SPEC_FILES,
    "model": ("*.onnx",),
    "target": ("*.onnx", *SPEC_FILES),
}
FOLDER_OPTIONS = {"--resume", "--run-dir"}
FILE_OPTIONS = {"--weights", "-o", "--output", "--out", "--report"}


def completion_script(shell: str) -> str:
    """The completion script for `shell` (bash, zsh or fish)."""
    import shtab

    from netdsl.cli.parser import build_parser

    parser = build_parser()
    _mark_files(parser, shtab)
    return str(shtab.complete(parser, shell=shell))


def _mark_files(parser: argparse.ArgumentParser, shtab: Any) -> None:
    """Tell shtab which arguments take files: spec and model patterns for positionals, any file or folder for options."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _mark_files(child, shtab)
        elif not action.option_strings and action.dest in POSITIONAL_FILES:
            action.complete = shtab.glob(*POSITIONAL_FILES[action.dest])  # type: ignore[attr-defined]
        elif not action.option_strings and action.dest in ("inputs", "folder"):
            action.complete = shtab.FILE if action.dest == "inputs" else shtab.DIRECTORY  # type: ignore[attr-defined]
        elif FOLDER_OPTIONS & set(action.option_strings):
            action.complete = shtab.DIRECTORY  # type: ignore[attr-defined]
        elif FILE_OPTIONS & set(action.option_strings):
            action.complete = shtab.FILE  # type: ignore[attr-defined]


def cmd_completion(args: argparse.Namespace) -> int:
    """Print the script; the --help epilog says where each shell looks for it."""
    sys.stdout.write(completion_script(args.shell))
    return 0
