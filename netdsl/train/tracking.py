"""Per-epoch metric logs (train.log): metrics.csv/jsonl always, TensorBoard event files and MLflow runs on request.

tensorboard and mlflow are optional (pip install 'netdsl[tracking]') and imported only by the callback that uses them.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import re
import socket
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from netdsl.errors import Diagnostic, Loc, SpecError
from netdsl.train.callbacks import Callback, RunInfo

REMOTE_SCHEMES = ("http", "https")
MLFLOW_ARTIFACTS = ("curves.png", "best.safetensors", "resolved.yaml", "results.json")
MLFLOW_STATUS = {"finished": "FINISHED", "interrupted": "KILLED", "failed": "FAILED"}
MLFLOW_HTTP_DEFAULTS = {  # MLflow's own defaults retry for minutes before giving up; and it prints a "View run" line to stdout
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
PROBE_SECONDS = 2.0
LAST_EPOCH_TAG = "netdsl.last_epoch"  # the last epoch whose row is in the MLflow run: a resumed run logs what follows it


def numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def with_row(row: dict[str, Any], history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The history including `row` (the loop appends the row before calling on_epoch; tolerate a caller that does not)."""
    return history if history and history[-1].get("epoch") == row.get("epoch") else [*history, row]


def batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class CsvLog(Callback):
    """metrics.csv and metrics.jsonl in the run directory, rewritten from the full history after every epoch."""

    def on_start(self, info: RunInfo) -> None:
        self.run = info.run

    def on_epoch(self, row: dict[str, Any], history: list[dict[str, Any]]) -> None:
        from netdsl.train.run import write_metrics

        write_metrics(self.run, with_row(row, history))


def tensorboard_tag(key: str) -> str:
    """train_loss -> loss/train, val_accuracy -> accuracy/val, test_mae -> mae/test: TensorBoard groups a metric's splits in one section."""
    for split in ("train", "val", "test"):
        if key.startswith(split + "_"):
            return f"{key[len(split) + 1 :]}/{split}"
    return f"system/{key}" if key in ("time", "samples_per_s", "rss_mb") else key


class TensorBoardLog(Callback):
    """Event files in <run>/tensorboard: every numeric field of an epoch's row at step = epoch, test metrics at the last epoch.

    Tags group a metric's splits (loss/train, loss/val, loss/test); lr stays lr; time, samples_per_s, rss_mb go under system/.
    The Custom Scalars tab overlays train and val of each metric. A resumed run purges the steps after its checkpoint.
    """

    def __init__(self) -> None:
        self.writer: Any = None
        self.logged = 0  # the last epoch written
        self.layout = False

    def on_start(self, info: RunInfo) -> None:
        from torch.utils.tensorboard import SummaryWriter

        resumed = info.start_epoch > 0 or info.start_step > 0
        # steps from start_epoch + 1 on, left by the interrupted run, are hidden: the resumed run writes them again
        self.writer = SummaryWriter(str(info.run / "tensorboard"), purge_step=info.start_epoch + 1 if resumed else None)
        self.logged = info.start_epoch

    def on_epoch(self, row: dict[str, Any], history: list[dict[str, Any]]) -> None:
        for r in with_row(row, history):
            if r["epoch"] > self.logged:
                for key, value in r.items():
                    if key != "epoch" and numeric(value):
                        self.writer.add_scalar(tensorboard_tag(key), value, global_step=r["epoch"])
                self.logged = r["epoch"]
        if not self.layout:
            metrics = sorted({k.split("_", 1)[1] for k in row if k.startswith(("train_", "val_"))})
            self.writer.add_custom_scalars({"train vs val": {m: ["Multiline", [f"{m}/train", f"{m}/val"]] for m in metrics}})
            self.layout = True
        self.writer.flush()

    def on_end(self, state: str, results: dict[str, Any], history: list[dict[str, Any]]) -> None:
        if self.writer is None:
            return
        step = history[-1]["epoch"] if history else 0
        for key, value in results.items():
            if key.startswith("test_") and key != "test_samples" and numeric(value):  # a count, not a curve
                self.writer.add_scalar(tensorboard_tag(key), value, global_step=step)
        self.writer.close()
        self.writer = None


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """Nested mappings as dotted keys (train.optimizer.lr); other values as strings, lists and numbers in JSON."""
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for key, sub in value.items():
            out.update(flatten(sub, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value if isinstance(value, str) else json.dumps(value, default=str)}


def param_key(key: str) -> str:
    """A dotted key as MLflow accepts it: letters, digits, _ - . : / and spaces, at most 250 characters."""
    return re.sub(r"[^\w\-. :/]", "_", key)[:250]


def shown_uri(uri: str) -> str:
    """The URI without a user:password part, for messages."""
    parts = urllib.parse.urlsplit(uri)
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]).geturl() if "@" in parts.netloc else uri


