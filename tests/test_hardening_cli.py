"""Every way a command can end is an exit status and one located line (issue 15, item 3): interrupts, file-system
failures and our own bugs at the CLI's guard; train settings that `netdsl check` refuses where the spec wrote them."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import netdsl.cli.main
from netdsl.cli.common import excerpt_source
from netdsl.cli.parser import build_parser

ROOT = Path(__file__).resolve().parent.parent
REPORT = "please report it at the netdsl issue tracker; rerun with --debug for the traceback"

SPEC = """\
netdsl: 1
name: t
input: 4
layers:
  - linear: {out: 2}
train:
  data:
    source: synthetic
    split: {train: 0.8, val: 0.2, test: 0.2}
"""


@pytest.fixture
def raising(monkeypatch):
    """Make `netdsl check` raise `exc` (patched into the CLI's command table)."""

    def patch(exc: BaseException) -> None:
        def command(args):
            raise exc

        monkeypatch.setitem(netdsl.cli.main.COMMANDS, "check", command)

    return patch


# ---------------------------------------------------------------- the guard in main()


def test_keyboard_interrupt_is_one_line_and_exit_130(cli, raising):
    raising(KeyboardInterrupt())
    code, out, err = cli("check", "x.yaml")
    assert (code, out, err) == (130, "", "netdsl: interrupted\n")


def test_a_real_sigint_is_the_same_one_line(cli, monkeypatch):
    def command(args):
        os.kill(os.getpid(), signal.SIGINT)  # Python's handler raises KeyboardInterrupt at the next bytecode
        time.sleep(5)
        return 0

    monkeypatch.setitem(netdsl.cli.main.COMMANDS, "check", command)
    start = time.perf_counter()
    assert cli("check", "x.yaml") == (130, "", "netdsl: interrupted\n")
    assert time.perf_counter() - start < 2


def test_internal_error_is_one_line_without_traceback(cli, raising):
    raising(RuntimeError("boom\nsecond line of the message"))
    code, out, err = cli("check", "x.yaml")
    assert (code, out) == (1, "")
    assert err == f"netdsl: internal error: RuntimeError: boom — {REPORT}\n"


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_before_or_after_the_subcommand_prints_the_traceback(cli, raising, where):
    raising(RuntimeError("boom"))
    args = ["--debug", "check", "x.yaml"] if where == "before" else ["check", "x.yaml", "--debug"]
    code, _, err = cli(*args)
    assert code == 1
    assert err.startswith("Traceback (most recent call last):\n")
    assert "RuntimeError: boom\n" in err
    assert err.endswith(f"netdsl: internal error: RuntimeError: boom — {REPORT}\n")


def test_debug_is_a_global_option_of_every_subcommand():
    parser = build_parser()
    assert parser.parse_args(["check", "a.yaml"]).debug is False
    assert parser.parse_args(["--debug", "check", "a.yaml"]).debug is True
    assert parser.parse_args(["check", "a.yaml", "--debug"]).debug is True
    assert parser.parse_args(["data", "pack", "f", "-o", "o", "--debug"]).debug is True
    assert parser.parse_args(["infer", "m.onnx", "x.npy", "--debug"]).debug is True


@pytest.mark.parametrize(
    ("code", "strerror", "reason"),
    [
        (errno.ENOSPC, "No space left on device", "no space left on the device (ENOSPC)"),
        (errno.EROFS, "Read-only file system", "the file system is read-only (EROFS)"),
        (errno.EACCES, "Permission denied", "permission denied (EACCES)"),
        (errno.EFBIG, "File too large", "the file is larger than the file-size limit (ulimit -f) (EFBIG)"),
    ],
)
def test_os_errors_that_reach_the_top_name_the_file_and_the_reason(cli, raising, code, strerror, reason):
    raising(OSError(code, strerror, "/runs/x/last.pt"))
    assert cli("check", "x.yaml") == (2, "", f"/runs/x/last.pt:1:1: {reason}\n")


def test_an_os_error_of_a_rename_names_its_target(cli, raising):
    raising(OSError(errno.ENOSPC, "No space left on device", "/runs/x/.last.pt.123.tmp", None, "/runs/x/last.pt"))
    assert cli("check", "x.yaml") == (2, "", "/runs/x/last.pt:1:1: no space left on the device (ENOSPC)\n")


def test_an_os_error_shows_control_characters_of_the_name_escaped(cli, raising):
    raising(OSError(errno.ENOSPC, "No space left on device", "/runs/\x1b[31mx"))
    assert cli("check", "x.yaml") == (2, "", "/runs/\\x1b[31mx:1:1: no space left on the device (ENOSPC)\n")


def test_an_os_error_without_a_file(cli, raising):
    raising(OSError(errno.EIO, "Input/output error"))
    assert cli("check", "x.yaml") == (2, "", "netdsl: input/output error (EIO)\n")


def test_convert_into_a_folder_is_one_line(cli, tmp_path):
    spec = tmp_path / "t.yaml"
    spec.write_text(SPEC.replace("0.8", "0.6"))
    folder = tmp_path / "out"
    folder.mkdir()
    assert cli("convert", str(spec), "-o", str(folder)) == (2, "", f"{folder}:1:1: is a folder (EISDIR)\n")


def test_out_of_memory_is_one_line(cli, raising):
    raising(MemoryError())
    code, out, err = cli("check", "x.yaml")
    assert (code, out) == (2, "")
    assert err == "netdsl: out of memory (MemoryError): the spec or the inputs need more memory than this machine gives the process\n"


def test_torch_running_out_of_memory_is_not_an_internal_error(cli, raising):
    # the message torch 2.13 raised for `netdsl export lenet5.yaml --batch 100000000` before --batch was bounded
    message = "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to allocate 409600000000 bytes."
    raising(RuntimeError(message))
    assert cli("check", "x.yaml") == (2, "", f"netdsl: out of memory: {message}\n")


def test_broken_pipe_in_a_command_is_quiet(cli, raising):
    raising(BrokenPipeError(errno.EPIPE, "Broken pipe"))
    assert cli("check", "x.yaml") == (0, "", "")


def test_a_reader_that_stops_early_gets_no_error(tmp_path):
    """`netdsl schema | head -c 100`: the schema (~250 KB) outgrows the pipe, the write fails, nothing is said."""
    child = subprocess.Popen([sys.executable, "-m", "netdsl", "schema"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    assert child.stdout is not None and child.stderr is not None
    assert child.stdout.read(100).startswith(b"{")
    child.stdout.close()
    err = child.stderr.read()
    assert (child.wait(timeout=30), err) == (0, b"")


# ---------------------------------------------------------------- options out of range


@pytest.mark.parametrize(("flag", "value"), [("--width", "-1"), ("--width", "nan"), ("--depth-mult", "inf"), ("--depth-mult", "0")])
@pytest.mark.parametrize("command", ["summarize", "check", "expand", "train"])
def test_multipliers_must_be_finite_and_positive(cli, spec_file, command, flag, value):
    spec = spec_file(SPEC.replace("0.8", "0.6"))
    shown = f"{float(value):g}"
    assert cli(command, str(spec), flag, value) == (2, "", f"{flag}: {flag} must be a finite number > 0, got {shown}\n")


@pytest.mark.parametrize("value", ["inf", "nan", "0"])
def test_bench_time_must_be_finite_and_positive(cli, value):
    # refused before the model is opened: --time inf would time forever
    assert cli("bench", "m.onnx", "--time", value) == (2, "", f"--time: --time must be a finite number of seconds > 0; got {float(value):g}\n")


def test_a_fixed_export_batch_that_no_memory_holds_is_refused(cli, spec_file, tmp_path):
    spec = spec_file(SPEC.replace("input: 4", "input: 1x32x32").replace("linear", "flatten: {}\n  - linear"))
    code, _, err = cli("export", str(spec), "--batch", "100000000", "-o", str(tmp_path / "t.onnx"))
    assert (code, err) == (2, "--batch: --batch 100000000: one batch of 1x32x32 float32 inputs takes 381.47 GiB; at most 4.00 GiB\n")
    assert not (tmp_path / "t.onnx").exists()


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--nnodes", "0"], "--nnodes: --nnodes must be >= 1, got 0"),  # it trained on one machine before
        (["--node-rank", "1"], "--node-rank: --node-rank must be 0 .. 0 with --nnodes 1, got 1"),
    ],
)
def test_machine_counts_are_checked_on_one_machine_too(cli, spec_file, tmp_path, args, line):
    spec = spec_file(SPEC.replace("0.8", "0.6"))
    assert cli("train", str(spec), "--out", str(tmp_path / "runs"), *args) == (2, "", line + "\n")
    assert not (tmp_path / "runs").exists()


def test_convert_to_an_empty_file_name(cli, spec_file):
    spec = spec_file(SPEC)
    assert cli("convert", str(spec), "-o", "") == (2, "", "--output: -o/--output needs a file name, e.g. -o model.net\n")


@pytest.mark.parametrize("kind", ["fifo", "device"])
@pytest.mark.parametrize("command", ["eval", "predict", "export"])
def test_weights_that_are_a_fifo_or_a_device_are_refused_not_waited_on(cli, spec_file, tmp_path, command, kind):
    # torch.load on a FIFO waits for a writer forever; on /dev/zero it reads until memory runs out
    spec = spec_file(SPEC.replace("0.8", "0.6"))
    weights = "/dev/zero"
    if kind == "fifo":
        weights = str(tmp_path / "w.pt")
        os.mkfifo(weights)
    args = {"eval": [], "predict": [str(tmp_path / "x.npy")], "export": ["-o", str(tmp_path / "t.onnx")]}[command]
    what = "a FIFO" if kind == "fifo" else "a character device"
    assert cli(command, str(spec), *args, "--weights", weights) == (2, "", f"{weights}:1:1: is {what}, not a weights file\n")


# ---------------------------------------------------------------- train settings in `netdsl check`


def test_check_refuses_split_fractions_over_1_at_the_split_key(cli, spec_file):
    spec = spec_file(SPEC)
    start = time.perf_counter()
    code, out, err = cli("check", str(spec))
    assert time.perf_counter() - start < 2
    assert (code, out) == (2, "")
    assert err == f"{spec}:9:5: the fractions (train 0.8, val 0.2, test 0.2) add up to 1.2, more than the whole data set\n"


def test_check_accepts_fractions_up_to_1(cli, spec_file):
    spec = spec_file(SPEC.replace("0.8", "0.6"))
    assert cli("check", str(spec)) == (0, f"{spec}: ok (10 params, 8 MACs, output 2)\n", "")


def test_check_locates_a_split_given_with_set_at_set(cli, spec_file):
    spec = spec_file(SPEC.replace("0.8", "0.6"))
    code, _, err = cli("check", str(spec), "--set", "train.data.split.train=0.9")
    assert (code, err) == (2, "--set train.data.split.train=0.9: the fractions (train 0.9, val 0.2, test 0.2) add up to 1.3, more than the whole data set\n")


@pytest.mark.parametrize("command", ["train", "eval"])
def test_train_and_eval_refuse_the_split_where_check_does(cli, spec_file, tmp_path, command):
    spec = spec_file(SPEC)
    out = tmp_path / "runs"
    args = ["--out", str(out)] if command == "train" else ["--weights", str(tmp_path / "w.pt")]
    code, _, err = cli(command, str(spec), *args)
    assert (code, err) == (2, f"{spec}:9:5: the fractions (train 0.8, val 0.2, test 0.2) add up to 1.2, more than the whole data set\n")
    assert not out.exists()  # refused before a run directory was made


@pytest.mark.parametrize(
    ("data", "where", "message"),
    [
        ("    source: npz\n", "9:5", "source 'npz' needs data.path"),
        ("    source: digits\n    test_path: t.npz\n", "10:5", "val_path/test_path need source image_folder, npz, npy or csv, not 'digits'"),
        ("    source: digits\n    normalize: imagenet\n", "10:5", "imagenet statistics are for 3-channel images; the spec's input has 1"),
        ("    source: digits\n    normalize: {mean: [0.5, 0.5], std: [1, 1]}\n", "10:5", "mean and std need 1 value(s), one per input channel"),
        (
            "    source: webdataset\n",
            "9:5",
            "source webdataset needs train.data.urls, the training shards, e.g. 'shards/train-{000000..000019}.tar' (netdsl data pack writes them)",
        ),
    ],
)
def test_check_makes_the_data_settings_checks_that_need_no_data(cli, spec_file, data, where, message):
    spec = spec_file(SPEC.split("  data:\n")[0].replace("input: 4", "input: 1x8x8").replace("linear", "flatten: {}\n  - linear") + "  data:\n" + data)
    code, _, err = cli("check", str(spec))
    assert (code, err) == (2, f"{spec}:{where}: {message}\n")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("source: shapes", "source shapes draws images of at least 8 x 8 (C x H x W); the spec's input is 4"),
        ("source: image_folder\n    path: photos", "image_folder needs an image input (C x H x W); the spec's input is 4"),
        ("source: webdataset\n    urls: 'a-{0..3}.tar'", "webdataset needs an image input (C x H x W); the spec's input is 4"),
    ],
)
def test_check_refuses_a_source_that_cannot_fill_the_input(cli, spec_file, data, message):
    spec = spec_file(SPEC.replace("source: synthetic", data).replace("0.8", "0.6"))
    code, _, err = cli("check", str(spec))
    assert (code, err) == (2, f"{spec}:8:5: {message}\n")


def test_check_with_train_settings_imports_no_torch(spec_file):
    spec = spec_file(SPEC)
    code = f"import sys; from netdsl.cli.main import main; rc = main(['check', {str(spec)!r}]); assert 'torch' not in sys.modules; sys.exit(rc)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.endswith("add up to 1.2, more than the whole data set\n")


# ---------------------------------------------------------------- the source line under an error


def test_the_excerpt_reads_only_small_regular_files(tmp_path):
    small = tmp_path / "s.yaml"
    small.write_text("a: 1\n")
    big = tmp_path / "big.yaml"
    with big.open("wb") as f:
        f.truncate(5 << 20)  # sparse: 5 MB, over the 4 MB excerpt limit
    assert excerpt_source(str(small)) == "a: 1\n"
    assert excerpt_source(str(big)) == ""
    assert excerpt_source("/dev/zero") == ""  # a device: reading it would never end
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert excerpt_source(str(fifo)) == ""  # opening a FIFO would block
    assert excerpt_source("--set") == ""
