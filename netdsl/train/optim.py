"""Optimizers (with per-layer-group settings) and learning-rate schedules from `train.optimizer` / `train.schedule`."""

from __future__ import annotations

import fnmatch
import math
from typing import Any

import torch
from torch import nn


def build_optimizer(model: nn.Module, o: dict[str, Any]) -> torch.optim.Optimizer:
    """Every parameter (frozen ones too: unfreeze_at can make them train later) in its group, first matching pattern wins."""
    groups: list[dict[str, Any]] = [{**g, "pattern": g["params"], "params": []} for g in o["groups"]]
    rest: list[nn.Parameter] = []
    for name, p in model.named_parameters():
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


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: dict[str, Any], steps_per_epoch: int) -> Any:
    """The configured schedule (None for 'none'); onecycle steps per optimizer step, the others per epoch."""
    s, epochs = cfg["schedule"], cfg["epochs"]
    name = s["name"]
    if name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, s["step_size"], s["gamma"])
    if name == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, s["milestones"], s["gamma"])
    if name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=s["patience"], factor=s["factor"])
    if name == "onecycle":
        peak = s.get("max_lr", cfg["optimizer"]["lr"])
        steps = math.ceil(steps_per_epoch / cfg["optimizer"]["accumulate"])
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, peak, epochs=epochs, steps_per_epoch=steps)
    if name == "cosine":
        warm = s["warmup_epochs"]
        base_lrs = [g["lr"] for g in optimizer.param_groups]
        floor = s["min_lr"]

        def factor(epoch: int, i: int) -> float:
            if epoch < warm:
                return (epoch + 1) / (warm + 1)
            t = (epoch - warm) / max(1, epochs - warm)
            return (floor + (base_lrs[i] - floor) * 0.5 * (1 + math.cos(math.pi * t))) / base_lrs[i]

        lambdas: list[Any] = [lambda e, i=i: factor(e, i) for i in range(len(base_lrs))]
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)
    return None
