"""Training faults lose nothing (issue 15): kill -9 at any moment, disk full, damaged checkpoints, a second writer,
a changed architecture on resume, Ctrl-C in start-up and in the final writes, `netdsl eval` that cannot write its picture."""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from netdsl.errors import SpecError
from netdsl.train.api import train
from netdsl.train.checkpoint import load_checkpoint
from tests.conftest import ROOT
from tests.test_train import TINY, quiet

pytestmark = pytest.mark.usefixtures("one_thread")  # short trainings on the 2 shared CI cores


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def status(run: Path) -> dict[str, Any]:
    return json.loads((run / "status.json").read_text())


def temp_files(run: Path) -> list[str]:
    return sorted(p.name for p in run.iterdir() if p.name.endswith(".tmp"))


def only_run(parent: Path) -> Path:
    (run,) = [p for p in parent.iterdir() if p.is_dir()]
    return run


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_kill_9_at_random_moments_then_resume_is_bitwise_equal(tmp_path):
    # tests/kill_resume.py: one run killed at a random moment of its training, one killed inside a file write
    # (`python tests/kill_resume.py --kills 20` is the full experiment); each resumed to the end and compared
    from tests.kill_resume import kill_and_resume

    lines: list[str] = []
    equal, outcomes = kill_and_resume(2, seed=1, workdir=tmp_path, small=True, say=lines.append)
    assert equal == 2, "\n".join(lines)
    assert "inside write" in outcomes[0].how and "into training" in outcomes[1].how
    assert lines[-1].startswith("2/2 bitwise equal (1 killed inside a file write)")


class Killed(BaseException):
    """Stands for kill -9 at a chosen moment: nothing after it runs (not even the handlers that mark a run failed...
    except the BaseException one, which the resume does not read)."""


def test_a_kill_between_last_pt_and_best_pt_loses_nothing(tiny, tmp_path, monkeypatch):
    straight = train(tiny, out=tmp_path / "straight", log=quiet)
    import netdsl.train.loop as loop

    real = loop.save_checkpoint
    order: list[str] = []

    def save(path: Path, state: Any) -> None:
        order.append(path.name)
        if path.name == "best.pt" and order.count("best.pt") == 2:
            raise Killed  # last.pt of this epoch is on disk; best.pt and best.safetensors are not
        real(path, state)

    monkeypatch.setattr(loop, "save_checkpoint", save)
    with pytest.raises(Killed):
        train(tiny, out=tmp_path / "killed", log=quiet)
    monkeypatch.setattr(loop, "save_checkpoint", real)
    run = only_run(tmp_path / "killed")
    assert order[:2] == ["last.pt", "best.pt"]  # the epoch goes to last.pt first
    assert load_checkpoint(run / "last.pt")["epoch"] > load_checkpoint(run / "best.pt")["epoch"]  # best.pt is behind
    train(tiny, resume=run, log=quiet)
    assert status(run)["state"] == "finished"
    for name in ("last.pt", "best.pt"):
        assert same_weights(weights(straight / name), weights(run / name)), name
    assert (straight / "best.safetensors").read_bytes() == (run / "best.safetensors").read_bytes()
    assert temp_files(run) == []


def zero(path: Path, offset: int, size: int = 4096) -> None:
    data = bytearray(path.read_bytes())
    data[offset : offset + size] = bytes(size)
    path.write_bytes(bytes(data))


