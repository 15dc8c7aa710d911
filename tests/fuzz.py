"""A seeded mutation fuzzer for the torch-free front end (issue 15): every outcome is fine or one located line.

Each case mutates a zoo spec (specs/*.yaml, specs/*.net, examples/) -- lines deleted, duplicated, swapped; numbers made
0, -1, huge, float, string, inf, nan; near-miss keys; unicode and control characters; truncation at a byte; indentation;
`from:` targets, block parameters, repeat counts, expressions and imports changed; sometimes a built-in block library is
copied beside the spec and mutated instead -- and runs it in-process as `netdsl check` does (netdsl.graph.load.load, then
netdsl.analysis.counts.analyze) and, when it loads, renders what `summarize` and `expand` print, under a CPU-time limit (SIGPROF)
and an address-space limit (RLIMIT_AS).

A case passes if it loads, or raises SpecError whose every diagnostic is located: its file is the spec or a library it
imports, 1 <= line <= the lines of that file, 1 <= col <= the longest line + 1, its text is one line without raw control
characters, and it is not empty. Anything else is a failure: a traceback (any other exception), a hang, a memory bomb
(MemoryError, or the peak RSS growing by more than 300 MB), an unlocated or malformed message. Failures are minimized
(delta debugging on lines, then characters) and written to tests/data/fuzz/ as regression files.

    python tests/fuzz.py --cases 5000 --seed 1        # `make fuzz`; prints mutants/s and the failure classes
    python tests/fuzz.py --case 17 --seed 1           # replay one case: its mutations, its text, its outcome
    python tests/fuzz.py --reduce tests/data/fuzz/X   # minimize a kept case further, in place

A case is reproducible from its seed and index alone. Set PYTHONPATH to another copy of the package (run from outside
the repository root) to fuzz that copy, e.g. the last commit's, to see what a change fixed.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import random
import re
import resource
import signal
import sys
import tempfile
import threading
import time
import traceback
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType

import netdsl
from netdsl.errors import Diagnostic

if __package__ in (None, ""):  # run as a script: `python tests/fuzz.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.fuzz_mutations import _IMPORT, _NAME, MUTATORS, Context, _lines, _replace

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(netdsl.__file__).resolve().parent  # the package under test (PYTHONPATH may point at another copy)
FUZZ_DATA = Path(__file__).resolve().parent / "data" / "fuzz"
CASE_SECONDS = 5.0  # CPU seconds per case: the "hang (> 5 s)"
MEMORY_HEADROOM_MB = 2048  # address space a case may add before MemoryError
RSS_BUDGET_MB = 300  # the "under 300 MB RSS": a case that grows the peak RSS by more is a memory failure
OK_KINDS = ("ok", "error")


def seed_files() -> list[Path]:
    """The specs the mutants start from: the zoo and the examples, both formats, in a fixed order."""
    found = [*ROOT.glob("specs/*.yaml"), *ROOT.glob("specs/*.net"), *ROOT.glob("examples/*.yaml"), *ROOT.glob("examples/*.net")]
    return sorted(found, key=lambda p: str(p.relative_to(ROOT)))


def builtin_library(name: str) -> Path | None:
    path = PACKAGE / "blocks" / f"{name}.yaml"
    return path if path.is_file() else None


# ---- cases -------------------------------------------------------------------------------------------------------------


@dataclass
class Case:
    """One mutant: the files of a spec (the spec first; a mutated library beside it) and the mutations applied."""

    index: int
    source: str  # the seed spec, relative to the repository
    files: dict[str, str]  # file name -> text (surrogateescape for raw bytes); the first is the spec
    target: str  # the file that was mutated
    ops: list[str] = field(default_factory=list)

    @property
    def spec(self) -> str:
        return next(iter(self.files))


_FILE_TEXT: dict[Path, str] = {}


def _read(path: Path) -> str:
    if path not in _FILE_TEXT:
        _FILE_TEXT[path] = path.read_bytes().decode("utf-8", "surrogateescape")
    return _FILE_TEXT[path]


def _context(text: str, fmt: str, donors: list[str]) -> Context:
    names = sorted({m.group(1) for m in _NAME.finditer(text)})
    return Context(fmt=fmt, names=names, donors=donors or [text])


def mutate(text: str, rng: random.Random, ctx: Context, count: int) -> tuple[str, list[str]]:
    """Apply `count` mutations drawn by weight; returns the text and the names of those that applied."""
    mutators, weights = zip(*MUTATORS)
    ops: list[str] = []
    for _ in range(count * 4):
        if len(ops) == count:
            break
        mutator = rng.choices(mutators, weights)[0]
        new = mutator(text, rng, ctx)
        if new is not None and new != text:
            text = new
            ops.append(mutator.__name__)
    return text, ops


def make_case(seed: int, index: int, sources: Sequence[Path] | None = None) -> Case:
    """The index-th mutant of a seed: reproducible on its own (its random generator depends on seed and index only)."""
    sources = list(sources or seed_files())
    rng = random.Random(f"{seed}:{index}")
    source = rng.choice(sources)
    text = _read(source)
    fmt = "net" if source.suffix == ".net" else "yaml"
    donors = [line for p in rng.sample(sources, min(4, len(sources))) if p.suffix == source.suffix for line in _lines(_read(p))]
    count = rng.choices([1, 2, 3], [6, 3, 2])[0]
    files = {source.name: text}
    imported = _IMPORT.search(text)
    library_name = re.sub(r"[\[\]\s]", "", imported.group(2)).split(",")[0] if imported else ""
    library = builtin_library(library_name) if library_name else None
    if imported is not None and library is not None and rng.random() < 0.15:  # mutate a copy of the library the spec imports, beside it
        lib_name = f"{library_name}_lib.yaml"
        files[source.name] = _replace(text, imported, 2, f"[{lib_name}]" if fmt == "yaml" else lib_name)
        lib_text = _read(library)
        mutated, ops = mutate(lib_text, rng, _context(lib_text, "yaml", _lines(lib_text)), count)
        files[lib_name] = mutated
        return Case(index, str(source.relative_to(ROOT)), files, lib_name, ops)
    mutated, ops = mutate(text, rng, _context(text, fmt, donors), count)
    files[source.name] = mutated
    return Case(index, str(source.relative_to(ROOT)), files, source.name, ops)


# ---- running a case ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What a case did: kind is ok / error (located SpecError) or a failure: traceback, hang, memory, unlocated."""

    kind: str
    where: str = ""  # the exception type and the innermost netdsl function it came from
    message: str = ""  # the first line of what it said
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return self.kind not in OK_KINDS

    @property
    def signature(self) -> str:
        """The failure class: what a minimized case must keep doing."""
        return f"{self.kind}: {self.where}" if self.where else self.kind


