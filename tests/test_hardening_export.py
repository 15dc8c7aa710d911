"""netdsl export under faults (issue 15): Ctrl-C, SIGTERM and kill -9 mid-export, disk full, a file-size limit, and both
exporters failing. Each ends as one line (or an interrupt), leaves the target as it was and no temporary folder behind."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import resource
import signal
import subprocess
import sys
import time

import pytest
import torch

import netdsl
from netdsl.deploy import export_guard
from netdsl.deploy import onnx as onnx_backend
from netdsl.deploy.export_guard import remove_stale_partials
from netdsl.deploy.onnx import export
from tests.onnx_registry import shared_onnx_registry  # noqa: F401 (an autouse fixture)

torch.set_num_threads(1)

TINY = """netdsl: 1
name: tiny
input: 1x12x12
layers:
  - conv: {name: conv, out: 4, k: 3, p: 1}
  - relu
  - flatten
  - linear: {name: head, out: 3}
"""
OLD = b"an earlier export"  # what the target held before: every failed export must leave it so


@pytest.fixture
def tiny(spec_file):
    return spec_file(TINY, "tiny.yaml")


@pytest.fixture
def target(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(OLD)
    return path


def untouched(folder, target) -> bool:
    """The target holds what it held, and the folder holds nothing but the spec and the target (no .partial folder)."""
    return target.read_bytes() == OLD and sorted(p.name for p in folder.iterdir()) == ["m.onnx", "tiny.yaml"]


def dynamo_only(monkeypatch, failure) -> None:
    """torch.onnx.export runs `failure()` in place of the dynamo exporter; the TorchScript exporter stays real."""
    real_export = torch.onnx.export

    def export_(*args, **kwargs):
        if kwargs.get("dynamo"):
            return failure()
        return real_export(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", export_)


def wrapped_interrupt():
    """What torch.onnx's capture strategies make of a Ctrl-C: they catch Exception, so a cleanup that fails while the
    KeyboardInterrupt unwinds turns it into an ordinary error (a TorchExportError), which used to start the fallback."""
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        raise RuntimeError("Failed to export the model with torch.export") from None  # `from None` hides, not drops, __context__


def swallowed_signal():
    """A real SIGINT whose KeyboardInterrupt the exporter catches and replaces, leaving no trace in the chain."""
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # the handler runs at the next bytecode: this is not reached
    except BaseException:
        pass
    raise RuntimeError("capture failed")


def test_ctrl_c_wrapped_by_the_exporter_is_an_interrupt_not_a_fallback(tiny, target, tmp_path, monkeypatch):
    dynamo_only(monkeypatch, wrapped_interrupt)
    said: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        export(netdsl.load(tiny), target, log=said.append)
    assert said == []  # no "falling back to the TorchScript exporter"
    assert untouched(tmp_path, target)


def test_ctrl_c_swallowed_by_the_exporter_is_still_an_interrupt(tiny, target, tmp_path, monkeypatch):
    dynamo_only(monkeypatch, swallowed_signal)
    said: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        export(netdsl.load(tiny), target, log=said.append)
    assert said == []
    assert untouched(tmp_path, target)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the export's own handler is gone again


def test_ctrl_c_lost_in_a_finalizer_still_stops_the_export(tiny, target, tmp_path, capsys, monkeypatch):
    # Python drops (and prints) an exception raised in a __del__ or weakref callback, and the export would go on to the end
    real_export = torch.onnx.export

    class Finalized:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)

    def export_(*args, **kwargs):
        Finalized()
        return real_export(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", export_)
    with pytest.raises(KeyboardInterrupt):
        export(netdsl.load(tiny), target, verify=False)
    assert capsys.readouterr().err == ""  # no "Exception ignored in: ... KeyboardInterrupt" traceback
    assert untouched(tmp_path, target)


def test_a_signal_seen_by_an_outer_export_survives_an_inner_one():
    with export_guard.signals_as_exceptions():
        handler = signal.getsignal(signal.SIGINT)
        assert handler is not signal.default_int_handler
        with contextlib.suppress(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        with export_guard.signals_as_exceptions():  # e.g. an export called by a step of another
            assert signal.getsignal(signal.SIGINT) == handler
        with pytest.raises(KeyboardInterrupt), export_guard.signals_deferred():
            pass
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_cli_ctrl_c_during_the_dynamo_export_exits_130(tiny, target, tmp_path, cli, monkeypatch):
    dynamo_only(monkeypatch, wrapped_interrupt)
    assert cli("export", str(tiny), "-o", str(target)) == (130, "", "netdsl: interrupted\n")
    assert untouched(tmp_path, target)


def test_cli_ctrl_c_during_verification_leaves_the_target(tiny, target, tmp_path, cli, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(onnx_backend, "compare", interrupted)
    code, stdout, stderr = cli("export", str(tiny), "-o", str(target))
    assert (code, stdout, stderr) == (130, "onnx.checker (full check): ok\n", "netdsl: interrupted\n")
    assert untouched(tmp_path, target)


def test_sigterm_mid_export_removes_the_partial_folder(tiny, target, tmp_path, monkeypatch):
    def terminated():
        # without the export's handler SIGTERM would end pytest itself: refuse to send it then
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN), "export installed no SIGTERM handler"
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)

    dynamo_only(monkeypatch, terminated)
    with pytest.raises(SystemExit) as info:
        export(netdsl.load(tiny), target)
    assert info.value.code == 128 + signal.SIGTERM
    assert untouched(tmp_path, target)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_both_exporters_failing_is_one_line(tiny, target, tmp_path, cli, monkeypatch):
    def fails(*args, **kwargs):
        raise RuntimeError(("no dynamo" if kwargs.get("dynamo") else "no torchscript") + "\nsecond line")

    monkeypatch.setattr(torch.onnx, "export", fails)
    code, stdout, stderr = cli("export", str(tiny), "-o", str(target))
    assert code == 2
    assert stdout == "the dynamo exporter failed (RuntimeError: no dynamo); falling back to the TorchScript exporter\n"
    assert stderr == (
        f"{tiny}:1:1: cannot export to ONNX: the dynamo exporter failed (RuntimeError: no dynamo) "
        "and so did the TorchScript exporter (RuntimeError: no torchscript)\n"
    )
    assert untouched(tmp_path, target)


def test_disk_full_is_one_located_line(tiny, target, tmp_path, cli, monkeypatch):
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(onnx_backend.onnx, "save_model", no_space)
    code, _, stderr = cli("export", str(tiny), "-o", str(target))
    assert (code, stderr) == (2, f"{target}:1:1: cannot write {target}: No space left on device; nothing written\n")
    assert untouched(tmp_path, target)


def in_child(run, timeout: float = 120.0) -> tuple[int, dict]:
    """Fork, run `run()` in the child (it returns a JSON-able dict) and return the child's exit status and that dict.

    A fork shares this process's torch and its ONNX registry, so the child exports in about a second."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 0
        try:
            os.close(read)
            result = run()
            os.write(write, json.dumps(result).encode())
        except BaseException as exc:
            os.write(write, json.dumps({"child raised": repr(exc)}).encode())
            status = 3
        finally:
            os._exit(status)
    os.close(write)
    deadline = time.monotonic() + timeout
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"the child export did not end within {timeout} s")
        time.sleep(0.05)
    with os.fdopen(read, "rb") as f:
        text = f.read()
    return os.waitstatus_to_exitcode(done[1]), json.loads(text or b"{}")


