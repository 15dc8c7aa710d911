"""Map-style splits read through torch's DataLoader: worker processes decode one batch ahead, pinned memory on CUDA.

The batch sampler gives every rank its slice of each global batch (rank r takes samples r, r + world, ...
of it), so N processes train on the very batches one process would: same order, same gradients (DDP averages
them), each rank reading only its share. torch's DistributedSampler splits the epoch instead (each rank its own
batches, padded with repeated samples) and cannot start mid-epoch, which exact resume needs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from netdsl.train.splits import Batch, Failure, Reading, SplitData, fail


def epoch_order(size: int, seed: int, epoch: int) -> torch.Tensor:
    """The training order of an epoch, a function of (seed, epoch) only."""
    return torch.randperm(size, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


def own_generator() -> torch.Generator:
    """A DataLoader draws its workers' base seed from this instead of torch's global generator, which dropout and
    augmentation use: starting workers (a resume starts them mid-run) must not shift their random numbers."""
    return torch.Generator().manual_seed(0)


class StepBatches(torch.utils.data.Sampler[list[int]]):
    """This rank's slice of every global batch from `start` on; set before each epoch (it runs in the main process, so
    persistent workers see the change)."""

    def __init__(self, size: int, reading: Reading, positions: np.ndarray | None) -> None:
        self.size, self.reading, self.positions = size, reading, positions
        self.order: torch.Tensor = torch.arange(size)
        self.start = 0

    def set_epoch(self, order: torch.Tensor, start: int) -> None:
        self.order, self.start = order, start

    def __len__(self) -> int:
        return max(0, math.ceil(self.size / self.reading.batch_size) - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        bs, rank, world = self.reading.batch_size, self.reading.rank, self.reading.world
        for step in range(self.start, math.ceil(self.size / bs)):
            local = self.order[step * bs : (step + 1) * bs][rank::world].numpy()
            yield (self.positions[local] if self.positions is not None else local).tolist()


def collate(items: Any) -> Batch | Failure:
    """A batch from `__getitems__` (already a Batch, or a Failure) or from single items: (x, target), (file, reason) for a
    sample that could not be decoded, or a Failure (a target the task cannot use) that stops the run.

    Targets are stacked whatever their shape: class indices (int64 N), masks (N x H x W), values, 0/1 vectors.
    """
    if isinstance(items, (tuple, Failure)):
        return items
    failure = next((it for it in items if isinstance(it, Failure)), None)
    if failure is not None:
        return failure
    good = [it for it in items if isinstance(it[0], torch.Tensor)]
    bad = [(str(f), str(why)) for f, why in items if not isinstance(f, torch.Tensor)]
    if not good:
        return torch.zeros(0), torch.zeros(0, dtype=torch.long), bad
    ys = [y for _, y in good]
    y = torch.stack(ys) if isinstance(ys[0], torch.Tensor) else torch.tensor(ys, dtype=torch.long)
    return torch.stack([x for x, _ in good]), y, bad


class MapSplit(SplitData):
    """A split of a map-style dataset: `positions` (dataset indices, or all of it) read through a DataLoader."""

    def __init__(self, dataset: Any, positions: np.ndarray | None = None, *, skip_corrupt: bool = False) -> None:
        self.dataset, self.positions, self.skip_corrupt = dataset, positions, skip_corrupt
        self.size = len(positions) if positions is not None else len(dataset)
        self._loaders: dict[Reading, tuple[torch.utils.data.DataLoader[Any], StepBatches]] = {}

    def steps(self, reading: Reading) -> int:
        return math.ceil(self.size / reading.batch_size)

    def global_batch(self, step: int, reading: Reading) -> int | None:
        return min(reading.batch_size, self.size - step * reading.batch_size)

    def loader(self, reading: Reading) -> tuple[torch.utils.data.DataLoader[Any], StepBatches]:
        """One DataLoader per way of reading, its workers kept from epoch to epoch (close() ends them)."""
        key = reading
        if key not in self._loaders:
            sampler = StepBatches(self.size, reading, self.positions)
            workers = reading.workers
            loader = torch.utils.data.DataLoader(
                self.dataset,
                batch_sampler=sampler,
                num_workers=workers,
                collate_fn=collate,
                pin_memory=reading.pin_memory,
                persistent_workers=workers > 0,
                prefetch_factor=2 if workers > 0 else None,
                generator=own_generator(),
            )
            self._loaders[key] = (loader, sampler)
        return self._loaders[key]

    def batches(self, reading: Reading, *, epoch: int, seed: int, shuffle: bool, start_step: int = 0) -> Iterator[Batch]:
        loader, sampler = self.loader(reading)
        sampler.set_epoch(epoch_order(self.size, seed, epoch) if shuffle else torch.arange(self.size), start_step)
        for batch in loader:
            x, y, skipped = self.check(batch)
            yield x, y, skipped

    def check(self, batch: Batch | Failure) -> Batch:
        """The batch, unless it failed (a target the task cannot use) or has undecodable samples without train.data.skip_corrupt."""
        if isinstance(batch, Failure):
            raise batch.error()
        skipped = batch[2]
        if skipped and not self.skip_corrupt:
            file, why = skipped[0]
            raise fail(file, f"{why}; set train.data.skip_corrupt: true to leave such files out (they are then listed in skipped_files.txt)")
        return batch

    def sample(self, count: int, seed: int, reading: Reading) -> Iterator[torch.Tensor]:
        """The first `count` samples of epoch 0's order (seeded), read once by short-lived workers."""
        chosen = epoch_order(self.size, seed, 0)[:count].numpy()
        positions = self.positions[chosen] if self.positions is not None else chosen
        bs = reading.batch_size
        batches = [positions[i : i + bs].tolist() for i in range(0, len(positions), bs)]
        loader = torch.utils.data.DataLoader(self.dataset, batch_sampler=batches, num_workers=reading.workers, collate_fn=collate, generator=own_generator())
        for batch in loader:
            yield self.check(batch)[0]

    def close(self) -> None:
        for loader, _ in self._loaders.values():
            iterator = getattr(loader, "_iterator", None)
            if iterator is not None and hasattr(iterator, "_shutdown_workers"):
                iterator._shutdown_workers()
        self._loaders.clear()