class _Timeout(BaseException):
    """Raised by the CPU-time alarm inside a case; a BaseException so that no `except Exception` in the code swallows it."""


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise _Timeout


@contextlib.contextmanager
def cpu_limit(seconds: float) -> Iterator[None]:
    """Raise _Timeout after `seconds` of CPU time (and 6x that of wall time, for a blocked read); main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old_prof = signal.signal(signal.SIGPROF, _on_alarm)
    old_alarm = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    signal.setitimer(signal.ITIMER_REAL, seconds * 6)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGPROF, old_prof)
        signal.signal(signal.SIGALRM, old_alarm)


def _address_space() -> int:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


@contextlib.contextmanager
def memory_limit(headroom_mb: int = MEMORY_HEADROOM_MB) -> Iterator[None]:
    """RLIMIT_AS at the current address space plus headroom, so that a memory bomb fails as MemoryError; restored after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    used = _address_space()
    if not used:
        yield
        return
    limit = used + headroom_mb * 2**20
    for bound in (soft, hard):
        if bound != resource.RLIM_INFINITY:
            limit = min(limit, bound)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _frames(tb: TracebackType | None) -> list[traceback.FrameSummary]:
    return list(traceback.extract_tb(tb)) if tb else []


def _innermost_netdsl(tb: TracebackType | None, module_only: bool = False) -> str:
    """'netdsl/lang/expr.py:visit_Call' for the innermost frame in the package (and the frame below it, when outside).

    module_only drops the function: a RecursionError stops in whichever function of the cycle hits the limit.
    """
    frames = _frames(tb)
    ours = [f for f in frames if f.filename.startswith(str(PACKAGE))]
    where = f"{Path(ours[-1].filename).relative_to(PACKAGE.parent)}" if ours else "?"
    if ours and not module_only:
        where += f":{ours[-1].name}"
    if frames and (not ours or frames[-1] is not ours[-1]):
        last = frames[-1]
        where += f" (in {Path(last.filename).name}:{last.name})"
    return where