def unreachable(uri: str) -> str | None:
    """Why an http(s) tracking server cannot be reached (a plain socket connect, 2 s), or None when it answers."""
    parts = urllib.parse.urlsplit(uri)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        socket.create_connection((parts.hostname or "localhost", port), timeout=PROBE_SECONDS).close()
    except (OSError, ValueError) as exc:
        return (getattr(exc, "strerror", None) or str(exc) or type(exc).__name__).strip()
    return None


def experiment_id_for(client: Any, name: str, artifact_location: str | None) -> str:
    """The id of the experiment `name`, created if need be (runs started together may race to create it)."""
    from mlflow.exceptions import MlflowException

    if (found := client.get_experiment_by_name(name)) is not None:
        return str(found.experiment_id)
    try:
        return str(client.create_experiment(name, artifact_location=artifact_location))
    except MlflowException:
        if (found := client.get_experiment_by_name(name)) is None:
            raise
        return str(found.experiment_id)


class MlflowLog(Callback):
    """An MLflow run per run directory: the resolved spec as params, each epoch's row as metrics (step = epoch),
    then test metrics, the status tag, the run's files as artifacts and the end status (FINISHED, KILLED, FAILED).

    Default store: sqlite:///<out>/mlflow.db with artifacts in <out>/mlartifacts. The MLflow run id is kept in
    <run>/mlflow_run_id, so a resumed run continues its MLflow run. MLflow never stops training: an unreachable
    server or any MLflow error is one `warn` line, after which this callback does nothing.
    """

    def __init__(self, warn: Callable[[str], None]) -> None:
        self.warn = warn
        self.client: Any = None
        self.run_id = ""
        self.run_url: str | None = None  # the run's page on a tracking server, for the caller to print
        self.logged = 0  # the last epoch whose row is in the MLflow run

    def on_start(self, info: RunInfo) -> None:
        self.run = info.run
        settings = info.resolved.get("train", {}).get("mlflow") or {}
        uri = settings.get("tracking_uri") or f"sqlite:///{(info.out / 'mlflow.db').resolve()}"
        if urllib.parse.urlsplit(uri).scheme in REMOTE_SCHEMES:
            for name, value in MLFLOW_HTTP_DEFAULTS.items():
                os.environ.setdefault(name, value)
            if (reason := unreachable(uri)) is not None:
                self.warn(f"warning: MLflow tracking server {shown_uri(uri)} cannot be reached ({reason}); training goes on without MLflow")
                return
        self.guard(self.start, info, uri, settings.get("experiment") or info.name)

    def guard(self, method: Callable[..., None], *args: Any) -> None:
        """Call `method`; an exception from MLflow becomes one warning and turns this callback off."""
        try:
            method(*args)
        except Exception as exc:
            self.client = None
            message = (str(exc).strip().splitlines() or [""])[0][:200]
            self.warn(f"warning: MLflow logging failed ({type(exc).__name__}: {message}); training goes on without MLflow")

    def start(self, info: RunInfo, uri: str, experiment: str) -> None:
        for name in ("mlflow.store.db.utils", "alembic"):  # INFO lines about creating and migrating the database
            logging.getLogger(name).setLevel(logging.WARNING)
        from mlflow.entities import Param, RunTag
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH

        from netdsl.atomic import write_text

        client = MlflowClient(tracking_uri=uri)
        # a server chooses its own artifact store; a local store keeps them in <out>/mlartifacts (MLflow would use ./mlruns)
        local = urllib.parse.urlsplit(uri).scheme not in REMOTE_SCHEMES
        experiment_id = experiment_id_for(client, experiment, (info.out / "mlartifacts").resolve().as_uri() if local else None)
        id_file = info.run / "mlflow_run_id"
        logged: dict[str, str] = {}
        try:
            run = client.get_run(id_file.read_text().strip()) if id_file.exists() else None
        except MlflowException:
            run = None  # not in this store (another tracking URI): start a new MLflow run
        if run is not None:
            client.update_run(run.info.run_id, status="RUNNING")
            logged, self.logged = run.data.params, min(int(run.data.tags.get(LAST_EPOCH_TAG, 0)), info.start_epoch)
        else:
            tags = {"netdsl.run_dir": str(info.run.resolve()), "netdsl.spec": info.name}
            run = client.create_run(experiment_id, run_name=info.run.name, tags=tags)
            write_text(id_file, run.info.run_id + "\n")
        self.client, self.run_id = client, run.info.run_id
        if urllib.parse.urlsplit(uri).scheme in REMOTE_SCHEMES:
            self.run_url = f"{shown_uri(uri).rstrip('/')}/#/experiments/{run.info.experiment_id}/runs/{self.run_id}"
        params = {param_key(key): value[:MAX_PARAM_VAL_LENGTH] for key, value in flatten(info.resolved).items()}
        new = [Param(k, v) for k, v in params.items() if k not in logged]
        for chunk in batches(new, MAX_PARAMS_TAGS_PER_BATCH):
            client.log_batch(self.run_id, params=chunk)
        if changed := [k for k, v in params.items() if k in logged and logged[k] != v]:  # MLflow params are immutable
            client.log_batch(self.run_id, tags=[RunTag("netdsl.changed_on_resume", ", ".join(changed)[:5000])])

    def on_epoch(self, row: dict[str, Any], history: list[dict[str, Any]]) -> None:
        if self.client is not None:
            self.guard(self.log_rows, [r for r in with_row(row, history) if r["epoch"] > self.logged])

    def log_rows(self, rows: list[dict[str, Any]]) -> None:
        from mlflow.entities import Metric, RunTag
        from mlflow.utils.validation import MAX_METRICS_PER_BATCH

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, int(r["epoch"])) for r in rows for k, v in r.items() if k != "epoch" and numeric(v)]
        for chunk in batches(metrics, MAX_METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=chunk)
        if rows:
            self.client.log_batch(self.run_id, tags=[RunTag(LAST_EPOCH_TAG, str(rows[-1]["epoch"]))])
            self.logged = rows[-1]["epoch"]

    def on_end(self, state: str, results: dict[str, Any], history: list[dict[str, Any]]) -> None:
        if self.client is not None:
            self.guard(self.finish, state, results, history)
        self.client = None

    def finish(self, state: str, results: dict[str, Any], history: list[dict[str, Any]]) -> None:
        from mlflow.entities import Metric, RunTag

        step = int(history[-1]["epoch"]) if history else 0
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, step) for k, v in results.items() if numeric(v)]
        self.client.log_batch(self.run_id, metrics=metrics, tags=[RunTag("status", state)])
        for name in MLFLOW_ARTIFACTS:
            if (self.run / name).is_file():
                self.client.log_artifact(self.run_id, str(self.run / name))
        self.client.set_terminated(self.run_id, status=MLFLOW_STATUS.get(state, "FAILED"))


