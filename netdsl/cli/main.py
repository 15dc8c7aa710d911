"""`netdsl`: parse the command line, run the command, and end every way it can as an exit status and at most a few
located lines, never a traceback. The commands live in their groups (spec.py, train.py, deploy.py); no logic lives here."""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Sequence

from netdsl.cli import deploy, spec, train
from netdsl.cli.common import EXIT_USAGE, print_errors
from netdsl.cli.completion import cmd_completion
from netdsl.cli.parser import build_parser
from netdsl.errors import SpecError, os_error_line

EXIT_INTERNAL = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C
ISSUES = "the netdsl issue tracker"  # pyproject.toml names no project URL


COMMANDS = {**spec.COMMANDS, **train.COMMANDS, **deploy.COMMANDS, "completion": cmd_completion}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every way it can end is an exit status and at most a few located lines, never a traceback
    (except an internal error under --debug)."""
    debug = False
    try:
        args = build_parser().parse_args(argv)
        debug = args.debug
        return COMMANDS[args.command](args)
    except SpecError as exc:
        print_errors(exc)
        return EXIT_USAGE
    except BrokenPipeError:  # `netdsl check specs/*.yaml | head`: the reader has gone; say nothing
        _discard_stdout()
        return 0
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        _say("netdsl: interrupted")
        return EXIT_INTERRUPTED
    except OSError as exc:  # disk full, read-only folder, file-size limit, ... where no command gave its own message
        if debug:
            traceback.print_exc()
        _say(os_error_line(exc))
        return EXIT_USAGE
    except MemoryError:
        _say("netdsl: out of memory (MemoryError): the spec or the inputs need more memory than this machine gives the process")
        return EXIT_USAGE
    except Exception as exc:
        if debug:
            traceback.print_exc()
        if _out_of_memory(exc):  # torch's allocators raise RuntimeError (CPU) or torch.OutOfMemoryError (CUDA)
            _say(f"netdsl: out of memory: {(str(exc).strip().splitlines() or [''])[0][:300]}")
            return EXIT_USAGE
        from netdsl.cli.extras import missing_extra_line

        if missing := missing_extra_line(exc, argv):  # an optional group (pip extra) is not installed: name it
            _say(missing)
            return EXIT_USAGE
        _say(internal_error_line(exc))
        return EXIT_INTERNAL


def _out_of_memory(exc: BaseException) -> bool:
    return type(exc).__name__ == "OutOfMemoryError" or (isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc))


def internal_error_line(exc: BaseException) -> str:
    """The one line for a bug of ours: what was raised, and where to report it."""
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    what = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return f"netdsl: internal error: {what} — please report it at {ISSUES}; rerun with --debug for the traceback"


def _say(line: str) -> None:
    """A last line on stderr, even if stderr is gone too."""
    with contextlib.suppress(OSError, ValueError):
        print(line, file=sys.stderr, flush=True)


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush of what is still buffered cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is not a real file (pytest's capture): nothing is left to flush there
        pass


if __name__ == "__main__":
    raise SystemExit(main())
