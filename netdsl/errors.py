"""Located diagnostics: every user error is a value until the CLI prints it."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True, order=True)
class Loc:
    """A 1-based position in a spec file; line 0 means "not in a file": a command-line argument (see Loc.argument)."""

    file: str
    line: int
    col: int

    @classmethod
    def argument(cls, text: str) -> Loc:
        """The location of a command-line argument as the user typed it (`--set train.lr=0.1`, `--batch`): printed without :line:col."""
        return cls(text if text.isprintable() else text.encode("unicode_escape", "backslashreplace").decode("ascii"), 0, 0)

    def __str__(self) -> str:
        return self.file if self.line == 0 else f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Diagnostic:
    """One user-facing problem: where, what, and optionally a note (e.g. a block's use site)."""

    loc: Loc
    message: str
    note: str = ""
    kind: str = field(default="", compare=False)  # "shape" for shape-rule failures (they may depend on the input size)

    def __str__(self) -> str:
        text = f"{self.loc}: {self.message}"
        return f"{text} ({self.note})" if self.note else text


class SpecError(Exception):
    """A spec is wrong; carries every diagnostic found, sorted by position."""

    def __init__(self, diagnostics: Iterable[Diagnostic]):
        self.diagnostics: list[Diagnostic] = sorted(set(diagnostics), key=lambda d: (d.loc, d.message))
        super().__init__("\n".join(str(d) for d in self.diagnostics))


class ShapeError(Exception):
    """Raised by a layer's shape rule; the builder adds the location and the layer's name."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return "; did you mean 'x'?" for the closest choice, or ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def render_source_line(diag: Diagnostic, text: str) -> str:
    """The offending source line with a caret under the column, as compilers print it."""
    lines = text.splitlines()
    if not 1 <= diag.loc.line <= len(lines):
        return ""
    line = lines[diag.loc.line - 1]
    return f"  {line}\n  {' ' * (diag.loc.col - 1)}^"


def given_loc(where: str) -> Loc:
    """Where a thing the user gave is: an option (`--batch`) as itself, `--batch: ...`; a file at its start, `path:1:1: ...`."""
    return Loc.argument(where) if where.startswith("-") else Loc(where, 1, 1)


def input_error(where: str, message: str) -> SpecError:
    """A one-line error about a file or option the user gave (a weights file, a model, --provider): exit 2 at the CLI."""
    return SpecError([Diagnostic(given_loc(where), message)])


OS_REASONS = {
    "ENOSPC": "no space left on the device",
    "EDQUOT": "the disk quota is exceeded",
    "EFBIG": "the file is larger than the file-size limit (ulimit -f)",
    "EROFS": "the file system is read-only",
    "EACCES": "permission denied",
    "EPERM": "operation not permitted",
    "ENOENT": "no such file or folder",
    "EISDIR": "is a folder",
    "ENOTDIR": "a part of the path is not a folder",
    "EMFILE": "too many open files",
    "EIO": "input/output error",
}


def os_error_line(exc: OSError) -> str:
    """One line for a file-system failure that reached the CLI: the file (the target of a rename or copy), then the reason."""
    import errno

    name = errno.errorcode.get(exc.errno or 0, "")
    reason = OS_REASONS.get(name) or exc.strerror or str(exc) or type(exc).__name__
    file = exc.filename2 if exc.filename2 is not None else exc.filename
    if file is None:
        return f"netdsl: {reason}" + (f" ({name})" if name else "")
    text = os.fsdecode(file) if isinstance(file, (str, bytes, os.PathLike)) else str(file)
    if not text.isprintable():  # an escape sequence in a file name must not reach the terminal raw
        text = text.encode("unicode_escape", "backslashreplace").decode("ascii")
    return f"{text}:1:1: {reason}" + (f" ({name})" if name else "")