_LINE_BREAKS = re.compile(r"\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def _line_bounds(path: Path, texts: dict[str, str]) -> tuple[int, int] | None:
    """(lines, longest line + 1) of a file a diagnostic points into; the EOF line after a final newline counts."""
    key = str(path)
    if key not in texts:
        try:
            texts[key] = path.read_bytes().decode("utf-8", "replace")
        except OSError:
            return None
    text = texts[key]
    return len(_LINE_BREAKS.split(text)), max(len(line) for line in text.split("\n")) + 1


def _bad_character(message: str) -> str:
    for ch in message:
        if ch != "\t" and (unicodedata.category(ch) in ("Cc", "Cs") or ch in "\u2028\u2029"):
            return f"U+{ord(ch):04X}"
    return ""


def unlocated_reason(exc: BaseException, allowed: set[str], texts: dict[str, str]) -> str:
    """Why a SpecError is not a set of located one-line diagnostics ('' if it is)."""
    diagnostics = getattr(exc, "diagnostics", [])
    if not diagnostics:
        return "SpecError without diagnostics"
    return next((reason for d in diagnostics if (reason := diagnostic_problem(d, allowed, texts))), "")


def diagnostic_problem(d: Diagnostic, allowed: set[str], texts: dict[str, str]) -> str:
    """What is wrong with one diagnostic's location or text ('' if nothing)."""
    text = str(d)
    if not d.message.strip():
        return "empty message"
    if len(_LINE_BREAKS.split(text)) > 1:
        return "message of several lines"
    bad = _bad_character(text)
    if bad:
        return f"raw control character {bad} in the message"
    path = Path(d.loc.file)
    if str(path.resolve()) not in allowed and not (path.suffix in (".yaml", ".yml", ".net") and path.is_file()):
        return "located in a file that is neither the spec nor a library"
    bounds = _line_bounds(path, texts)
    if bounds is None:
        return "located in a file that cannot be read"
    if not 1 <= d.loc.line <= bounds[0]:
        return "line out of range"
    if not 1 <= d.loc.col <= bounds[1]:
        return "column out of range"
    return ""


def check_spec(path: Path, render: bool = True) -> None:
    """What `netdsl check` does with a spec (load, count); with render, also what `summarize` and `expand` print."""
    from netdsl.analysis.counts import analyze
    from netdsl.graph.load import load

    graph = load(path)
    report = analyze(graph, 1)
    if render:
        from netdsl.analysis.expand import expand_text
        from netdsl.analysis.summary import render_json, render_table
        from netdsl.graph.input_sizes import input_rule

        rule = input_rule(graph)
        full = analyze(graph, None)
        render_table(full, rule)
        render_json(full, rule)
        expand_text(graph, report, str(path))


def check_file(path: Path, case_seconds: float = CASE_SECONDS, render: bool = True) -> Outcome:
    """Check one spec file as the commands do (check_spec), under the CPU-time limit, and classify what happened."""
    from netdsl.errors import SpecError

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.process_time()
    try:
        with cpu_limit(case_seconds):
            check_spec(path, render)
        outcome = Outcome("ok")
    except SpecError as exc:
        texts = {str(path): path.read_bytes().decode("utf-8", "replace")}
        allowed = {str(path.resolve())}
        reason = unlocated_reason(exc, allowed, texts)
        shown = next((str(d) for d in exc.diagnostics if diagnostic_problem(d, allowed, texts)), str(exc)) if reason else str(exc)
        first = shown.split("\n")[0][:200]
        outcome = Outcome("unlocated", f"{reason} from {_innermost_netdsl(exc.__traceback__)}", first) if reason else Outcome("error", "", first)
    except _Timeout as exc:
        where = _innermost_netdsl(exc.__traceback__).split(" (in ")[0]
        outcome = Outcome("hang", f"in {where.split(':')[0]}", f"no result after {case_seconds:g} s CPU, at {where}")
    except MemoryError as exc:
        outcome = Outcome("memory", f"MemoryError in {_innermost_netdsl(exc.__traceback__)}", f"MemoryError: {exc}")
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # anything else reached the user as a traceback
        outcome = Outcome(
            "traceback",
            f"{type(exc).__name__} in {_innermost_netdsl(exc.__traceback__, isinstance(exc, RecursionError))}",
            f"{type(exc).__name__}: {exc}"[:200],
        )
    seconds = time.process_time() - start
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024  # ru_maxrss is in KiB on Linux
    if not outcome.failed and grown_mb > RSS_BUDGET_MB:
        outcome = Outcome("memory", f"peak RSS grew by more than {RSS_BUDGET_MB} MB", f"+{grown_mb:.0f} MB; then {outcome.kind}: {outcome.message}")
    return Outcome(outcome.kind, outcome.where, outcome.message.replace("\n", " ").replace("\r", " "), seconds)


def write_files(folder: Path, files: dict[str, str]) -> Path:
    """Write a case's files into folder; returns the spec's path."""
    for name, text in files.items():
        (folder / name).write_bytes(text.encode("utf-8", "surrogateescape"))
    return folder / next(iter(files))


def run_case(case: Case, folder: Path, case_seconds: float = CASE_SECONDS, render: bool = True) -> Outcome:
    """Write the case into an empty folder and check it; the folder is emptied again after."""
    try:
        outcome = check_file(write_files(folder, case.files), case_seconds, render)
        return Outcome(outcome.kind, outcome.where, outcome.message.replace(f"{folder}/", ""), outcome.seconds)
    finally:
        for name in case.files:
            with contextlib.suppress(OSError):
                (folder / name).unlink()


# ---- minimizing and writing regressions ----------------------------------------------------------------------------


def ddmin(units: list[str], fails: Callable[[list[str]], bool], deadline: float) -> list[str]:
    """Zeller's delta debugging: a smaller list of units that still fails (1-minimal if the deadline allows)."""
    n = 2
    while len(units) >= 2 and time.monotonic() < deadline:
        chunk = -(-len(units) // n)
        parts = [units[i : i + chunk] for i in range(0, len(units), chunk)]
        for i in range(len(parts)):
            if time.monotonic() >= deadline:
                return units
            rest = [u for j, part in enumerate(parts) if j != i for u in part]
            if rest and fails(rest):
                units, n = rest, max(n - 1, 2)
                break
        else:
            if n >= len(units):
                return units
            n = min(2 * n, len(units))
    return units


def same_failure(a: Outcome, b: Outcome) -> bool:
    """Two outcomes are the same failure: the same signature, or both hangs (wherever the alarm happened to stop them)."""
    return a.signature == b.signature or a.kind == b.kind == "hang"


def minimize(case: Case, failure: Outcome, folder: Path, seconds: float, case_seconds: float = CASE_SECONDS) -> Case:
    """The mutated file cut down, by lines and then characters, while the case keeps failing the same way."""
    deadline = time.monotonic() + seconds

    def with_text(text: str) -> Case:
        return Case(case.index, case.source, {**case.files, case.target: text}, case.target, case.ops)

    def fails(text: str) -> bool:
        return same_failure(run_case(with_text(text), folder, case_seconds), failure)

    text = case.files[case.target]
    lines = ddmin(text.splitlines(keepends=True), lambda units: fails("".join(units)), deadline)
    if failure.kind == "hang" or "RecursionError" in failure.where:
        return with_text("".join(lines))  # cutting characters would shrink a count or a nesting to just past the limit
    chars = ddmin(list("".join(lines)), lambda units: fails("".join(units)), deadline)
    return with_text("".join(chars))


def _slug(signature: str, text: str) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "-", signature.replace("netdsl/", "").replace(".py", "")).strip("-").lower()
    return f"{words[:70].rstrip('-')}-{hashlib.sha1(text.encode('utf-8', 'surrogateescape')).hexdigest()[:6]}"


def known_signatures(folder: Path = FUZZ_DATA) -> dict[str, Path]:
    """Signatures of the regression files already written (from their `# fuzz:` header)."""
    found: dict[str, Path] = {}
    for path in sorted(folder.glob("*")) if folder.is_dir() else []:
        if path.is_file():
            m = re.search(r"^# fuzz: (.+)$", path.read_bytes().decode("utf-8", "replace"), re.M)
            if m:
                found[m.group(1).strip()] = path
    return found


def regression_files(folder: Path = FUZZ_DATA) -> list[Path]:
    """The minimized cases kept as regressions: the specs in tests/data/fuzz/ (libraries they import are in lib/)."""
    return sorted(p for p in folder.glob("*") if p.suffix in (".yaml", ".net")) if folder.is_dir() else []


def write_regression(case: Case, outcome: Outcome, seed: int, folder: Path = FUZZ_DATA) -> Path:
    """Write a minimized case with a comment header naming the failure; a mutated library goes to lib/ beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = Path(case.spec).suffix
    path = folder / f"{_slug(outcome.signature, case.files[case.target])}{suffix}"
    header = (
        f"# fuzz: {outcome.signature}\n"
        f"# {' '.join(_safe(outcome.message).split())[:150] or '(no message)'}\n"
        f"# from {case.source}, seed {seed} case {case.index} ({', '.join(case.ops)}); minimized; `python tests/fuzz.py --case {case.index} --seed {seed}`\n"
    )
    spec_text = case.files[case.spec]
    if len(case.files) > 1:  # the spec imports the mutated library: keep it in lib/, import it from there
        (folder / "lib").mkdir(exist_ok=True)
        lib_name = f"{path.stem}.yaml"
        spec_text = spec_text.replace(case.target, f"lib/{lib_name}")
        (folder / "lib" / lib_name).write_bytes((header + case.files[case.target]).encode("utf-8", "surrogateescape"))
    path.write_bytes((header + spec_text).encode("utf-8", "surrogateescape"))
    return path


def keep_regression(
    case: Case, outcome: Outcome, seed: int, folder: Path, minimize_seconds: float, case_seconds: float = CASE_SECONDS, out: Path = FUZZ_DATA
) -> Path:
    """Minimize a failing case (hangs are cut down under a 2 s limit, then checked at the full one) and write it."""
    small = case
    if minimize_seconds:
        small = minimize(case, outcome, folder, minimize_seconds, min(case_seconds, 2.0) if outcome.kind == "hang" else case_seconds)
        if not same_failure(run_case(small, folder, case_seconds), outcome):
            small = case
    path = write_regression(small, outcome, seed, out)
    if not same_failure(check_file(path, case_seconds), outcome):
        print(f"note: {path.name} no longer fails as '{outcome.signature}' with its header", file=sys.stderr)
    return path


def _safe(text: str) -> str:
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}" for ch in text)


# ---- the run ----------------------------------------------------------------------------------------------------------


@dataclass
class Failure:
    case: Case
    outcome: Outcome
    count: int = 1
    written: Path | None = None


@dataclass
class Report:
    cases: int = 0
    ok: int = 0
    errors: int = 0
    seconds: float = 0.0
    slowest: tuple[float, int] = (0.0, -1)
    failures: dict[str, Failure] = field(default_factory=dict)  # by signature, the first case of each

    @property
    def failed(self) -> int:
        return sum(f.count for f in self.failures.values())

    def summary(self) -> str:
        rate = self.cases / self.seconds if self.seconds else 0.0
        head = f"{self.cases} mutants in {self.seconds:.1f} s ({rate:.1f} mutants/s): {self.ok} ok, {self.errors} located errors, {self.failed} failures"
        lines = [head + f" ({len(self.failures)} classes); slowest case {self.slowest[1]}: {self.slowest[0]:.2f} s CPU"]
        for sig, f in sorted(self.failures.items(), key=lambda kv: -kv[1].count):
            lines.append(f"  {f.count:5d} x {sig}")
            lines.append(f"          e.g. case {f.case.index} ({f.case.source}: {', '.join(f.case.ops)}): {_safe(f.outcome.message)[:160]}")
            if f.written:
                lines.append(f"          minimized: {f.written.relative_to(ROOT) if f.written.is_relative_to(ROOT) else f.written}")
        return "\n".join(lines)


def fuzz(
    cases: int,
    seed: int,
    *,
    start: int = 0,
    write: bool = False,
    minimize_seconds: float = 0.0,
    case_seconds: float = CASE_SECONDS,
    memory_mb: int = MEMORY_HEADROOM_MB,
    render: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Run cases start..start+cases-1 of a seed in-process; with write=True, minimize each new failure class and keep it."""
    report = Report()
    sources = seed_files()
    known = known_signatures() if write else {}
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="netdsl-fuzz-") as tmp, memory_limit(memory_mb):
        folder = Path(tmp)
        for index in range(start, start + cases):
            case = make_case(seed, index, sources)
            outcome = run_case(case, folder, case_seconds, render)
            report.cases += 1
            report.slowest = max(report.slowest, (outcome.seconds, index))
            if outcome.kind == "ok":
                report.ok += 1
            elif outcome.kind == "error":
                report.errors += 1
            elif outcome.signature in report.failures:
                report.failures[outcome.signature].count += 1
            else:
                failure = report.failures[outcome.signature] = Failure(case, outcome)
                if progress:
                    progress(f"case {index}: {outcome.signature}")
                if write and outcome.signature not in known:
                    failure.written = known[outcome.signature] = keep_regression(case, outcome, seed, folder, minimize_seconds, case_seconds)
                elif write:
                    failure.written = known[outcome.signature]
            if progress and report.cases % 500 == 0:
                progress(f"{report.cases} cases, {report.failed} failures, {time.monotonic() - began:.0f} s")
    report.seconds = time.monotonic() - began
    return report


