"""The training loop: seeded, resumable mid-epoch, checkpointed atomically, distributed under torchrun."""

from __future__ import annotations

import contextlib
import fnmatch
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from netdsl.backends.pytorch import build_module, load_weights
from netdsl.errors import Diagnostic, Loc, SpecError
from netdsl.ir import Graph
from netdsl.train.augment import build_augmentation
from netdsl.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state, weights_from_file, write_json
from netdsl.train.data import Split, Splits
from netdsl.train.metrics import Tally, build_loss, is_classification, targets_for
from netdsl.train.run import spec_hash, write_metrics

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


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(setting: str) -> torch.device:
    if setting == "cuda" and not torch.cuda.is_available():
        raise SpecError([Diagnostic(Loc("train.device", 1, 1), "device 'cuda' was asked for, but torch sees no CUDA device")])
    return torch.device("cuda" if setting in ("cuda", "auto") and torch.cuda.is_available() else "cpu")


class Distributed:
    """Rank, world size and the collectives a run needs (a no-op for one process)."""

    def __init__(self) -> None:
        import os

        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if self.world > 1 and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def sum(self, values: dict[str, float]) -> dict[str, float]:
        if self.world == 1:
            return values
        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64)
        torch.distributed.all_reduce(t)
        return dict(zip(keys, t.tolist()))

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