def test_damaged_checkpoints_say_what_was_found(tiny, tmp_path):
    run = train(tiny, out=tmp_path, settings={"train.epochs": 1}, log=quiet)
    data = (run / "last.pt").read_bytes()

    def message(offset: int, size: int = 4096) -> str:
        path = tmp_path / f"damaged{offset}.pt"
        path.write_bytes(data)
        zero(path, offset, size)
        with pytest.raises(SpecError) as info:
            load_checkpoint(path)
        return str(info.value).removeprefix(f"{path}:1:1: ")

    # a zeroed 4 KB region: once diagnosed as "holds Python objects beyond tensors"
    assert message(0) == "checkpoint is damaged: its first bytes are zeros (overwritten)"
    assert message(len(data) // 2).startswith("checkpoint is damaged: its member archive/data/")
    assert message(len(data) // 2).endswith(" fails its CRC-32 check (overwritten bytes)")
    assert message(len(data) - 4096) == "checkpoint is damaged: not a valid zip archive (File is not a zip file; truncated or overwritten)"


def test_resume_falls_back_to_best_pt_when_last_pt_is_damaged(tiny, tmp_path):
    settings = {"train.epochs": 2}
    run = train(tiny, out=tmp_path, settings={"train.epochs": 1}, log=quiet)  # one epoch: best.pt holds what last.pt holds
    zero(run / "last.pt", len((run / "last.pt").read_bytes()) // 2)
    lines: list[str] = []
    train(tiny, resume=run, settings=settings, allow_changes=True, log=lines.append)
    assert lines[0].startswith(f"{run / 'last.pt'}: checkpoint is damaged: its member archive/data/")
    assert lines[0].endswith(" fails its CRC-32 check (overwritten bytes); resuming from best.pt (epoch 1)")
    assert status(run)["state"] == "finished" and load_checkpoint(run / "last.pt")["epoch"] == 2
    zero(run / "last.pt", 0)
    zero(run / "best.pt", 0)
    with pytest.raises(SpecError) as info:
        train(tiny, resume=run, settings=settings, log=quiet)
    assert str(info.value) == (
        f"{run}:1:1: nothing to resume: last.pt: checkpoint is damaged: its first bytes are zeros (overwritten); "
        "best.pt: checkpoint is damaged: its first bytes are zeros (overwritten)"
    )


def no_space_for(name: str) -> Any:
    """os.fsync failing with ENOSPC for temp files of `name` (a full disk shows at the write, the fsync or the close)."""
    real = os.fsync

    def fsync(fd: int) -> None:
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(f".{name}."):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    return fsync


def test_disk_full_writing_last_pt_is_one_line_marks_the_run_failed_and_resumes(tiny, tmp_path, cli, monkeypatch):
    straight = train(tiny, out=tmp_path / "straight", log=quiet)
    monkeypatch.setattr(os, "fsync", no_space_for("last.pt"))
    code, _out, err = cli("train", str(tiny), "--out", str(tmp_path / "full"))
    monkeypatch.undo()
    run = only_run(tmp_path / "full")
    assert code == 2
    assert err == f"{run}:1:1: cannot write last.pt: No space left on device (run marked failed; continue with --resume {run} once there is room)\n"
    assert status(run)["state"] == "failed" and status(run)["reason"] == "cannot write last.pt: No space left on device"
    assert temp_files(run) == [] and not (run / "last.pt").exists() and not (run / "best.pt").exists()
    code, _out, err = cli("train", str(tiny), "--resume", str(run))
    assert (code, err) == (2, f"{run}:1:1: nothing to resume: no last.pt; no best.pt\n")  # the first epoch's checkpoint was never written

    monkeypatch.setattr(os, "fsync", no_space_for("best.pt"))  # epoch 1's last.pt is written, its best.pt is not
    code, _out, err = cli("train", str(tiny), "--out", str(tmp_path / "full2"))
    monkeypatch.undo()
    run = only_run(tmp_path / "full2")
    assert (code, err) == (
        2,
        f"{run}:1:1: cannot write best.pt: No space left on device (run marked failed; continue with --resume {run} once there is room)\n",
    )
    code, _out, err = cli("train", str(tiny), "--resume", str(run))
    assert (code, err) == (0, "")
    assert same_weights(weights(straight / "last.pt"), weights(run / "last.pt"))
    assert same_weights(weights(straight / "best.pt"), weights(run / "best.pt"))  # rewritten from last.pt by the resume


def test_a_file_size_limit_is_one_line_not_a_traceback(tiny, tmp_path):
    # ulimit -f: Python ignores SIGXFSZ, so a write past the limit fails with EFBIG ("File too large")
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000))  # spec, resolved, env, status fit; tiny's last.pt (95 KB) does not

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "netdsl", "train", str(tiny), "--out", str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, preexec_fn=limit
    )
    run = only_run(tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == f"{run}:1:1: cannot write last.pt: File too large (run marked failed; continue with --resume {run} once there is room)\n"
    assert status(run)["state"] == "failed" and temp_files(run) == []


def test_status_is_written_in_place_when_even_a_small_new_file_does_not_fit(tmp_path, monkeypatch):
    import netdsl.train.run as run_files
    from netdsl.atomic import WriteFailed

    run_files.write_status(tmp_path, "running", epoch=1)

    def full(path: Path, value: Any) -> None:
        raise WriteFailed(path, "No space left on device")

    monkeypatch.setattr(run_files, "write_json", full)
    assert run_files.write_status(tmp_path, "failed", "cannot write last.pt: No space left on device", epoch=1)
    assert status(tmp_path)["state"] == "failed" and status(tmp_path)["reason"] == "cannot write last.pt: No space left on device"
    with pytest.raises(WriteFailed):  # a run that cannot record that it is running does not start
        run_files.write_status(tmp_path, "running")


def test_temp_files_are_cleaned_on_start_on_resume_and_unique_per_process(tiny, tmp_path):
    run = train(tiny, out=tmp_path, settings={"train.epochs": 1}, log=quiet)
    junk = [".last.pt.99999.tmp", ".best.pt.99999.tmp", ".status.json.99999.tmp", ".best.safetensors.tmp", ".write-test"]
    for name in junk:
        (run / name).write_bytes(b"left by a killed run")
    train(tiny, resume=run, settings={"train.epochs": 2}, allow_changes=True, log=quiet)
    assert temp_files(run) == [] and not (run / ".write-test").exists()
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / ".last.pt.12345.tmp").write_bytes(b"junk")
    train(tiny, run_dir=fresh, settings={"train.epochs": 1}, log=quiet)
    assert temp_files(fresh) == []
    from netdsl.atomic import temp_name

    assert temp_name(run / "best.safetensors") == run / f".best.safetensors.{os.getpid()}.tmp"