PACKAGES = {"tensorboard": ("tensorboard",), "mlflow": ("mlflow", "sqlalchemy", "alembic")}  # sqlalchemy, alembic: the local SQLite store


def installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def check_log_targets(log: list[str], tracking_uri: str | None = None) -> None:
    """A one-line error per train.log target whose package is missing (found without importing it), before any training."""
    problems = []
    for target in log:
        needed = PACKAGES.get(target, ())
        if target == "mlflow" and tracking_uri and urllib.parse.urlsplit(tracking_uri).scheme in REMOTE_SCHEMES:
            needed = ("mlflow",)  # a tracking server keeps the database
        if missing := [p for p in needed if not installed(p)]:
            names = ", ".join(f"'{p}'" for p in missing)
            what = f"the package {names}, which is" if len(missing) == 1 else f"the packages {names}, which are"
            problems.append(Diagnostic(Loc("train.log", 1, 1), f"log: {target} needs {what} not installed; pip install 'netdsl[tracking]'"))
    if problems:
        raise SpecError(problems)


def build_loggers(log: list[str], warn: Callable[[str], None]) -> list[Callback]:
    """The loggers train.log asks for: CsvLog always, first; then TensorBoardLog and MlflowLog in that order."""
    loggers: list[Callback] = [CsvLog()]
    if "tensorboard" in log:
        loggers.append(TensorBoardLog())
    if "mlflow" in log:
        loggers.append(MlflowLog(warn))
    return loggers