class Trainer:
    """One run: model, data, optimizer and schedule from the resolved spec; writes into `run`."""

    def __init__(self, graph: Graph, cfg: dict[str, Any], data: Splits, run: Path, resolved: dict[str, Any], base: Path, progress: bool) -> None:
        self.graph, self.cfg, self.data, self.run, self.resolved, self.base = graph, cfg, data, run, resolved, base
        self.dist = Distributed()
        self.progress = progress and self.dist.main
        self.device = pick_device(cfg["device"])
        if cfg["precision"] == "fp16" and self.device.type != "cuda":
            raise SpecError([Diagnostic(Loc("train.precision", 1, 1), "fp16 mixed precision needs a CUDA device; on the CPU use bf16 or fp32")])
        if cfg["deterministic"]:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        self.model = build_module(graph, seed=cfg["seed"], device=self.device)
        seed_everything(cfg["seed"] + self.dist.rank)  # dropout and augmentation draw from the global generators
        self.transfer()
        self.module: nn.Module = self.model
        if self.dist.world > 1:
            self.module = nn.parallel.DistributedDataParallel(self.model)
        self.mean = torch.tensor(data.mean, device=self.device).view(1, -1, *([1] * (len(graph.input_shape) - 1)))
        self.std = torch.tensor(data.std, device=self.device).view(1, -1, *([1] * (len(graph.input_shape) - 1)))
        self.augment = build_augmentation(cfg["augmentation"], graph.input_shape)
        self.loss_fn = build_loss(cfg["loss"], self.device)
        self.optimizer = self.build_optimizer()
        self.steps_per_epoch = math.ceil(len(data.train) / cfg["batch_size"])
        self.scheduler = self.build_scheduler()
        self.scaler = torch.amp.GradScaler("cuda", enabled=cfg["precision"] == "fp16" and self.device.type == "cuda")
        self.epoch, self.step, self.global_step = 0, 0, 0
        self.partial: dict[str, float] = {}
        self.history: list[dict[str, Any]] = []
        self.best: float | None = None
        self.bad_epochs = 0
        self.stop_signal: str | None = None
        self.hash = spec_hash(resolved)

    # -- setup ------------------------------------------------------------------------------------
    def transfer(self) -> None:
        t = self.cfg.get("transfer")
        if not t:
            return
        if "weights" in t:
            path = (self.base / t["weights"]).resolve()
            state = weights_from_file(path)
            for old, new in t["key_map"].items():
                state = {(new + k[len(old) :] if k.startswith(old) else k): v for k, v in state.items()}
            own = self.model.state_dict()
            if t["replace_head"]:  # a head trained for another number of classes keeps its new initialization
                replaced = {k for k, v in state.items() if k in own and own[k].shape != v.shape and self.is_head(k)}
                state = {k: (own[k] if k in replaced else v) for k, v in state.items()}
            try:
                load_weights(self.model, state, strict=t["strict"])
            except Exception as exc:
                raise SpecError([Diagnostic(Loc(str(path), 1, 1), str(exc))]) from None
        self.set_frozen(t["freeze"], True)

    def is_head(self, key: str) -> bool:
        return key.rsplit(".", 1)[0] == self.graph.output

    def set_frozen(self, patterns: list[str], frozen: bool) -> None:
        for name, p in self.model.named_parameters():
            if any(fnmatch.fnmatch(name, pat) or fnmatch.fnmatch(name.rsplit(".", 1)[0], pat) for pat in patterns):
                p.requires_grad_(not frozen)

    def build_optimizer(self) -> torch.optim.Optimizer:
        o = self.cfg["optimizer"]
        groups: list[dict[str, Any]] = [{**g, "pattern": g["params"], "params": []} for g in o["groups"]]
        rest: list[nn.Parameter] = []
        for name, p in self.model.named_parameters():  # frozen ones too: unfreeze_at can make them train later
            group = next((g for g in groups if fnmatch.fnmatch(name, g["pattern"]) or fnmatch.fnmatch(name, g["pattern"] + ".*")), None)
            (group["params"] if group else rest).append(p)
        base = {"lr": o["lr"], "weight_decay": o["weight_decay"]}
        cleaned = [{k: v for k, v in g.items() if k in ("params", "lr", "weight_decay")} for g in [*groups, {"params": rest}] if g["params"]]
        name = o["name"]
        if name == "sgd":
            return torch.optim.SGD(cleaned, **base, momentum=o["momentum"], nesterov=o["nesterov"])
        if name == "rmsprop":
            return torch.optim.RMSprop(cleaned, **base, momentum=o["momentum"])
        cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
        return cls(cleaned, **base, betas=tuple(o["betas"]))

    def build_scheduler(self) -> Any:
        s, epochs = self.cfg["schedule"], self.cfg["epochs"]
        name = s["name"]
        opt = self.optimizer
        if name == "step":
            return torch.optim.lr_scheduler.StepLR(opt, s["step_size"], s["gamma"])
        if name == "multistep":
            return torch.optim.lr_scheduler.MultiStepLR(opt, s["milestones"], s["gamma"])
        if name == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=s["patience"], factor=s["factor"])
        if name == "onecycle":
            peak = s.get("max_lr", self.cfg["optimizer"]["lr"])
            steps = math.ceil(self.steps_per_epoch / self.cfg["optimizer"]["accumulate"])
            return torch.optim.lr_scheduler.OneCycleLR(opt, peak, epochs=epochs, steps_per_epoch=steps)
        if name == "cosine":
            warm = s["warmup_epochs"]
            base_lrs = [g["lr"] for g in opt.param_groups]
            floor = s["min_lr"]

            def factor(epoch: int, i: int) -> float:
                if epoch < warm:
                    return (epoch + 1) / (warm + 1)
                t = (epoch - warm) / max(1, epochs - warm)
                return (floor + (base_lrs[i] - floor) * 0.5 * (1 + math.cos(math.pi * t))) / base_lrs[i]

            lambdas: list[Any] = [lambda e, i=i: factor(e, i) for i in range(len(base_lrs))]
            return torch.optim.lr_scheduler.LambdaLR(opt, lambdas)
        return None

    # -- state ------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
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
            "rng": rng_state(),
            "data_order": {"seed": self.cfg["seed"], "epoch": self.epoch, "steps_per_epoch": self.steps_per_epoch},
            "spec_hash": self.hash,
        }

    def restore(self, path: Path) -> None:
        state = load_checkpoint(path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step, self.global_step = state["epoch"], state["step"], state["global_step"]
        self.partial, self.history, self.best, self.bad_epochs = state["partial"], state["history"], state["best"], state["bad_epochs"]
        set_rng_state(state["rng"])

    def save_last(self) -> None:
        if self.dist.main:
            save_checkpoint(self.run / "last.pt", self.state())

    # -- the loop ---------------------------------------------------------------------------------
    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The training order of an epoch, a function of (seed, epoch) only, so a resumed run sees the same batches."""
        g = torch.Generator().manual_seed(self.cfg["seed"] * 100_003 + epoch)
        return torch.randperm(len(self.data.train), generator=g)

    def batch(self, split: Split, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return split.x[idx].to(self.device, non_blocking=True), split.y[idx].to(self.device, non_blocking=True)

    def prepare(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        if train and self.augment is not None:
            x = self.augment(x)
        return (x - self.mean) / self.std

    def share(self, step: int) -> float:
        """The fraction of its accumulation group's samples that batch `step` holds (1 without accumulation).

        Weighting each batch's mean loss by it makes the group's gradient that of one batch of all its samples,
        the last, shorter group of an epoch included.
        """
        bs, n, accumulate = self.cfg["batch_size"], len(self.data.train), self.cfg["optimizer"]["accumulate"]
        first = step // accumulate * accumulate
        group = min((first + accumulate) * bs, n) - first * bs
        return (min((step + 1) * bs, n) - step * bs) / group

    def objective(self, loss: torch.Tensor, share: float = 1.0) -> torch.Tensor:
        """The loss plus the L1 penalty, weighted by the batch's share of its accumulation group (no extra autograd ops when neither applies)."""
        l1 = self.cfg["optimizer"]["l1"]
        if l1:
            loss = loss + l1 * sum(p.abs().sum() for p in self.model.parameters() if p.requires_grad)
        return loss * share if share != 1.0 else loss

    def autocast(self) -> Any:
        precision = self.cfg["precision"]
        if precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)

    def train_epoch(self) -> dict[str, float]:
        cfg = self.cfg
        accumulate = cfg["optimizer"]["accumulate"]
        order = self.epoch_order(self.epoch)
        tally = Tally(cfg["metrics"])
        tally.merge(self.partial)
        self.module.train()
        start, seen = time.perf_counter(), 0
        for step in range(self.step, self.steps_per_epoch):
            idx = order[step * cfg["batch_size"] : (step + 1) * cfg["batch_size"]]
            if self.dist.world > 1:
                idx = idx[self.dist.rank :: self.dist.world]  # each rank its share of the global batch
            x, y = self.batch(self.data.train, idx)
            with self.autocast():
                out = self.module(self.prepare(x, True))
                target = targets_for(cfg["loss"], y, out)
                loss = self.loss_fn(out, target)
                total = self.objective(loss, self.share(step))
            if not math.isfinite(value := float(total.detach())):
                raise TrainingStopped(f"the loss became {value} at epoch {self.epoch + 1}, step {step + 1}; the last good checkpoint is kept")
            self.scaler.scale(total).backward()
            if (step + 1) % accumulate == 0 or step + 1 == self.steps_per_epoch:
                self.optimizer_step()
            with torch.no_grad():
                tally.add(loss.detach(), out.detach().float(), y, target)
            self.step, self.global_step = step + 1, self.global_step + 1
            self.partial = dict(tally.sums)
            seen += len(idx)
            if self.progress:
                self.show(step + 1, tally.result(), seen / (time.perf_counter() - start))
            every = cfg["checkpoint"].get("every_steps")
            at_boundary = (step + 1) % accumulate == 0
            if at_boundary and every and self.global_step % every == 0:
                self.save_last()
            if self.stop_signal and at_boundary and step + 1 < self.steps_per_epoch:
                return {}
        if self.progress:
            sys.stderr.write("\r\033[K")
        self.throughput = seen * self.dist.world / max(time.perf_counter() - start, 1e-9)
        return Tally(cfg["metrics"]).result() | self.reduce(tally)

    def optimizer_step(self) -> None:
        clip = self.cfg["optimizer"].get("clip_grad_norm")
        if clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.cfg["schedule"]["name"] == "onecycle":
            self.scheduler.step()

    def reduce(self, tally: Tally) -> dict[str, float]:
        summed = Tally(tally.metrics)
        summed.sums = self.dist.sum(tally.sums)
        return summed.result()

    def evaluate(self, split: Split) -> dict[str, float]:
        tally = Tally(self.cfg["metrics"])
        if len(split) == 0:
            return {}
        self.module.eval()
        bs = self.cfg["batch_size"]
        with torch.inference_mode():
            for i in range(self.dist.rank * bs, len(split), bs * self.dist.world):
                x, y = self.batch(split, torch.arange(i, min(i + bs, len(split))))
                with self.autocast():
                    out = self.module(self.prepare(x, False)).float()
                target = targets_for(self.cfg["loss"], y, out)
                tally.add(self.loss_fn(out, target), out, y, target)
        return self.reduce(tally)

    def show(self, step: int, metrics: dict[str, float], rate: float) -> None:
        width = 24
        done = int(width * step / self.steps_per_epoch)
        parts = " ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        lr = self.optimizer.param_groups[-1]["lr"]
        bar = "#" * done + "." * (width - done)
        sys.stderr.write(f"\repoch {self.epoch + 1}/{self.cfg['epochs']} [{bar}] {step}/{self.steps_per_epoch} {parts} lr {lr:.2e} {rate:,.0f} samples/s")
        sys.stderr.flush()

    def improved(self, value: float, mode: str, min_delta: float, best: float | None) -> bool:
        if best is None:
            return True
        return value < best - min_delta if mode == "min" else value > best + min_delta

    def fit(self, log: Any) -> str:
        """Train to the end (or early stop / signal); returns the final state: finished or interrupted."""
        cfg = self.cfg
        handlers = self.install_signals()
        try:
            while self.epoch < cfg["epochs"]:
                unfreeze = cfg.get("transfer", {}).get("unfreeze_at")
                if unfreeze and self.epoch + 1 >= unfreeze:
                    self.set_frozen(cfg["transfer"]["freeze"], False)
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
                if self.stop_signal or self.early_stop(row):
                    return "interrupted" if self.stop_signal else "finished"
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
        ck = self.cfg["checkpoint"]
        value = self.monitored(row)
        if value is not None and self.improved(value, ck["mode"], 0.0, self.best):
            self.best = value
            if self.dist.main:
                save_checkpoint(self.run / "best.pt", self.state())
                from safetensors.torch import save_file

                save_file({k: v.contiguous() for k, v in self.model.state_dict().items()}, str(self.run / ".best.safetensors.tmp"))
                (self.run / ".best.safetensors.tmp").replace(self.run / "best.safetensors")
        if self.dist.main:
            write_metrics(self.run, self.history)
        self.save_last()

    def early_stop(self, row: dict[str, Any]) -> bool:
        es = self.cfg.get("early_stopping")
        if not es:
            return False
        history: list[float] = [r[es["monitor"]] for r in self.history[:-1] if r.get(es["monitor"]) is not None]
        best = (min(history) if es["mode"] == "min" else max(history)) if history else None
        value = row.get(es["monitor"])
        if value is None:
            return False
        self.bad_epochs = 0 if self.improved(value, es["mode"], es["min_delta"], best) else self.bad_epochs + 1
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
        """Test-split metrics with the best weights (the last ones if no best was kept)."""
        best = self.run / "best.pt"
        if best.exists():
            self.model.load_state_dict(load_checkpoint(best)["model"])
        metrics = self.evaluate(self.data.test)
        return {f"test_{k}": round(v, 6) for k, v in metrics.items()} | {"test_samples": len(self.data.test)}


def write_results(run: Path, results: dict[str, Any]) -> None:
    write_json(run / "results.json", results)


def check_fit(graph: Graph, cfg: dict[str, Any], classes: int) -> None:
    """The network's output width must equal the number of classes (located at the last layer)."""
    if not is_classification(cfg["loss"]) and cfg["loss"]["name"] != "bce_with_logits":
        return
    out = graph.output_shape
    last = graph.node(graph.output)
    if len(out) != 1 or out[0] != classes:
        raise SpecError(
            [
                Diagnostic(
                    last.loc,
                    f"{last.op} '{last.name}': the network outputs {'x'.join(map(str, out))} but the data has {classes} classes; "
                    f"make the last layer output {classes} (its out option, or the spec parameter behind it: --set NAME={classes}), "
                    "or start from other weights with train.transfer (replace_head)",
                )
            ]
        )