def reduce_file(path: Path, seconds: float, case_seconds: float = CASE_SECONDS) -> int:
    """Minimize a kept regression file further, in place (its header kept), while it fails as it does now."""
    raw = path.read_bytes().decode("utf-8", "surrogateescape")
    lines = raw.splitlines(keepends=True)
    cut = next((i + 1 for i, line in enumerate(lines[:3]) if line.startswith("# from ")), 0)
    header, body = "".join(lines[:cut]), "".join(lines[cut:])
    case = Case(0, str(path), {path.name: body}, path.name)
    with tempfile.TemporaryDirectory(prefix="netdsl-fuzz-") as tmp, memory_limit():
        folder = Path(tmp)
        outcome = run_case(case, folder, case_seconds)
        if not outcome.failed:
            print(f"{path.name}: {outcome.kind}, nothing to minimize")
            return 0
        small = minimize(case, outcome, folder, seconds, min(case_seconds, 2.0) if outcome.kind == "hang" else case_seconds)
        if not same_failure(run_case(small, folder, case_seconds), outcome):
            print(f"{path.name}: the minimized text does not fail as '{outcome.signature}'; left as it was")
            return 1
    path.write_bytes((header + small.files[path.name]).encode("utf-8", "surrogateescape"))
    print(f"{path.name}: {len(body)} -> {len(small.files[path.name])} characters, still '{outcome.signature}'")
    return 0


