"""Hostile and clumsy spec files (issue 15): devices, FIFOs, huge files, bad bytes, control characters and imports
that leave the spec's folder — each refused with one located line and exit 2, quickly and in little memory."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import netdsl
from netdsl.errors import SpecError
from netdsl.lang.files import DEFAULT_MAX_SPEC_BYTES, FileProblem, read_text, source_text
from netdsl.lang.imports import builtin_libraries
from tests.conftest import PEAK_RSS_CHILD, peak_rss_mb

ROOT = Path(__file__).resolve().parent.parent
LIB = "netdsl: 1\nblocks:\n  twice:\n    params: {c: null}\n    layers: [conv: {out: c, k: 1}, conv: {out: c, k: 1}]\n"
OUTSIDE = "imports read only that folder and below, the built-in libraries and the folders in NETDSL_PATH"

# The bounds for every hostile case: one located line within 2 s and under 300 MB RSS. CPU time is checked
# against 2 s (the wall clock of a 2-core machine shared by the test workers is not the program's); the wall clock
# only catches a hang (a FIFO that blocks, /dev/zero read whole).
MAX_CPU_S, MAX_RSS_MB, HANG_S = 2.0, 300, 20.0


def check_bounded(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    """`netdsl check ARGS` in a child process: (exit status, stderr), asserting the issue's time and memory bounds."""
    err = cwd / ".stderr"
    with err.open("wb") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-c", PEAK_RSS_CHILD, "check", *args],
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env={**os.environ, **(env or {}), "NETDSL_TEST_PEAK_RSS": str(cwd / ".peak_rss")},
        )
    start = time.monotonic()
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)  # this child's own rusage, not every child's of the worker
        if pid:
            break
        if time.monotonic() - start > HANG_S:
            child.kill()
            child.wait()
            pytest.fail(f"netdsl check {' '.join(args)} hung for more than {HANG_S} s")
        time.sleep(0.01)
    child.returncode = os.waitstatus_to_exitcode(status)  # wait4 reaped it: keep Popen from waiting again
    assert usage.ru_utime + usage.ru_stime < MAX_CPU_S, f"{usage.ru_utime + usage.ru_stime:.2f} s of CPU"
    assert peak_rss_mb(cwd / ".peak_rss") < MAX_RSS_MB, f"{peak_rss_mb(cwd / '.peak_rss'):.0f} MB RSS"
    return child.returncode, err.read_text()


def spec(imports: str = "[lib.yaml]", use: str = "twice: {c: 5}") -> str:
    return f"netdsl: 1\nname: t\ninput: 3x4x4\nimport: {imports}\nlayers:\n  - {use}\n"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """tmp/proj/net.yaml imports from its own folder; tmp/outside/lib.yaml lies outside it."""
    (tmp_path / "proj").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "lib.yaml").write_text(LIB)
    return tmp_path / "proj"


def errors(cli, *args: str) -> list[str]:
    code, _, err = cli("check", *args)
    assert code == 2 and "Traceback" not in err, err
    return err.splitlines()


# ---- the spec file itself ----------------------------------------------------------------------------------------


def test_a_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "net.yaml")
    assert check_bounded("net.yaml", cwd=tmp_path) == (2, "net.yaml:1:1: is a FIFO, not a spec file\n")


@pytest.mark.parametrize(("name", "device"), [("zero.yaml", "/dev/zero"), ("random.net", "/dev/urandom")])
def test_a_link_to_a_device_is_refused(tmp_path, name, device):
    (tmp_path / name).symlink_to(device)
    assert check_bounded(name, cwd=tmp_path) == (2, f"{name}:1:1: is a character device, not a spec file\n")


def test_a_54_mb_spec_is_refused_from_its_size_without_reading_it(tmp_path):
    with (tmp_path / "big.yaml").open("wb") as f:  # sparse: 54 MB long, nothing written
        f.truncate(54_000_000)
    assert check_bounded("big.yaml", cwd=tmp_path) == (
        2,
        "big.yaml:1:1: 54.0 MB is larger than the 1 MB a spec file may have (set NETDSL_MAX_SPEC_BYTES to raise it)\n",
    )


