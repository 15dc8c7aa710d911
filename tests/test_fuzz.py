"""The front end under a mutation fuzzer (issue 15): every mutant of a zoo spec loads, or fails as located one-line errors.

tests/fuzz.py is the fuzzer (`python tests/fuzz.py --cases 5000 --seed N`, `make fuzz`); tests/data/fuzz/ keeps the
minimized cases it found, each with a `# fuzz:` header naming the failure it showed when it was found.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from netdsl.errors import Diagnostic, Loc, SpecError
from tests.fuzz import (
    CASE_SECONDS,
    FUZZ_DATA,
    Case,
    _Timeout,
    check_file,
    cpu_limit,
    ddmin,
    fuzz,
    keep_regression,
    known_signatures,
    make_case,
    memory_limit,
    regression_files,
    run_case,
    unlocated_reason,
)
from tests.fuzz_mutations import Context, truncate

SEED = 15  # the number; any fixed seed keeps the suite deterministic
CASES = 300


def test_regression_cases_are_kept() -> None:
    assert regression_files(), f"no minimized cases in {FUZZ_DATA}"
    for path in regression_files():
        assert path.read_bytes().startswith(b"# fuzz: "), f"{path.name} lacks its '# fuzz:' header"


@pytest.mark.parametrize("path", regression_files(), ids=lambda p: p.name)
def test_regression_case_is_located(path: Path) -> None:
    """A case the fuzzer once minimized now loads, or fails with located one-line errors, within the time limit."""
    with memory_limit():
        outcome = check_file(path)
    assert not outcome.failed, f"{path.name}: {outcome.signature}: {outcome.message}"


def test_seeded_mutants_are_located() -> None:
    """CASES mutants of the zoo (fixed seed): no traceback, hang, memory bomb or unlocated error.

    A failure of a new class is minimized and written to tests/data/fuzz/ (the summary names the file), to be kept.
    """
    report = fuzz(CASES, SEED, write=True, minimize_seconds=20)
    assert report.cases == CASES
    assert not report.failures, report.summary()


def test_cases_are_reproducible() -> None:
    """A case depends on the seed and its index only, so a failure can be replayed alone (`--case N --seed S`)."""
    first, again, other = make_case(SEED, 7), make_case(SEED, 7), make_case(SEED, 8)
    assert (first.source, first.files, first.ops) == (again.source, again.files, again.ops)
    assert first.files != other.files
    assert first.ops, "a case applies at least one mutation"


def test_truncation_keeps_a_cut_character_as_raw_bytes() -> None:
    text = "name: é" * 40
    cuts = {truncate(text, random.Random(i), Context("yaml", [], [])) for i in range(200)}
    raw = [c for c in cuts if c is not None and c.encode("utf-8", "surrogateescape")[-1:] == b"\xc3"]
    assert raw, "some cut falls inside the two bytes of 'é'"
    assert all(c is not None and c.encode("utf-8", "surrogateescape") == text.encode()[: len(c.encode("utf-8", "surrogateescape"))] for c in cuts)


def test_unlocated_errors_are_told_apart(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("netdsl: 1\nname: x\n")
    allowed, texts = {str(spec.resolve())}, dict[str, str]()

    def reason(loc: Loc, message: str = "bad") -> str:
        return unlocated_reason(SpecError([Diagnostic(loc, message)]), allowed, texts)

    assert reason(Loc(str(spec), 2, 3)) == ""
    assert reason(Loc(str(spec), 3, 1)) == "", "the empty line after the final newline is a place too (end of file)"
    assert reason(Loc(str(spec), 4, 1)) == "line out of range"
    assert reason(Loc(str(spec), 0, 1)) == "line out of range"
    assert reason(Loc(str(spec), 1, 0)) == "column out of range"
    assert reason(Loc(str(spec), 1, 99)) == "column out of range"
    assert reason(Loc("train.data.split", 1, 1)) == "located in a file that is neither the spec nor a library"
    assert reason(Loc(str(spec), 1, 1), "two\nlines") == "message of several lines"
    assert reason(Loc(str(spec), 1, 1), "bad 'x\x1b[31m'") == "raw control character U+001B in the message"
    assert reason(Loc(str(spec), 1, 1), " ") == "empty message"
    assert unlocated_reason(SpecError([]), allowed, texts) == "SpecError without diagnostics"


def test_cpu_limit_stops_a_busy_loop() -> None:
    began = time.monotonic()
    with pytest.raises(_Timeout), cpu_limit(0.2):
        while True:
            pass
    assert time.monotonic() - began < CASE_SECONDS


def test_ddmin_finds_the_two_units_that_matter() -> None:
    calls = []

    def fails(units: list[str]) -> bool:
        calls.append(units)
        return "c" in units and "h" in units

    assert ddmin(list("abcdefghijklmnop"), fails, time.monotonic() + 10) == ["c", "h"]
    assert len(calls) < 100


def test_a_failure_is_minimized_and_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A traceback (a stand-in loader that divides by zero on 'BOOM') is cut down to its line and written with its header."""
    from netdsl.graph import load as load_module

    real_load = load_module.load

    def load_with_a_bug(path: Path) -> object:
        if "BOOM" in Path(path).read_text():
            raise ZeroDivisionError("stand-in bug")
        return real_load(path)

    monkeypatch.setattr(load_module, "load", load_with_a_bug)
    text = "netdsl: 1\nname: x\ninput: 3x8x8\nlayers:\n  - relu\n  - conv: {out: 4, name: BOOM}\n  - relu\n"
    case = Case(3, "specs/x.yaml", {"x.yaml": text}, "x.yaml", ["change_value"])
    work = tmp_path / "work"
    work.mkdir()
    outcome = run_case(case, work)
    assert (outcome.kind, outcome.where.split(" ")[0]) == ("traceback", "ZeroDivisionError")
    kept = keep_regression(case, outcome, 9, work, 10, out=tmp_path / "kept")
    assert kept.read_text() == (
        f"# fuzz: {outcome.signature}\n# ZeroDivisionError: stand-in bug\n"
        "# from specs/x.yaml, seed 9 case 3 (change_value); minimized; `python tests/fuzz.py --case 3 --seed 9`\nBOOM"
    )
    assert known_signatures(tmp_path / "kept") == {outcome.signature: kept}
