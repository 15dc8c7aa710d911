"""Where and how a run computes: device, processes (torch.distributed under torchrun), precision, seeding.

Kept apart from the loop the way Lightning Fabric keeps its strategy apart from the training step.
Under torchrun every process reads RANK / WORLD_SIZE / LOCAL_RANK; process `LOCAL_RANK` of a machine uses GPU
`LOCAL_RANK` (torch.cuda.set_device and DDP's device_ids), so N processes on one machine use N GPUs.
"""

from __future__ import annotations

import contextlib
import os
import random
from typing import Any

import numpy as np
import torch
from torch import nn

from netdsl.errors import Diagnostic, Loc, SpecError


def usable_cpus() -> int:
    """The CPU cores this process may run on (its affinity where the OS tells it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def setting_error(key: str, message: str) -> SpecError:
    return SpecError([Diagnostic(Loc(f"train.{key}", 1, 1), message)])


class Engine:
    """Rank, world size, device and precision of this process, and the collectives a run needs (no-ops for one process)."""

    def __init__(self, device: str = "auto", precision: str = "fp32", deterministic: bool = True) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        cuda = torch.cuda.is_available()
        if device == "cuda" and not cuda:
            raise setting_error("device", "device 'cuda' was asked for, but torch sees no CUDA device")
        if device in ("cuda", "auto") and cuda:
            if self.local_rank >= torch.cuda.device_count():
                raise setting_error("device", f"process {self.local_rank} of this machine has no GPU: torch sees {torch.cuda.device_count()}")
            self.device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")
        if precision == "fp16" and self.device.type != "cuda":
            raise setting_error("precision", "fp16 mixed precision needs a CUDA device; on the CPU use bf16 or fp32")
        self.precision = precision
        if deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        if self.world > 1 and not torch.distributed.is_initialized():
            torch.distributed.init_process_group(
                "nccl" if self.device.type == "cuda" else "gloo", device_id=self.device if self.device.type == "cuda" else None
            )

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module the loop calls: DistributedDataParallel across processes (on this process's GPU), else the model itself."""
        if not self.distributed:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def autocast(self) -> Any:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16 if self.precision == "bf16" else torch.float16)

    def scaler(self) -> torch.amp.GradScaler:
        return torch.amp.GradScaler("cuda", enabled=self.precision == "fp16" and self.device.type == "cuda")

    # -- collectives ------------------------------------------------------------------------------
    def sum(self, values: dict[str, float]) -> dict[str, float]:
        """Each key summed over all processes (float64: exact for sample counts)."""
        if not self.distributed:
            return values
        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=self.collective_device)
        torch.distributed.all_reduce(t)
        return dict(zip(keys, t.tolist()))

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()

    def broadcast_object(self, value: Any) -> Any:
        """Rank 0's value, on every process."""
        if not self.distributed:
            return value
        box = [value if self.main else None]
        torch.distributed.broadcast_object_list(box, src=0, device=self.collective_device)
        return box[0]

    def gather_object(self, value: Any) -> list[Any]:
        """Every process's value, in rank order, on every process."""
        if not self.distributed:
            return [value]
        out: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(out, value)
        return out

    def broadcast_state(self, model: nn.Module) -> None:
        """Every parameter and buffer of rank 0's model copied to the others (after rank 0 alone loaded a file)."""
        if not self.distributed:
            return
        with torch.no_grad():
            for t in model.state_dict().values():
                torch.distributed.broadcast(t, src=0)

    @property
    def collective_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    def close(self) -> None:
        if self.distributed and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