def replay(seed: int, index: int) -> int:
    """Print one case's mutations, its mutated file and its outcome."""
    case = make_case(seed, index)
    print(f"case {index} of seed {seed}: {case.source}, mutated {case.target}: {', '.join(case.ops)}")
    print(_safe(case.files[case.target]).replace("\\x0a", "\n"))
    with tempfile.TemporaryDirectory(prefix="netdsl-fuzz-") as tmp, memory_limit():
        outcome = run_case(case, Path(tmp))
    print(f"-> {outcome.kind} {outcome.where} {_safe(outcome.message)} ({outcome.seconds:.2f} s CPU)")
    return 1 if outcome.failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--start", type=int, default=0, help="the first case's index")
    parser.add_argument("--case", type=int, help="replay this one case and print it")
    parser.add_argument("--minimize-seconds", type=float, default=60.0, help="time to minimize each new failure class (0: keep it whole)")
    parser.add_argument("--no-write", action="store_true", help=f"write no regression files to {FUZZ_DATA.relative_to(ROOT)}")
    parser.add_argument("--case-seconds", type=float, default=CASE_SECONDS, help="CPU seconds before a case counts as a hang")
    parser.add_argument("--memory-mb", type=int, default=MEMORY_HEADROOM_MB, help="address space a case may add (RLIMIT_AS)")
    parser.add_argument("--check-only", action="store_true", help="do what `netdsl check` does, not also `summarize` and `expand`")
    parser.add_argument("--reduce", metavar="FILE", type=Path, help="minimize a kept regression file further, in place")
    args = parser.parse_args(argv)
    if args.reduce is not None:
        return reduce_file(args.reduce, args.minimize_seconds, args.case_seconds)
    if args.case is not None:
        return replay(args.seed, args.case)
    report = fuzz(
        args.cases,
        args.seed,
        start=args.start,
        write=not args.no_write,
        minimize_seconds=args.minimize_seconds,
        case_seconds=args.case_seconds,
        memory_mb=args.memory_mb,
        render=not args.check_only,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(report.summary())
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
