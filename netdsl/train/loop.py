"""The training loop: forward, loss, backward, step — seeded, resumable mid-epoch, the same on one process or many.

Everything around it is elsewhere: data (sources.py, loader.py, shards.py), device and processes (engine.py),
optimizer and schedule (optim.py), transfer learning (transfer.py), files and logs (callbacks, checkpoint.py).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import time
from pathlib import Path
from typing import Any

import torch

from netdsl.atomic import write_atomic, write_text
from netdsl.backends.pytorch import build_module
from netdsl.errors import Diagnostic, Loc, SpecError
from netdsl.ir import Graph
from netdsl.tasks import Meter, Task, make_task
from netdsl.train.augment import build_augmentation
from netdsl.train.callbacks import Callback
from netdsl.train.checkpoint import checkpoint_bytes, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from netdsl.train.engine import Engine, seed_everything, usable_cpus
from netdsl.train.optim import build_optimizer, build_scheduler
from netdsl.train.run import spec_hash
from netdsl.train.splits import Reading, SplitData, Splits
from netdsl.train.transfer import apply_transfer, freeze_norm_statistics, set_frozen

MEASURED = ("time", "samples_per_s", "rss_mb")  # per-epoch measurements of the machine, not results of the run


def resident_mb() -> float | None:
    """This process's resident memory in MiB (Linux /proc; None elsewhere), logged per epoch to show it stays flat."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


class TrainingStopped(Exception):
    """The run ended early for a reason the user should see (non-finite loss)."""


