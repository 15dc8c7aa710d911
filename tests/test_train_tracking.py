"""Progress bars and metric logs (csv, TensorBoard, MLflow), driven directly with a fake run: no training needed."""

from __future__ import annotations

import importlib.util
import io
import os
import pty
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from netdsl.errors import SpecError
from netdsl.train.callbacks import RunInfo
from netdsl.train.plots import plot_curves
from netdsl.train.progress import ProgressBar, task
from netdsl.train.tracking import MLFLOW_HTTP_DEFAULTS, CsvLog, MlflowLog, TensorBoardLog, build_loggers, check_log_targets

RESOLVED = {"name": "tiny", "layers": [{"dense": {"out": 10}}], "train": {"optimizer": {"name": "adam", "lr": 0.001}, "epochs": 4, "mlflow": {}}}


def info(tmp_path: Path, resolved: dict | None = None, start_epoch: int = 0, start_step: int = 0) -> RunInfo:
    run = tmp_path / "runs" / "tiny-20250101-000000"
    run.mkdir(parents=True, exist_ok=True)
    return RunInfo(run, "tiny", resolved or RESOLVED, 4, 50, start_epoch, start_step, tmp_path / "runs")


def row(epoch: int, shift: float = 0.0) -> dict:
    return {
        "epoch": epoch,
        "lr": 0.001,
        "train_loss": 1.0 / epoch + shift,
        "train_accuracy": 0.5 + epoch / 10,
        "val_loss": 1.2 / epoch + shift,
        "val_accuracy": 0.45 + epoch / 10,
        "time": 1.5,
        "samples_per_s": 900.0,
        "rss_mb": 300.0,
    }


def feed(callback, epochs: range, history: list[dict], shift: float = 0.0) -> None:
    for epoch in epochs:
        history.append(row(epoch, shift))
        callback.on_epoch(history[-1], history)