def test_file_size_limit_is_one_located_line(tiny, target, tmp_path):
    # `ulimit -f 4`: the tiny model's ONNX file (about 7 kB) cannot be written; SIGXFSZ would kill the process unless
    # the export ignores it, and the write then fails with EFBIG
    def run() -> dict:
        from netdsl.cli.main import main

        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        stderr = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(stderr):
            code = main(["export", str(tiny), "-o", str(target)])
        return {"code": code, "stderr": stderr.getvalue()}

    status, result = in_child(run)
    assert status == 0, result  # -SIGXFSZ (-25): the limit killed the process
    assert result == {"code": 2, "stderr": f"{target}:1:1: cannot write {target}: File too large; nothing written\n"}
    assert untouched(tmp_path, target)


def test_kill_9_mid_export_leaves_a_folder_that_the_next_export_removes(tiny, target, tmp_path, monkeypatch):
    def stuck(*args, **kwargs):
        time.sleep(60)  # the child is killed while it builds the model: its temporary folder exists by then

    monkeypatch.setattr(onnx_backend, "_model", stuck)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        os.close(write)
        try:
            export(netdsl.load(tiny), target)
        finally:
            os._exit(3)
    os.close(read)
    os.close(write)
    deadline = time.monotonic() + 30
    while not (left := [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")]) and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert len(left) == 1 and left[0].startswith(f".m.onnx.{pid}.")  # the creator's PID in its name
    assert (tmp_path / left[0]).is_dir() and target.read_bytes() == OLD
    monkeypatch.undo()
    export(netdsl.load(tiny), target, verify=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "tiny.yaml"]
    assert target.read_bytes() != OLD


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


def test_only_stale_folders_of_the_same_target_are_removed(tmp_path):
    target = tmp_path / "m.onnx"
    dead = dead_pid()
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as alive:
        try:
            folders = {
                f".m.onnx.{dead}.abcd_123.partial": False,  # a killed export of this target: removed
                f".m.onnx.{alive.pid}.abcd_123.partial": True,  # an export still running
                f".other.onnx.{dead}.abcd_123.partial": True,  # another target's
                f".m.onnx.{dead}.partial": True,  # not our naming
                ".m.onnx.abcd_123.partial": True,  # no PID: nothing says its creator is gone
                "notes.partial": True,
            }
            for name in folders:
                (tmp_path / name).mkdir()
            (tmp_path / f".m.onnx.{dead}.abcd_124.partial").write_text("a file, not a folder we made")
            removed = remove_stale_partials(target)
            assert [p.name for p in removed] == [f".m.onnx.{dead}.abcd_123.partial"]
            for name, kept in folders.items():
                assert (tmp_path / name).is_dir() == kept, name
            assert (tmp_path / f".m.onnx.{dead}.abcd_124.partial").is_file()
        finally:
            alive.kill()


def test_the_working_folder_carries_this_process_pid(tiny, tmp_path):
    # the folder an export works in carries this process's PID, so a concurrent export of the same target keeps it
    target = tmp_path / "m.onnx"
    seen: list[str] = []
    real_check = onnx_backend.check

    def check(path):
        seen.extend(p.name for p in tmp_path.iterdir() if p.name.endswith(".partial"))
        assert remove_stale_partials(target) == []  # our own live folder is not stale
        real_check(path)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(onnx_backend, "check", check)
        export(netdsl.load(tiny), target)
    assert len(seen) == 1 and seen[0].startswith(f".m.onnx.{os.getpid()}.") and seen[0].endswith(".partial")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "tiny.yaml"]
