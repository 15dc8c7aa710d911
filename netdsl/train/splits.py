"""What the training loop reads: three splits, each a stream of batches for one rank and one epoch.

A source (netdsl/train/sources.py, netdsl/train/shards.py) turns `train.data` into a `Splits`; the loop knows
nothing else about data. Every batch is (x, y, skipped): x float32 at the spec's input shape (images in [0, 1]),
y the targets the task asked for (`Targets`, netdsl/tasks/targets.py: int64 class indices by default, int64
N x H x W masks, float32 values or 0/1 vectors), skipped the (file, reason) pairs of samples that could not be
decoded and were left out (only with `skip_corrupt: true`; otherwise such a sample stops the run with a `DataError`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from netdsl.tasks.targets import TARGET_KINDS, DataError, Targets, fail

Batch = tuple[torch.Tensor, torch.Tensor, list[tuple[str, str]]]

__all__ = ["TARGET_KINDS", "Batch", "DataError", "Failure", "Reading", "SplitData", "Splits", "Targets", "fail"]


@dataclass(frozen=True)
class Failure:
    """A DataError sent as a value from a DataLoader worker (torch re-raises a worker's exception by its message
    alone, which a DataError cannot be built from); the main process raises it with `error()`."""

    where: str
    message: str

    def error(self) -> DataError:
        return fail(self.where, self.message)


@dataclass(frozen=True)
class Reading:
    """How a split is read: batch size per optimizer step (all ranks together), this process's rank, workers."""

    batch_size: int
    rank: int = 0
    world: int = 1
    workers: int = 0
    pin_memory: bool = False


class SplitData(ABC):
    """One split of a data set; `batches()` streams it for one epoch as this rank's part of every global batch."""

    #: the samples in the split (all ranks together)
    size: int
    #: True when ranks may get different numbers of batches (shards): the loop then joins uneven inputs
    uneven: bool = False

    def __len__(self) -> int:
        return self.size

    @abstractmethod
    def steps(self, reading: Reading) -> int:
        """Batches this rank takes in one epoch."""

    @abstractmethod
    def batches(self, reading: Reading, *, epoch: int, seed: int, shuffle: bool, start_step: int = 0) -> Iterator[Batch]:
        """This rank's batches of one epoch, from `start_step` on.

        With `shuffle`, the order is a function of (seed, epoch) alone, so a resumed run sees the batches an
        uninterrupted one would; without it, the split is read in its stored order (validation, test).
        """

    def global_batch(self, step: int, reading: Reading) -> int | None:
        """Samples in global batch `step` (all ranks), where every rank takes a slice of each batch; None where ranks read apart (shards)."""
        return None

    def sample(self, count: int, seed: int, reading: Reading) -> Iterator[torch.Tensor]:
        """Batches of inputs from about `count` training samples (a seeded choice), for normalization statistics."""
        seen = 0
        for x, _, _ in self.batches(reading, epoch=0, seed=seed, shuffle=True):
            yield x[: count - seen]
            seen += len(x)
            if seen >= count:
                return

    def close(self) -> None:  # noqa: B027 -- optional, unlike the abstract methods
        """Stop worker processes (a no-op for sources without them)."""


@dataclass
class Splits:
    train: SplitData
    val: SplitData
    test: SplitData
    classes: list[str]
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    #: what the user should know about the data before training starts (files left out, layout found)
    notes: list[str] = field(default_factory=list)
    #: False for small in-memory sources: train.workers auto then reads them in the main process (no worker processes)
    streamed: bool = True

    def close(self) -> None:
        for split in (self.train, self.val, self.test):
            split.close()