def test_csv_log_rewrites_metrics_from_the_history(tmp_path):
    log, history = CsvLog(), []
    log.on_start(run := info(tmp_path))
    feed(log, range(1, 3), history)
    lines = (run.run / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,lr,train_loss") and len(lines) == 3
    assert len((run.run / "metrics.jsonl").read_text().splitlines()) == 2


def test_tensorboard_scalars_at_epoch_steps_and_a_resume_does_not_duplicate(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    first, history = TensorBoardLog(), []
    first.on_start(info(tmp_path))
    feed(first, range(1, 4), history)
    first.writer.close()  # the process dies after epoch 3; its last checkpoint is from within epoch 3
    resumed = TensorBoardLog()
    resumed.on_start(run := info(tmp_path, start_epoch=2, start_step=20))
    history = history[:2]
    feed(resumed, range(3, 5), history, shift=10.0)
    resumed.on_end("finished", {"test_loss": 0.25, "test_accuracy": 0.9, "test_samples": 100}, history)

    acc = EventAccumulator(str(run.run / "tensorboard"))
    acc.Reload()
    loss = [(e.step, round(e.value, 4)) for e in acc.Scalars("loss/train")]
    assert loss == [(1, 1.0), (2, 0.5), (3, round(1 / 3 + 10, 4)), (4, 10.25)]  # epoch 3 once, from the resumed run
    assert [e.step for e in acc.Scalars("accuracy/val")] == [1, 2, 3, 4]
    assert [(e.step, e.value) for e in acc.Scalars("loss/test")] == [(4, 0.25)]
    assert {"lr", "system/time", "system/samples_per_s", "system/rss_mb"} <= set(acc.Tags()["scalars"])
    assert "epoch" not in acc.Tags()["scalars"] and "samples/test" not in acc.Tags()["scalars"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # SQLAlchemy's, about MLflow's own queries
def test_mlflow_run_params_metrics_artifacts_status_and_resume(tmp_path, monkeypatch, capfd):
    from mlflow.tracking import MlflowClient

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    warnings: list[str] = []
    first, history = MlflowLog(warnings.append), []
    first.on_start(run := info(tmp_path))
    feed(first, range(1, 3), history)
    first.on_end("interrupted", {}, history)
    run_id = (run.run / "mlflow_run_id").read_text().strip()
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    assert client.get_run(run_id).info.status == "KILLED"

    for name in ("curves.png", "best.safetensors", "resolved.yaml", "results.json"):
        (run.run / name).write_bytes(b"x")
    changed = {**RESOLVED, "train": {**RESOLVED["train"], "epochs": 6}}
    resumed = MlflowLog(warnings.append)
    resumed.on_start(info(tmp_path, changed, start_epoch=2))
    feed(resumed, range(3, 4), history)
    resumed.on_end("finished", {"test_accuracy": 0.875, "test_samples": 100}, history)

    assert warnings == []
    assert (run.run / "mlflow_run_id").read_text().strip() == run_id
    found = client.get_run(run_id)
    assert found.info.status == "FINISHED" and found.info.run_name == run.run.name
    assert found.data.params["train.optimizer.lr"] == "0.001" and found.data.params["layers"] == '[{"dense": {"out": 10}}]'
    assert found.data.params["train.epochs"] == "4" and found.data.tags["netdsl.changed_on_resume"] == "train.epochs"
    assert found.data.tags["status"] == "finished"
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "val_loss")] == [(1, 1.2), (2, 0.6), (3, pytest.approx(0.4))]
    assert found.data.metrics["test_accuracy"] == 0.875
    assert client.get_experiment(found.info.experiment_id).name == "tiny"
    assert sorted(a.path for a in client.list_artifacts(run_id)) == ["best.safetensors", "curves.png", "resolved.yaml", "results.json"]
    assert (tmp_path / "runs" / "mlartifacts" / run_id / "artifacts" / "curves.png").is_file()
    assert list(cwd.iterdir()) == []
    assert "Creating initial MLflow database tables" not in capfd.readouterr().err


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlflow_unreachable_server_is_one_warning_and_training_goes_on(tmp_path, monkeypatch):
    for name in MLFLOW_HTTP_DEFAULTS:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)  # recorded, so the defaults the callback sets are undone after the test
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "3")
    uri = f"http://127.0.0.1:{closed_port()}"
    warnings: list[str] = []
    log, history = MlflowLog(warnings.append), []
    started = time.perf_counter()
    log.on_start(run := info(tmp_path, {**RESOLVED, "train": {"mlflow": {"tracking_uri": uri}}}))
    feed(log, range(1, 3), history)
    log.on_end("finished", {"test_accuracy": 0.5}, history)
    assert time.perf_counter() - started < 5
    assert warnings == [f"warning: MLflow tracking server {uri} cannot be reached (Connection refused); training goes on without MLflow"]
    assert not (run.run / "mlflow_run_id").exists()
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2" and os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] == "3"


def test_mlflow_error_mid_run_is_one_warning_then_off(tmp_path):
    class Broken:
        def __getattr__(self, name):
            raise RuntimeError("database is locked")

    warnings: list[str] = []
    log, history = MlflowLog(warnings.append), []
    log.client, log.run = Broken(), tmp_path
    feed(log, range(1, 3), history)
    log.on_end("finished", {}, history)
    assert warnings == ["warning: MLflow logging failed (RuntimeError: database is locked); training goes on without MLflow"]


def test_check_log_targets_names_the_missing_package(monkeypatch):
    check_log_targets(["csv", "tensorboard", "mlflow"])  # all installed here
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("tensorboard", "sqlalchemy") else real(name, *a))
    with pytest.raises(SpecError) as err:
        check_log_targets(["csv", "tensorboard", "mlflow"])
    assert str(err.value) == (
        "train.log:1:1: log: mlflow needs the package 'sqlalchemy', which is not installed; pip install 'netdsl[tracking]'\n"
        "train.log:1:1: log: tensorboard needs the package 'tensorboard', which is not installed; pip install 'netdsl[tracking]'"
    )
    check_log_targets(["mlflow"], tracking_uri="http://mlflow.example:5000")  # a server keeps the database: no sqlalchemy needed
    assert [type(c).__name__ for c in build_loggers(["mlflow", "tensorboard"], print)] == ["CsvLog", "TensorBoardLog", "MlflowLog"]
    assert [type(c).__name__ for c in build_loggers([], print)] == ["CsvLog"]