def test_a_second_writer_is_refused_with_the_holders_pid(tiny, tmp_path):
    run = train(tiny, out=tmp_path, settings={"train.epochs": 1}, log=quiet)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import sys, time; from pathlib import Path; from netdsl.train.run import RunLock; RunLock(Path({str(run)!r})).acquire(); print('held', flush=True); time.sleep(60)",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(SpecError) as info:
            train(tiny, resume=run, settings={"train.epochs": 2}, allow_changes=True, log=quiet)
        assert str(info.value) == f"{run}:1:1: another netdsl process (PID {holder.pid}) is writing this run directory; wait for it to end, or stop it first"
    finally:
        holder.send_signal(signal.SIGKILL)  # the kernel drops the lock of a killed holder
        holder.wait()
    train(tiny, resume=run, settings={"train.epochs": 2}, allow_changes=True, log=quiet)
    assert status(run)["state"] == "finished" and load_checkpoint(run / "last.pt")["epoch"] == 2


def test_resume_with_another_architecture_names_the_tensors(tiny, tmp_path, cli):
    run = train(tiny, out=tmp_path, settings={"train.epochs": 1}, log=quiet)
    narrow = tmp_path / "narrow.yaml"
    narrow.write_text(TINY.replace("hidden, out: 32", "hidden, out: 16"))
    code, _out, err = cli("train", str(narrow), "--resume", str(run), "--allow-changes")
    assert code == 2
    assert err == (
        f"{run / 'last.pt'}:1:1: the network differs from the checkpoint's: mis-shaped 3: head.weight (expected [4, 16], got [4, 32]), "
        "hidden.bias (expected [16], got [32]), hidden.weight (expected [16, 288], got [32, 288]); --allow-changes accepts changed settings, "
        "not another architecture: start a new run (train.transfer.weights can start it from these weights)\n"
    )
    assert status(run)["state"] == "finished"  # a refused resume leaves the run as it was