def test_a_50_mb_net_file_is_refused_the_same_way(tmp_path):
    (tmp_path / "big.net").write_bytes(b"relu\n" * 10_000_000)
    assert check_bounded("big.net", cwd=tmp_path) == (
        2,
        "big.net:1:1: 50.0 MB is larger than the 1 MB a spec file may have (set NETDSL_MAX_SPEC_BYTES to raise it)\n",
    )


def test_the_size_limit_can_be_raised_and_must_be_a_number(tmp_path, monkeypatch, cli):
    path = tmp_path / "long.yaml"
    path.write_text("netdsl: 1\nname: t\ninput: 3x4x4\nlayers: [relu]\n" + "# padding\n" * (DEFAULT_MAX_SPEC_BYTES // 10))
    size = path.stat().st_size  # just over the limit: bytes, not "1.0 MB is larger than the 1 MB"
    assert errors(cli, str(path)) == [
        f"{path}:1:1: {size:,} bytes is larger than the 1,000,000 bytes a spec file may have (set NETDSL_MAX_SPEC_BYTES to raise it)"
    ]
    monkeypatch.setenv("NETDSL_MAX_SPEC_BYTES", "2000000")
    assert netdsl.load(path).output_shape == (3, 4, 4)
    monkeypatch.setenv("NETDSL_MAX_SPEC_BYTES", "64")
    assert errors(cli, str(path)) == [f"{path}:1:1: 1.0 MB is larger than the 64 bytes a spec file may have (set NETDSL_MAX_SPEC_BYTES to raise it)"]
    monkeypatch.setenv("NETDSL_MAX_SPEC_BYTES", "4 MB")
    assert errors(cli, str(path)) == ["NETDSL_MAX_SPEC_BYTES:1:1: must be a positive whole number of bytes, got '4 MB'"]


def test_a_file_that_stat_calls_empty_is_read_no_further_than_the_limit(monkeypatch):
    monkeypatch.setenv("NETDSL_MAX_SPEC_BYTES", "8")  # /proc files are regular files of size 0 whatever they hold
    with pytest.raises(FileProblem, match=r"^is larger than the 8 bytes a spec file may have"):
        read_text("/proc/self/status")


def test_a_directory_a_missing_file_and_a_link_loop(tmp_path, cli):
    (tmp_path / "dir.yaml").mkdir()
    (tmp_path / "a.yaml").symlink_to(tmp_path / "b.yaml")
    (tmp_path / "b.yaml").symlink_to(tmp_path / "a.yaml")
    assert errors(cli, str(tmp_path / "dir.yaml")) == [f"{tmp_path / 'dir.yaml'}:1:1: is a directory, not a spec file"]
    assert errors(cli, str(tmp_path / "none.yaml")) == [f"{tmp_path / 'none.yaml'}:1:1: no such file"]
    assert errors(cli, str(tmp_path / "a.yaml")) == [f"{tmp_path / 'a.yaml'}:1:1: cannot read: a loop of symbolic links"]


def test_a_bad_byte_is_located_at_its_line_and_column(tmp_path, cli):
    path = tmp_path / "net.yaml"
    path.write_bytes(b'netdsl: 1\nname: "\xc3\xa9\xff"\n')  # an é (two bytes, one column) before the bad byte
    assert errors(cli, str(path)) == [f"{path}:2:9: not UTF-8 text (byte 0xff: invalid start byte)"]


@pytest.mark.parametrize(("char", "where"), [("\x1b", "2:10"), ("\x00", "2:10")])
def test_a_control_character_in_yaml_is_one_line_at_its_place(tmp_path, cli, char, where):
    path = tmp_path / "net.yaml"
    path.write_text(f'netdsl: 1\nname: "é€{char}x"\ninput: 3x4x4\nlayers: [relu]\n')  # multi-byte characters before it: columns count characters
    assert errors(cli, str(path)) == [f"{path}:{where}: control character U+{ord(char):04X} is not allowed in YAML text (remove it)"]


def test_a_lone_surrogate_from_python_is_located_not_a_traceback():
    with pytest.raises(SpecError, match=r"^t.yaml:2:8: character U\+D800 is not allowed in YAML text \(remove it\)$"):
        netdsl.load_text("netdsl: 1\nname: t\ud800\n", "t.yaml")  # libyaml encodes the text to UTF-8 first and fails there


def test_a_syntax_error_at_the_end_of_a_file_without_a_final_newline_is_on_its_last_line(tmp_path, cli):
    path = tmp_path / "net.yaml"
    path.write_text("netdsl: 1\nlayers: [relu,\n  conv")  # libyaml reports the end of the stream on a line 4 that does not exist
    assert errors(cli, str(path)) == [f"{path}:3:7: YAML syntax error: did not find expected ',' or ']'"]


def test_fmt_and_convert_read_through_the_same_bounds(tmp_path, cli):
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    code, _, err = cli("fmt", str(tmp_path / "zero.yaml"))
    assert code == 2 and err == f"{tmp_path / 'zero.yaml'}:1:1: is a character device, not a spec file\n"
    code, _, err = cli("convert", str(tmp_path / "zero.yaml"))
    assert code == 2 and err == f"{tmp_path / 'zero.yaml'}:1:1: is a character device, not a spec file\n"


def test_source_excerpts_never_read_a_device():
    assert source_text("/dev/zero") == "" and source_text("/nonexistent/x.yaml") == ""


# ---- imports -----------------------------------------------------------------------------------------------------


def test_paths_resolve_relative_to_the_importing_file(project):
    (project / "sub").mkdir()
    (project / "sub" / "other.yaml").write_text(LIB)
    (project / "sub" / "lib.yaml").write_text(
        "netdsl: 1\nimport: [./other.yaml]\nblocks:\n  thrice:\n    params: {c: null}\n    layers: [twice: {c: c}, relu]\n"
    )
    (project / "net.yaml").write_text(spec("[sub/lib.yaml]", "thrice: {c: 5}"))
    assert netdsl.load(project / "net.yaml").output_shape == (5, 4, 4)


@pytest.mark.parametrize("how", ["dotdot", "absolute", "link"])
def test_imports_outside_the_spec_folder_are_refused(project, cli, how):
    target = project.parent / "outside" / "lib.yaml"
    name = {"dotdot": "../outside/lib.yaml", "absolute": str(target), "link": "lib.yaml"}[how]
    if how == "link":
        (project / "lib.yaml").symlink_to(target)
    (project / "net.yaml").write_text(spec(f"[{name}]"))
    assert errors(cli, str(project / "net.yaml")) == [
        f"{project / 'net.yaml'}:4:10: block library '{name}' is outside the spec's folder {project} (it resolves to {target}); {OUTSIDE}"
    ]


def test_a_search_path_allows_a_folder(project, cli, monkeypatch):
    (project / "net.yaml").write_text(spec("[lib.yaml]"))  # not beside the spec: found in the search path
    assert netdsl.load(project / "net.yaml", library_path=[project.parent / "outside"]).output_shape == (5, 4, 4)
    monkeypatch.setenv("NETDSL_PATH", os.pathsep.join(["/nonexistent", str(project.parent / "outside")]))
    code, out, _ = cli("check", str(project / "net.yaml"))
    assert code == 0 and out.endswith("output 5x4x4)\n")
    (project / "net.yaml").write_text(spec("[../outside/lib.yaml]"))
    assert netdsl.load(project / "net.yaml").output_shape == (5, 4, 4)


def test_a_linked_etc_passwd_is_refused_and_not_quoted(project):
    (project / "lib.yaml").symlink_to("/etc/passwd")
    (project / "net.yaml").write_text(spec())
    code, err = check_bounded("net.yaml", cwd=project)
    assert (code, err) == (2, f"net.yaml:4:10: block library 'lib.yaml' is outside the spec's folder {project} (it resolves to /etc/passwd); {OUTSIDE}\n")


def test_a_library_that_is_not_a_mapping_is_not_quoted(project, cli):
    (project / "lib.yaml").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (project / "net.yaml").write_text(spec())
    assert errors(cli, str(project / "net.yaml")) == [f"{project / 'lib.yaml'}:1:1: a block library must be a mapping with keys netdsl, blocks; got a string"]


def test_unreadable_libraries_are_located_at_the_import(project, cli):
    (project / "loop.yaml").symlink_to(project / "loop2.yaml")
    (project / "loop2.yaml").symlink_to(project / "loop.yaml")
    (project / "huge.yaml").write_bytes(b"#" * 1_500_000)
    (project / "dir.yaml").mkdir()
    (project / "net.yaml").write_text(spec("[loop.yaml, huge.yaml, dir.yaml, none.yaml]"))
    at = f"{project / 'net.yaml'}:4"
    assert errors(cli, str(project / "net.yaml")) == [
        f"{at}:10: cannot read block library 'loop.yaml': a loop of symbolic links",
        f"{at}:21: cannot read block library 'huge.yaml': 1.5 MB is larger than the 1 MB a spec file may have (set NETDSL_MAX_SPEC_BYTES to raise it)",
        f"{at}:32: cannot read block library 'dir.yaml': is a directory, not a spec file",
        f"{at}:42: cannot read block library 'none.yaml': no such file",
    ]


def test_a_fifo_or_device_through_import_is_refused_without_blocking(project):
    os.mkfifo(project / "fifo.yaml")
    (project / "zero.net").symlink_to("/dev/zero")
    (project / "net.yaml").write_text(spec("[fifo.yaml, zero.net]"))
    code, err = check_bounded("net.yaml", cwd=project)
    assert (code, err.splitlines()) == (
        2,
        [
            "net.yaml:4:10: cannot read block library 'fifo.yaml': is a FIFO, not a spec file",
            f"net.yaml:4:21: block library 'zero.net' is outside the spec's folder {project} (it resolves to /dev/zero); {OUTSIDE}",
        ],
    )


def test_a_non_utf8_library_is_located_in_the_library(project, cli):
    (project / "lib.yaml").write_bytes(b"netdsl: 1\nblocks:\n  tw\xffice: {}\n")
    (project / "net.yaml").write_text(spec())
    assert errors(cli, str(project / "net.yaml")) == [f"{project / 'lib.yaml'}:3:5: not UTF-8 text (byte 0xff: invalid start byte)"]


def test_imports_that_are_not_strings_and_chains_too_deep(project, cli):
    (project / "net.yaml").write_text(spec("[3, [a]]", "relu"))
    assert errors(cli, str(project / "net.yaml")) == [
        f"{project / 'net.yaml'}:4:10: 'import' must be a string; got 3",
        f"{project / 'net.yaml'}:4:13: 'import' must be a string; got ['a']",
    ]
    for i in range(40):  # lib0 imports lib1 ... lib39
        (project / f"lib{i}.yaml").write_text(f"netdsl: 1\nimport: [lib{i + 1}.yaml]\nblocks: {{}}\n" if i < 39 else "netdsl: 1\nblocks: {}\n")
    (project / "net.yaml").write_text(spec("[lib0.yaml]", "relu"))
    assert errors(cli, str(project / "net.yaml")) == [f"{project / 'lib31.yaml'}:2:10: block library 'lib32.yaml': imports nest more than 32 deep"]


def test_the_zoo_imports_still_load():
    assert netdsl.load(ROOT / "specs" / "resnet50.yaml").output_shape == (1000,)
    assert netdsl.load(ROOT / "specs" / "googlenet.net").output_shape == (1000,)


def test_errors_are_spec_errors_in_python(tmp_path):
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    with pytest.raises(SpecError, match=r"zero.yaml:1:1: is a character device, not a spec file$"):
        netdsl.load(tmp_path / "zero.yaml")


def test_import_names_with_control_characters_are_escaped_in_messages(project, cli):
    (project / "net.yaml").write_text(spec('["a\\0.yaml", "b\\e.yaml", "c\\e"]', "relu"))  # YAML escapes: a NUL and two ESCs
    at = f"{project / 'net.yaml'}:4"
    assert errors(cli, str(project / "net.yaml")) == [
        f"{at}:10: cannot read block library 'a\\x00.yaml': no such file (the name holds a NUL character)",
        f"{at}:22: cannot read block library 'b\\x1b.yaml': no such file",
        f"{at}:34: unknown block library 'c\\x1b' (built-in: {', '.join(builtin_libraries())}; or a .yaml or .net path)",
    ]


def test_a_nul_in_a_net_string_is_shown_escaped(tmp_path, cli):
    path = tmp_path / "net.net"
    path.write_text('netdsl: 1\nname: "a\x00"\ninput: 3x4x4\nrelu\n')
    assert errors(cli, str(path)) == [f'{path}:2:7: bad string "a\\x00": source code string cannot contain null bytes']