class Terminal:
    """A pseudo-terminal: `stream` is its slave end, text() what a user would have seen (escape codes removed)."""

    def __init__(self) -> None:
        self.master, slave = pty.openpty()
        self.stream = os.fdopen(slave, "w")
        self.chunks: list[bytes] = []
        self.reader = threading.Thread(target=self.drain, daemon=True)
        self.reader.start()

    def drain(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            self.chunks.append(data)

    def text(self) -> str:
        self.stream.close()
        self.reader.join(5)
        os.close(self.master)
        return b"".join(self.chunks).decode(errors="replace")


def plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def test_progress_bar_on_a_terminal_shows_metrics_rate_and_eta(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    term = Terminal()
    bar = ProgressBar(term.stream)
    bar.on_start(info(tmp_path))
    for step in range(1, 11):
        time.sleep(0.02)
        bar.on_step(0, step, step * 32, {"loss": 0.41234, "accuracy": 0.88119}, 1e-3)
    time.sleep(0.5)  # rich redraws on its own timer
    bar.on_epoch(row(1), [row(1)])
    raw = term.text()
    shown = plain(raw)
    assert re.search(r"epoch 1/4 .* 10/50 loss 0\.4123 accuracy 0\.8812 lr 1\.00e-03 [\d,]+ samples/s \d+:\d\d:\d\d ETA \d+:\d\d:\d\d", shown)
    assert "\x1b[2K" in raw[raw.rfind("samples/s") :]  # the bar is erased at the epoch's end


def test_progress_bar_resumed_starts_at_the_resume_step(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    term = Terminal()
    bar = ProgressBar(term.stream)
    bar.on_start(info(tmp_path, start_epoch=1, start_step=30))
    bar.on_step(1, 31, 32, {"loss": 0.5}, 1e-3)
    time.sleep(0.3)
    bar.on_end("interrupted", {}, [])
    shown = plain(term.text())
    assert "epoch 2/4" in shown and "31/50" in shown and " 0/50" not in shown


def test_progress_bar_on_a_pipe_prints_nothing_and_costs_little(tmp_path):
    stream = io.StringIO()
    bar = ProgressBar(stream)
    bar.on_start(info(tmp_path))
    started = time.perf_counter()
    for step in range(1, 10_001):
        bar.on_step(0, step, step * 32, {"loss": 0.5}, 1e-3)
    assert time.perf_counter() - started < 0.5  # < 50 µs a step (measured: well under 1 µs)
    bar.on_epoch(row(1), [row(1)])
    bar.on_end("finished", {}, [row(1)])
    assert stream.getvalue() == ""


def test_task_on_a_pipe_prints_one_line_when_it_took_long_enough():
    stream = io.StringIO()
    with task("listing images", 2000, stream=stream, min_seconds=0) as t:
        for _ in range(1234):
            t.advance()
    assert re.fullmatch(r"listing images: 1,234 in \d+\.\ds\n", stream.getvalue())
    quick = io.StringIO()
    with task("computing normalization statistics", None, stream=quick) as t:
        t.advance(1000)
    assert quick.getvalue() == ""  # under min_seconds (1 s): no line
    failed = io.StringIO()
    with pytest.raises(KeyError), task("packing shards", 10, stream=failed, min_seconds=0) as t:
        raise KeyError("x")
    assert failed.getvalue() == ""


def test_task_on_a_terminal_shows_a_bar_with_count(monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    term = Terminal()
    with task("listing images", 5, stream=term.stream, min_seconds=0) as t:
        t.advance(2)
        time.sleep(0.3)
    shown = plain(term.text())
    assert "listing images" in shown and "2/5" in shown and "ETA" in shown
    assert re.search(r"listing images: 2 in \d+\.\ds", shown)


def test_rich_is_not_imported_off_a_terminal():
    code = (
        "import io, sys\n"
        "from netdsl.train.progress import ProgressBar, task\n"
        "with task('x', 3, stream=io.StringIO(), min_seconds=0) as t: t.advance()\n"
        "ProgressBar(io.StringIO()).on_step(0, 1, 1, {}, 0.1)\n"
        "print('rich' in sys.modules, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False False"


def test_plot_curves_marks_the_best_epoch(tmp_path):
    history = [row(e) for e in range(1, 5)]
    plot_curves(history, tmp_path / "plain.png", "tiny")
    plot_curves(history, tmp_path / "best.png", "tiny", best_epoch=3)
    marked = (tmp_path / "best.png").read_bytes()
    assert marked.startswith(b"\x89PNG") and marked != (tmp_path / "plain.png").read_bytes()