def data_workers(setting: int | str, world: int, streamed: bool) -> int:
    """DataLoader workers per process: as set, or auto: none for in-memory data, else min(8, this process's CPUs - 1), at least 1."""
    if setting != "auto":
        return int(setting)
    if not streamed:
        return 0
    return max(1, min(8, usable_cpus() // world - 1))


def share_cpus(device: torch.device, workers: int, world: int) -> None:
    """Training on the CPU with data workers: leave them their cores (torch's threads + workers <= this process's CPUs).

    Oversubscribed, torch's OpenMP threads spin while the workers decode: 2 workers on 2 cores trained at 647
    images/s with 2 torch threads and at 948 with 1 (bench/bench_data.py, workers part). OMP_NUM_THREADS, when set, wins.
    """
    if device.type != "cpu" or workers == 0 or "OMP_NUM_THREADS" in os.environ:
        return
    torch.set_num_threads(max(1, min(torch.get_num_threads(), usable_cpus() // world - workers)))


class Trainer:
    """One run: model, data, optimizer and schedule from the resolved settings; rank 0 writes into `run`."""

    def __init__(self, graph: Graph, cfg: dict[str, Any], data: Splits, engine: Engine, run: Path, resolved: dict[str, Any], base: Path) -> None:
        self.graph, self.cfg, self.data, self.engine, self.run, self.resolved = graph, cfg, data, engine, run, resolved
        self.device = engine.device
        self.task: Task = make_task(cfg, graph, data.classes)
        self.outputs = len(graph.outputs)
        self.model = build_module(graph, seed=cfg["seed"], device=self.device, all_outputs=True)  # a tuple when there are several
        seed_everything(cfg["seed"] + engine.rank)  # dropout and augmentation draw from the global generators
        self.transfer = apply_transfer(self.model, cfg.get("transfer"), graph.output, base)
        self.freeze_bn = bool(cfg.get("transfer")) and cfg["transfer"]["freeze_bn_stats"]
        self.module = engine.wrap(self.model)
        view = (1, -1, *([1] * (len(graph.input_shape) - 1)))
        self.mean = torch.tensor(data.mean, device=self.device).view(view)
        self.std = torch.tensor(data.std, device=self.device).view(view)
        self.masks = self.task.targets().kind == "mask"
        self.augment = build_augmentation(cfg["augmentation"], graph.input_shape, masks=self.masks)
        self.loss_fn = self.task.loss_fn(cfg["loss"], self.device)
        self.output_weights = output_weights(cfg["loss"], self.outputs)
        self.optimizer = build_optimizer(self.model, cfg["optimizer"])
        workers = data_workers(cfg["workers"], engine.world, data.streamed)
        share_cpus(self.device, workers, engine.world)
        self.reading = Reading(cfg["batch_size"], engine.rank, engine.world, workers, pin_memory=self.device.type == "cuda")
        self.steps_per_epoch = data.train.steps(self.reading)
        self.scheduler = build_scheduler(self.optimizer, cfg, self.steps_per_epoch)
        self.scaler = engine.scaler()
        self.epoch, self.step, self.global_step = 0, 0, 0
        self.partial: dict[str, float] = {}
        self.history: list[dict[str, Any]] = []
        self.best: float | None = None
        self.bad_epochs = 0
        self.skipped: dict[str, str] = {}  # file (or shard:key) -> why it could not be decoded
        self.stop_signal: str | None = None
        self.throughput = 0.0
        self.hash = spec_hash(resolved)
        self.callbacks: list[Callback] = []

    # -- state ------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything a resume needs; every process's RNG states (collected from all ranks: call on every rank)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "global_step": self.global_step,
            "partial": self.partial,
            "history": self.history,
            "best": self.best,
            "bad_epochs": self.bad_epochs,
            "rng": self.engine.gather_object(rng_state()),
            "data_order": {"seed": self.cfg["seed"], "epoch": self.epoch, "steps_per_epoch": self.steps_per_epoch, "world": self.engine.world},
            "spec_hash": self.hash,
        }

    def restore(self, path: Path, loaded: dict[str, Any] | None = None) -> None:
        """Continue from a checkpoint that rank 0 reads (other machines may not see its disk) and sends to every process.

        `loaded`: the checkpoint rank 0 already read (and verified) from `path`.
        """
        if self.engine.main and loaded is None:
            loaded = load_checkpoint(path)
        state = self.engine.broadcast_object(loaded if self.engine.main else None)
        self.check_architecture(path, state["model"])
        self.model.load_state_dict(state["model"])
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError) as exc:
            raise SpecError([Diagnostic(Loc(str(path), 1, 1), f"the optimizer's state does not fit this run's optimizer ({exc}); start a new run")]) from None
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step, self.global_step = state["epoch"], state["step"], state["global_step"]
        self.partial, self.history, self.best, self.bad_epochs = state["partial"], state["history"], state["best"], state["bad_epochs"]
        rngs = state["rng"] if isinstance(state["rng"], list) else [state["rng"]]  # a list per rank; one dict in older checkpoints
        if len(rngs) == self.engine.world:
            set_rng_state(rngs[self.engine.rank])
        else:  # another number of processes: the data order is kept, dropout and augmentation draw anew
            seed_everything(self.cfg["seed"] + self.engine.rank + 7919 * self.global_step)

    def check_architecture(self, path: Path, weights: dict[str, Any]) -> None:
        """A resume (--allow-changes included) continues the same network: name the tensors that differ, not a torch traceback."""
        from netdsl.backends.pytorch import check_state_dict

        problem = check_state_dict(self.model, weights)
        if problem:
            raise SpecError(
                [
                    Diagnostic(
                        Loc(str(path), 1, 1),
                        f"the network differs from the checkpoint's: {problem}; --allow-changes accepts changed settings, not another architecture: "
                        "start a new run (train.transfer.weights can start it from these weights)",
                    )
                ]
            )

    def repair_best(self, loaded: dict[str, Any]) -> bool:
        """After a kill between the end-of-epoch writes (last.pt first, then best.pt and best.safetensors): rewrite what
        the epoch's best files should hold from the same state, so that a resumed run leaves the files an unbroken one would.
        True if a file was rewritten."""
        if self.step != 0 or self.best_epoch != self.epoch or not self.engine.main:
            return False
        best, tensors = self.run / "best.pt", self.run / "best.safetensors"
        try:
            stale = load_checkpoint(best)["epoch"] != self.epoch
        except SpecError:  # missing or damaged
            stale = True
        if stale:
            save_checkpoint(best, loaded)
        if stale or not same_tensors(tensors, loaded["model"]):
            save_weights(tensors, loaded["model"])
            return True
        return False

    def save_last(self) -> None:
        state = self.state()
        if self.engine.main:
            save_checkpoint(self.run / "last.pt", state)

    # -- one epoch --------------------------------------------------------------------------------
    def prepare(self, x: torch.Tensor, y: torch.Tensor, train: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(network input, target, input before normalization): augmented (masks with their images) and, for denoising, corrupted."""
        if train and self.augment is not None and len(x):
            if self.masks:
                x, m = self.augment(x, y[:, None].float())
                y = m[:, 0].round().long()
            else:
                x = self.augment(x)
        target = self.task.target(x, y)
        if train or self.task.name == "reconstruction":
            x = self.task.corrupt(x)
        return (x - self.mean) / self.std, target, x

    def forward_loss(self, module: Any, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The main output and the loss: the weighted sum over the outputs of a multi-output network."""
        out = module(x)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        if len(outs) == 1:
            return outs[0], self.loss_fn(outs[0], target)
        loss = sum(w * self.loss_fn(o, target) for o, w in zip(outs, self.output_weights))  # weight 0 too: DDP wants every head in the graph
        return outs[0], loss  # type: ignore[return-value]

    def share(self, step: int) -> float:
        """The fraction of its accumulation group's samples that batch `step` holds (1 without accumulation).

        Weighting each batch's mean loss by it makes the group's gradient that of one batch of all its samples,
        the last, shorter group of an epoch included.
        """
        bs, n, accumulate = self.cfg["batch_size"], len(self.data.train), self.cfg["optimizer"]["accumulate"]
        first = step // accumulate * accumulate
        group = min((first + accumulate) * bs, n) - first * bs
        return (min((step + 1) * bs, n) - step * bs) / group

    def rank_share(self, step: int, local: int) -> float:
        """world x (this rank's samples / the global batch's): DDP averages gradients over ranks, so the sum is the global batch's mean."""
        total = self.data.train.global_batch(step, self.reading) if self.engine.distributed else None
        return 1.0 if total is None else self.engine.world * local / max(1, total)

    def objective(self, loss: torch.Tensor, share: float = 1.0) -> torch.Tensor:
        """The loss plus the L1 penalty, weighted by the batch's share (no extra autograd ops when neither applies)."""
        l1 = self.cfg["optimizer"]["l1"]
        if l1:
            loss = loss + l1 * sum(p.abs().sum() for p in self.model.parameters() if p.requires_grad)
        return loss * share if share != 1.0 else loss

    def set_train_mode(self) -> None:
        self.module.train()
        if self.freeze_bn:
            freeze_norm_statistics(self.model)

    def batch_on_device(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() == 1:  # a rank's empty slice of a short last batch
            x = torch.zeros(0, *self.graph.input_shape)
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def train_epoch(self) -> dict[str, float]:
        cfg = self.cfg
        accumulate = cfg["optimizer"]["accumulate"]
        tally = self.task.meter(cfg["metrics"])
        tally.merge(self.partial)
        self.set_train_mode()
        start, seen = time.perf_counter(), 0
        batches = self.data.train.batches(self.reading, epoch=self.epoch, seed=cfg["seed"], shuffle=True, start_step=self.step)
        uneven = self.engine.distributed and self.data.train.uneven
        joined: Any = self.module.join() if uneven else contextlib.nullcontext()  # type: ignore[operator]
        with joined:
            for step, (x, y, skipped) in enumerate(batches, start=self.step):
                self.skipped.update(skipped)
                x, y = self.batch_on_device(x, y)
                if len(y):
                    self.task.check_batch(y, "train.data")
                inp, target, seen_x = self.prepare(x, y, True)
                with self.engine.autocast():
                    if len(y):
                        out, loss = self.forward_loss(self.module, inp, target)
                        total = self.objective(loss, self.share(step) * self.rank_share(step, len(y)))
                    else:
                        out = self.module(inp)
                        outs = out if isinstance(out, (tuple, list)) else (out,)
                        total = sum(o.sum() for o in outs) * 0.0  # no samples here, but DDP needs this rank's (zero) gradients
                if not math.isfinite(value := float(total.detach())):
                    raise TrainingStopped(f"the loss became {value} at epoch {self.epoch + 1}, step {step + 1}; the last good checkpoint is kept")
                self.scaler.scale(total).backward()
                if (step + 1) % accumulate == 0 or step + 1 == self.steps_per_epoch:
                    self.optimizer_step()
                if len(y):
                    with torch.no_grad():
                        tally.add(loss.detach(), out.detach().float(), target, seen_x)
                self.step, self.global_step = step + 1, self.global_step + 1
                self.partial = dict(tally.sums)
                seen += len(y)
                for cb in self.callbacks:
                    cb.on_step(self.epoch, step + 1, seen, tally.result(), self.optimizer.param_groups[-1]["lr"])
                at_boundary = (step + 1) % accumulate == 0
                if uneven or not at_boundary:
                    continue
                every = cfg["checkpoint"].get("every_steps")
                if every and self.global_step % every == 0:
                    self.save_last()
                if self.should_stop() and step + 1 < self.steps_per_epoch:
                    return {}
        self.throughput = self.engine.sum({"n": float(seen)})["n"] / max(time.perf_counter() - start, 1e-9)
        return self.reduce(tally)

    def should_stop(self) -> bool:
        """A signal reached any process (all of them stop at the same step)."""
        if not self.engine.distributed:
            return self.stop_signal is not None
        return bool(self.engine.sum({"stop": float(self.stop_signal is not None)})["stop"])

    def optimizer_step(self) -> None:
        clip = self.cfg["optimizer"].get("clip_grad_norm")
        if clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.cfg["schedule"]["name"] == "onecycle":
            self.scheduler.step()

    def reduce(self, tally: Meter) -> dict[str, float]:
        return self.reduced(tally).result()

    def reduced(self, tally: Meter) -> Meter:
        """The meter's sums added over every process."""
        summed = tally.fresh()
        reduced = self.engine.sum(tally.sums)
        summed.sums = {k: reduced[k] for k in tally.sums}  # the one-process order of the keys
        return summed

    def evaluate(self, split: SplitData) -> dict[str, float]:
        """Loss and metrics over a split; each rank its share, sums reduced with the exact sample counts."""
        if len(split) == 0:
            return {}
        return self.measure(split).result()

    def measure(self, split: SplitData) -> Meter:
        """The reduced meter of a pass over a split in eval mode (details such as per-class IoU come from it)."""
        tally = self.task.meter(self.cfg["metrics"])
        if len(split) == 0:
            return tally
        self.module.eval()
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.inference_mode(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.cfg["seed"])  # the same corrupted inputs (denoising) in every evaluation, the training RNG untouched
            for x, y, skipped in split.batches(self.reading, epoch=0, seed=self.cfg["seed"], shuffle=False):
                self.skipped.update(skipped)
                if not len(y):
                    continue
                x, y = self.batch_on_device(x, y)
                self.task.check_batch(y, "train.data")
                inp, target, seen_x = self.prepare(x, y, False)
                with self.engine.autocast():
                    out, loss = self.forward_loss(self.model, inp, target)
                tally.add(loss, out.float(), target, seen_x)
        return self.reduced(tally)

    # -- the run ----------------------------------------------------------------------------------
    def fit(self, log: Any) -> str:
        """Train to the end (or early stop / signal); returns the final state: finished or interrupted."""
        cfg = self.cfg
        handlers = self.install_signals()
        try:
            while self.epoch < cfg["epochs"]:
                unfreeze = cfg.get("transfer", {}).get("unfreeze_at")
                if unfreeze and self.epoch + 1 >= unfreeze:
                    set_frozen(self.model, cfg["transfer"]["freeze"], False)
                started = time.perf_counter()
                train = self.train_epoch()
                if not train:
                    self.save_last()
                    return "interrupted"
                val = self.evaluate(self.data.val)
                row: dict[str, Any] = {"epoch": self.epoch + 1, "lr": self.optimizer.param_groups[-1]["lr"]}
                row |= {f"train_{k}": round(v, 6) for k, v in train.items()}
                row |= {f"val_{k}": round(v, 6) for k, v in val.items()}
                row |= {"time": round(time.perf_counter() - started, 3), "samples_per_s": round(self.throughput, 1)}
                if (rss := resident_mb()) is not None:
                    row["rss_mb"] = rss
                self.after_epoch(row)
                log(row)
                stop = self.should_stop()
                if stop or self.early_stop(row):
                    return "interrupted" if stop else "finished"
            return "finished"
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)

    def monitored(self, row: dict[str, Any]) -> float | None:
        """The checkpoint's monitored metric in an epoch's row (its train_ twin when there is no validation split)."""
        monitor = self.cfg["checkpoint"]["monitor"]
        value = row.get(monitor, row.get(monitor.replace("val_", "train_")))
        return None if value is None else float(value)

    @property
    def best_epoch(self) -> int | None:
        """The epoch whose weights are in best.pt (the first to reach the best monitored value)."""
        return next((int(row["epoch"]) for row in self.history if self.best is not None and self.monitored(row) == self.best), None)

    def after_epoch(self, row: dict[str, Any]) -> None:
        name = self.cfg["schedule"]["name"]
        if name == "plateau":
            self.scheduler.step(row.get("val_loss", row["train_loss"]))
        elif self.scheduler is not None and name != "onecycle":
            self.scheduler.step()
        self.history.append(row)
        self.epoch, self.step, self.partial = self.epoch + 1, 0, {}
        value = self.monitored(row)
        better = value is not None and improved(value, self.cfg["checkpoint"]["mode"], 0.0, self.best)
        if better:
            self.best = value
        state = self.state()  # on every rank (it gathers their RNG states)
        if self.engine.main:
            # last.pt first: a kill between these writes leaves the epoch in last.pt, and a resume rewrites best.pt from it (repair_best)
            data = checkpoint_bytes(state)
            save_checkpoint(self.run / "last.pt", data)
            if better:
                save_checkpoint(self.run / "best.pt", data)
                save_weights(self.run / "best.safetensors", self.model.state_dict())
            for cb in self.callbacks:
                cb.on_epoch(row, self.history)
            self.write_skipped()

    def write_skipped(self) -> None:
        if self.skipped:
            write_text(self.run / "skipped_files.txt", "".join(f"{f}\t{why}\n" for f, why in self.skipped.items()))

    def early_stop(self, row: dict[str, Any]) -> bool:
        es = self.cfg.get("early_stopping")
        if not es:
            return False
        history: list[float] = [r[es["monitor"]] for r in self.history[:-1] if r.get(es["monitor"]) is not None]
        best = (min(history) if es["mode"] == "min" else max(history)) if history else None
        value = row.get(es["monitor"])
        if value is None:
            return False
        self.bad_epochs = 0 if improved(value, es["mode"], es["min_delta"], best) else self.bad_epochs + 1
        return self.bad_epochs >= es["patience"]

    def install_signals(self) -> dict[int, Any]:
        def request_stop(signum: int, frame: Any) -> None:
            self.stop_signal = signal.Signals(signum).name

        previous: dict[int, Any] = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: no signal handling
                previous[sig] = signal.signal(sig, request_stop)
        return previous

    def test(self) -> dict[str, Any]:
        """Test-split metrics with the best weights (the last ones if no best was kept), the same weights on every process.

        Rank 0 reads best.pt after every process has finished the last epoch and sends the weights to the others.
        """
        self.engine.barrier()
        best = self.run / "best.pt"
        found = self.engine.broadcast_object(best.exists() if self.engine.main else None)
        if found:
            if self.engine.main:
                self.model.load_state_dict(load_checkpoint(best)["model"])
            self.engine.broadcast_state(self.model)
        meter = self.measure(self.data.test)
        metrics = meter.result() if len(self.data.test) else {}
        details = meter.details(self.task.classes) if len(self.data.test) else {}
        return {f"test_{k}": round(v, 6) for k, v in metrics.items()} | {"test_samples": len(self.data.test)} | {f"test_{k}": v for k, v in details.items()}


def save_weights(path: Path, weights: dict[str, torch.Tensor]) -> None:
    """A state dict as .safetensors, written atomically under a temp name of this process's own."""
    from safetensors.torch import save

    write_atomic(path, save({k: v.detach().cpu().contiguous() for k, v in weights.items()}))


def same_tensors(path: Path, weights: dict[str, torch.Tensor]) -> bool:
    """Whether a .safetensors file holds exactly these tensors (False when it is missing or unreadable)."""
    from safetensors.torch import load_file

    try:
        stored = load_file(str(path))
    except Exception:  # missing, truncated, not safetensors
        return False
    return stored.keys() == weights.keys() and all(torch.equal(stored[k], v.cpu()) for k, v in weights.items())


def improved(value: float, mode: str, min_delta: float, best: float | None) -> bool:
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


def output_weights(loss: dict[str, Any], outputs: int) -> list[float]:
    """Each output's weight in the loss: given, or 1 for the main output and 0.3 for each auxiliary one (GoogLeNet's)."""
    given = loss.get("output_weights")
    return [float(w) for w in given] if given else [1.0] + [0.3] * (outputs - 1)