def test_ctrl_c_during_start_up_marks_the_run_interrupted(tiny, tmp_path, cli, monkeypatch):
    import netdsl.train.run as run_files

    def interrupted(device: str) -> dict[str, Any]:
        raise KeyboardInterrupt

    monkeypatch.setattr(run_files, "environment", interrupted)
    code, out, err = cli("train", str(tiny), "--out", str(tmp_path))
    run = only_run(tmp_path)
    assert (code, err) == (130, "")
    assert out.splitlines()[-1] == "interrupted by SIGINT during start-up"
    assert status(run)["state"] == "interrupted" and status(run)["reason"] == "SIGINT during start-up"
    assert temp_files(run) == []


def test_ctrl_c_during_the_test_evaluation_keeps_the_curves_and_resume_finishes(tiny, tmp_path, cli, monkeypatch):
    from netdsl.train.loop import Trainer

    def interrupted(self: Trainer) -> dict[str, Any]:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "test", interrupted)
        code, out, err = cli("train", str(tiny), "--out", str(tmp_path), "--epochs", "1")
    run = only_run(tmp_path)
    assert (code, err) == (130, "")
    assert out.splitlines()[-1] == f"interrupted by SIGINT during the test evaluation; continue with --resume {run}"
    assert status(run)["reason"] == "SIGINT during the test evaluation"
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG" and not (run / "results.json").exists()
    code, out, err = cli("train", str(tiny), "--resume", str(run), "--epochs", "1")
    assert code == 0 and status(run)["state"] == "finished" and (run / "results.json").exists()


def test_ctrl_c_during_the_final_plots_completes_them_then_exits_130(tiny, tmp_path, cli, monkeypatch):
    import netdsl.train.plots as plots

    real = plots._figure_bytes

    def pressed(fig: Any) -> bytes:
        os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C while the curves are drawn
        time.sleep(0.05)
        return real(fig)

    monkeypatch.setattr(plots, "_figure_bytes", pressed)
    code, _out, err = cli("train", str(tiny), "--out", str(tmp_path), "--epochs", "1")
    run = only_run(tmp_path)
    assert (code, err) == (130, "")
    assert status(run)["state"] == "interrupted" and status(run)["reason"] == "SIGINT during the final writes (completed)"
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG" and json.loads((run / "results.json").read_text())["epochs_run"] == 1
    assert temp_files(run) == []


def test_eval_that_cannot_write_its_picture_fails_first_or_keeps_the_metrics(tiny, tmp_path, cli, monkeypatch):
    run = train(tiny, out=tmp_path, settings={"train.epochs": 1}, log=quiet)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the picture's folder should be")
    code, out, err = cli("eval", str(tiny), "--weights", str(run / "best.pt"), "--out", str(blocker / "confusion.png"))
    assert (code, out) == (2, "")  # refused before the test split is evaluated
    assert err == f"{blocker}:1:1: cannot write confusion.png: Not a directory (give --out)\n"

    from netdsl.train.evaluation import PictureNotWritten, evaluate

    def read_only(fd: int) -> None:
        raise OSError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(os, "fsync", read_only)  # the folder stops taking files while the test split is evaluated
    with pytest.raises(PictureNotWritten) as info:
        evaluate(tiny, run / "best.pt")
    monkeypatch.undo()
    assert str(info.value) == f"{run}:1:1: cannot write confusion.png: Permission denied (give --out)"
    assert info.value.result["test_samples"] == 48 and 0 <= info.value.result["test_accuracy"] <= 1  # the metrics are not lost
    assert temp_files(run) == []


def test_a_fifo_or_device_as_weights_is_refused_without_reading(tmp_path):
    # train.transfer.weights and every checkpoint reader: torch.load would wait on a FIFO forever or read /dev/zero whole
    from netdsl.train.checkpoint import load_checkpoint, weights_from_file

    os.mkfifo(tmp_path / "w.pt")
    (tmp_path / "zero.pt").symlink_to("/dev/zero")
    with pytest.raises(SpecError) as info:
        weights_from_file(tmp_path / "w.pt")
    assert str(info.value) == f"{tmp_path / 'w.pt'}:1:1: is a FIFO, not a weights file"
    with pytest.raises(SpecError) as info:
        load_checkpoint(tmp_path / "zero.pt")
    assert str(info.value) == f"{tmp_path / 'zero.pt'}:1:1: is a character device, not a checkpoint"
