"""Bounded reading of spec and library files: regular files only, 1 MB by default, UTF-8 with located decode errors.

Every place that reads a spec (load, imports, fmt, convert, train; source_text for the CLI's excerpts) reads here, so a link to
/dev/zero, a FIFO or a 50 MB file is refused from its `stat` before anything is read, and no more than the cap is read.
"""

from __future__ import annotations

import errno
import os
import stat

from netdsl.errors import Diagnostic, Loc, SpecError

DEFAULT_MAX_SPEC_BYTES = 1_000_000  # the largest zoo spec is ~10 KB and its expansion ~90 KB; parsing 1 MB takes seconds
SIZE_VARIABLE = "NETDSL_MAX_SPEC_BYTES"

_KINDS = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)  # a FIFO swapped in after stat cannot block


class FileProblem(Exception):
    """Why a spec file cannot be read, and where in it (1:1 unless the text cannot be decoded)."""

    def __init__(self, message: str, line: int = 1, col: int = 1, *, in_text: bool = False):
        super().__init__(message)
        self.message, self.line, self.col = message, line, col
        self.in_text = in_text  # located in the file's text (a decode error), not about the file as a whole


def max_spec_bytes() -> int:
    """The most bytes a spec or library file may have: NETDSL_MAX_SPEC_BYTES, or 1 MB."""
    raw = os.environ.get(SIZE_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_MAX_SPEC_BYTES
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if limit < 1:
        raise SpecError([Diagnostic(Loc(SIZE_VARIABLE, 1, 1), f"must be a positive whole number of bytes, got {raw!r}")])
    return limit


def printable(text: str) -> str:
    """A name as a message may show it: control characters written as escapes (\\x1b), never raw."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def megabytes(n: int, exact: bool = False) -> str:
    """A byte count in decimal megabytes, '54.0 MB' (with exact=True, for limits: '1 MB'); under 0.1 MB in bytes."""
    if n < 100_000:
        return f"{n:,} bytes"
    return f"{n / 1e6:g} MB" if exact else f"{n / 1e6:.1f} MB"


def read_text(path: str | os.PathLike[str]) -> str:
    """The UTF-8 text of a regular file of at most max_spec_bytes(); raises FileProblem otherwise, reading no more than the cap."""
    limit = max_spec_bytes()
    try:
        _check_kind(os.stat(path), limit)
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise FileProblem(_os_problem(exc)) from None
    except ValueError:  # os.stat refuses a name with a NUL character
        raise FileProblem("no such file (the name holds a NUL character)") from None
    try:
        _check_kind(os.fstat(fd), limit)  # the file opened may not be the one stat saw
        data = _read_at_most(fd, limit + 1)
    except OSError as exc:
        raise FileProblem(_os_problem(exc)) from None
    finally:
        os.close(fd)
    if len(data) > limit:  # it grew after stat, or stat does not know its size (/proc)
        raise FileProblem(f"is larger than the {megabytes(limit, exact=True)} a spec file may have (set {SIZE_VARIABLE} to raise it)")
    return decode(data)


def read_spec_text(path: str | os.PathLike[str], name: str | None = None) -> str:
    """As read_text, with problems as a SpecError located in the file (shown as `name`)."""
    try:
        return read_text(path)
    except FileProblem as exc:
        raise SpecError([Diagnostic(Loc(str(path) if name is None else name, exc.line, exc.col), exc.message)]) from None


def read_spec(path: str | os.PathLike[str]) -> tuple[str, str]:
    """(text, display name) of a spec file, read with the bounds above; problems become a located SpecError."""
    name = str(path)
    return read_spec_text(path, name), name


def source_text(path: str | os.PathLike[str]) -> str:
    """The text of a file for quoting its lines under an error; '' if it cannot be read as a spec."""
    try:
        return read_text(path)
    except (FileProblem, SpecError):
        return ""


def decode(data: bytes) -> str:
    """UTF-8 text; an undecodable byte is a FileProblem at its line and column."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        start = exc.start
        line = data.count(b"\n", 0, start) + 1
        col = len(data[data.rfind(b"\n", 0, start) + 1 : start].decode("utf-8")) + 1
        raise FileProblem(f"not UTF-8 text (byte 0x{data[start]:02x}: {exc.reason})", line, col, in_text=True) from None


def special_kind(path: str | os.PathLike[str]) -> str | None:
    """'a FIFO', 'a character device', ... for a file that reading would block on or never finish; None for a regular
    file, a directory or a missing path (their readers say what is wrong)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    return None if stat.S_ISREG(mode) or stat.S_ISDIR(mode) else _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def _check_kind(info: os.stat_result, limit: int) -> None:
    kind = _KINDS.get(stat.S_IFMT(info.st_mode))
    if not stat.S_ISREG(info.st_mode):
        raise FileProblem(f"is {kind}, not a spec file" if kind else "is not a regular file, so not a spec file")
    if info.st_size > limit:
        size, cap = megabytes(info.st_size), megabytes(limit, exact=True)
        if info.st_size < 1.1 * limit:  # "1.0 MB is larger than the 1 MB": give the bytes
            size, cap = f"{info.st_size:,} bytes", f"{limit:,} bytes"
        raise FileProblem(f"{size} is larger than the {cap} a spec file may have (set {SIZE_VARIABLE} to raise it)")


def _read_at_most(fd: int, size: int) -> bytes:
    chunks: list[bytes] = []
    left = size
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _os_problem(exc: OSError) -> str:
    if exc.errno == errno.ENOENT:
        return "no such file"
    if exc.errno == errno.ELOOP:
        return "cannot read: a loop of symbolic links"
    if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
        return "cannot read: no data ready (not a regular file?)"
    return f"cannot read: {exc.strerror or exc}"
