"""WebDataset shards: `source: webdataset` streams them (netdsl/train/pack.py writes them from an image folder).

A shard is a tar file; a sample is the run of consecutive members that share a key (the member name up to the
first dot of its base name, WebDataset's convention): `000042.png` holds the original image bytes, `000042.cls`
the class index in ASCII. For segmentation, `000042.mask.png` (or `000042.seg.png`) holds the mask: a palette or
integer greyscale image of class indices, resized to the input's H x W with nearest neighbour; `.cls` is then not
needed. When the input is the target, `.cls` is optional too (0 without it). Other targets (values, 0/1 vectors)
are not read from shards. `index.json` beside the shards lists the classes and every shard's sample count, so a
run knows the size of an epoch without reading the tars (without it, their headers are scanned once).

An epoch is read in streams: rank r takes every world-th shard, and each of its DataLoader workers every W-th of
those. A stream reads its shards in turn, shuffles samples within a buffer, decodes them and yields local batches,
this rank's share of every global batch. The DataLoader hands out its workers' batches round-robin, so a resumed
epoch skips the right number of samples in each stream (undecoded) and starts the round at the right worker.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import re
import tarfile
import weakref
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from netdsl.tasks.targets import Targets
from netdsl.train.batch_targets import CLASS_TARGETS, BadTarget, check_masks
from netdsl.train.fitting import CorruptImage, NotAMask, decode_image, decode_mask, fit_mask, image_suffixes
from netdsl.train.loader import own_generator
from netdsl.train.splits import Batch, DataError, Reading, SplitData, Splits, fail

__all__ = ["ShardSplit", "round_robin", "shard_order", "webdataset_splits"]

SPLITS = ("train", "val", "test")
SHARD_NAME = re.compile(r"^(train|val|test)-\d{6}\.tar$")
META = re.compile(r"__[^/]*__($|/)")  # members WebDataset's tar reader passes over (its skip_meta default)
SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]+):")  # two letters at least: a Windows drive is not a scheme
MASK_KEYS = ("mask.png", "seg.png")  # a sample's member holding its mask
CORRUPT_HINT = "set train.data.skip_corrupt: true to leave such samples out (they are then listed in skipped_files.txt)"

T = TypeVar("T")


def require_webdataset(where: str) -> Any:
    """The webdataset module, or a one-line error naming the optional extra that brings it."""
    try:
        import webdataset  # type: ignore[import-untyped]  # an optional extra without type information
    except ImportError:
        raise fail(where, "WebDataset shards need the webdataset package: pip install 'netdsl[shards]'") from None
    return webdataset


def is_remote(url: str) -> bool:
    match = SCHEME.match(url)
    return match is not None and match.group(1).lower() != "file"


def expand_shards(cfg: dict[str, Any], key: str, base: Path, required: bool) -> list[str]:
    """The shards named by train.data.<key> (brace notation, WebDataset's expansion): local paths resolved from `base`."""
    wds = require_webdataset(f"train.data.{key}")
    pattern = cfg.get(key)
    if pattern is None and not required:
        return []
    example = "'shards/train-{000000..000019}.tar' (netdsl data pack writes them)"
    if pattern is None:
        raise fail("train.data.urls", f"source webdataset needs train.data.urls, the training shards, e.g. {example}")
    urls = [u for p in ([pattern] if isinstance(pattern, str) else pattern) for u in wds.shardlists.expand_urls(str(p)) if u.strip()]
    if not urls:
        raise fail(f"train.data.{key}", f"names no shards (got {pattern!r}); expected e.g. {example}")
    shards = []
    for url in urls:
        if url.startswith("pipe:"):
            raise fail(
                f"train.data.{key}", f"pipe: URLs are not supported ({url}): use local paths, file: or http(s) URLs with an index.json beside the shards"
            )
        shards.append(url if is_remote(url) else str((base / re.sub(r"^file:(//)?", "", url)).resolve()))
    missing = [s for s in shards if not is_remote(s) and not os.path.isfile(s)]
    if missing:
        raise fail(missing[0], f"no such shard ({len(missing)} of the {len(shards)} shards named by train.data.{key} do not exist)")
    return shards


@dataclass
class ShardCounts:
    counts: list[int]
    classes: list[str] | None  # from index.json
    top_label: int  # the highest integer `cls` seen in the shards that were scanned; -1 if none
    scanned: int  # shards whose headers were read because no index.json listed them


def parent_and_name(shard: str) -> tuple[str, str]:
    head, _, name = shard.rpartition("/")
    return head, name


def read_index(folder: str) -> tuple[dict[str, int], list[str] | None] | None:
    """{shard name: count} and the classes from `folder`/index.json (a local folder or a URL), or None without one."""
    where = f"{folder}/index.json"
    if is_remote(folder):
        try:
            with require_webdataset(where).gopen(where) as f:
                text = f.read().decode()
        except (OSError, ValueError):  # not there (curl's exit status) or not text: the shards need their own counts
            return None
    elif os.path.isfile(where):
        try:
            text = Path(where).read_text(encoding="utf-8")
        except (OSError, ValueError) as exc:
            raise fail(where, f"cannot read: {exc}") from None
    else:
        return None
    try:
        index = json.loads(text)
        counts = {name: int(n) for split in index["splits"].values() for name, n in zip(split["shards"], split["counts"], strict=True)}
        classes = [str(c) for c in index["classes"]] if index.get("classes") else None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise fail(where, f"not an index.json of netdsl data pack ({type(exc).__name__}: {exc}); delete it to count samples by scanning the shards") from None
    return counts, classes


def scan_shard(path: str) -> tuple[int, int]:
    """Samples in a local tar shard by its headers (grouped as WebDataset groups them), and its highest integer `cls`."""
    base_plus_ext = require_webdataset(path).tariterators.base_plus_ext
    count, top, key = 0, -1, None
    try:
        with tarfile.open(path) as tar:  # random access: the headers are read, the image data skipped
            for member in tar:
                if not member.isreg() or META.match(member.name):
                    continue
                prefix, suffix = base_plus_ext(member.name)
                if prefix is None or suffix is None:
                    continue
                if prefix != key:
                    count, key = count + 1, prefix
                if suffix.lower() == "cls":
                    label = tar.extractfile(member).read().strip()  # type: ignore[union-attr]
                    top = max(top, int(label)) if label.isdigit() else top
    except (OSError, tarfile.TarError) as exc:
        raise fail(path, f"not a readable tar shard: {exc}") from None
    return count, top


def count_samples(shards: list[str]) -> ShardCounts:
    """Sample counts from index.json where it lists a shard, else from one scan of the shard's tar headers."""
    indexes: dict[str, tuple[dict[str, int], list[str] | None] | None] = {}
    result = ShardCounts([], None, -1, 0)
    for shard in shards:
        folder, name = parent_and_name(shard)
        if folder not in indexes:
            indexes[folder] = read_index(folder)
        index = indexes[folder]
        if index is not None and name in index[0]:
            result.counts.append(index[0][name])
            result.classes = result.classes or index[1]
        elif is_remote(shard):
            raise fail(shard, "a remote shard needs an index.json beside it that lists its sample count (netdsl data pack writes one)")
        else:
            count, top = scan_shard(shard)
            result.counts.append(count)
            result.top_label = max(result.top_label, top)
            result.scanned += 1
    return result


# ---------------------------------------------------------------- an epoch's plan


def shard_order(counts: list[int], seed: int, epoch: int, shuffle: bool) -> list[int]:
    """The shard read in each slot this epoch: stored order, or a permutation seeded by (seed, epoch) that moves a shard
    only to a slot of the same sample count, so every rank's and worker's share, and so `steps()`, is the same each epoch."""
    if not shuffle:
        return list(range(len(counts)))
    perm = torch.randperm(len(counts), generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()
    same_count: dict[int, list[int]] = {}
    for i in perm:
        same_count.setdefault(counts[i], []).append(i)
    queues = {c: iter(v) for c, v in same_count.items()}
    return [next(queues[c]) for c in counts]


def round_robin(batches: list[int]) -> list[int]:
    """The stream of every batch, in the order the DataLoader yields them: batch i of the epoch is taken from worker
    i % W, passing over workers that are exhausted (torch's _MultiProcessingDataLoaderIter with in_order=True)."""
    return [w for j in range(max(batches, default=0)) for w, n in enumerate(batches) if n > j]


@dataclass(frozen=True)
class StreamPlan:
    """What one DataLoader worker reads: its shards in order, the samples to pass over (resume), its shuffle's seed."""

    shards: tuple[str, ...]
    counts: tuple[int, ...]
    skip: int
    seed: str | None  # None: stored order, no buffer


@dataclass(frozen=True)
class StreamFailure:
    """A shard that could not be read, sent from a worker to the main process as a value (it raises the DataError)."""

    where: str
    message: str


class BadSample(Exception):
    pass


class ShardStreams(torch.utils.data.IterableDataset[Any]):
    """The streams of one rank and epoch; DataLoader worker i reads plans[i] (the main process reads plans[0])."""

    def __init__(self, plans: list[StreamPlan], batch: int, shape: tuple[int, ...], num_classes: int, buffer: int, targets: Targets = CLASS_TARGETS) -> None:
        self.plans, self.batch, self.shape, self.num_classes, self.buffer = plans, batch, shape, num_classes, buffer
        self.targets = targets

    def __iter__(self) -> Iterator[Batch | StreamFailure]:
        info = torch.utils.data.get_worker_info()
        plan = self.plans[info.id if info is not None else 0]
        try:
            samples = self.samples(plan)
            for _ in itertools.islice(samples, plan.skip):  # resume: pass over what the interrupted epoch took, undecoded
                pass
            group: list[tuple[str, dict[str, Any]]] = []
            for sample in samples:
                group.append(sample)
                if len(group) == self.batch:
                    yield self.decode(group)
                    group = []
            if group:
                yield self.decode(group)
        except DataError as exc:
            yield StreamFailure(exc.diagnostics[0].loc.file, exc.diagnostics[0].message)

    def samples(self, plan: StreamPlan) -> Iterator[tuple[str, dict[str, Any]]]:
        """(shard, raw sample) in this epoch's order: shards in a seeded order, samples through the shuffle buffer."""
        shards = list(zip(plan.shards, plan.counts))
        if plan.seed is None:
            return read_shards(shards)
        rng = random.Random(plan.seed)  # str seeds hash with SHA-512: the same in every process, unlike hash()
        rng.shuffle(shards)
        return shuffle_buffer(read_shards(shards), self.buffer, rng)

    def decode(self, group: list[tuple[str, dict[str, Any]]]) -> Batch:
        xs, ys, skipped = [], [], []
        for shard, sample in group:
            try:
                x, y = self.decode_sample(sample, f"{shard}:{sample['__key__']}")
            except BadSample as exc:
                skipped.append((f"{shard}:{sample['__key__']}", str(exc)))
                continue
            xs.append(x)
            ys.append(y)
        if not xs:
            return torch.zeros((0, *self.shape)), torch.zeros((0, *(self.shape[1:] if self.targets.kind == "mask" else ())), dtype=torch.int64), skipped
        return torch.stack(xs), torch.stack(ys), skipped

    def decode_sample(self, sample: dict[str, Any], where: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The image fitted to the input and its target: the class index (0 for the input as target without one), or the mask."""
        unlabelled = self.targets.kind == "mask" or (self.targets.kind == "input" and "cls" not in sample)
        y = torch.tensor(0 if unlabelled else self.label(sample), dtype=torch.int64)
        suffixes = image_suffixes()
        members = [k for k in sample if not k.startswith("__")]
        images = sorted((k for k in members if "." + k.rsplit(".", 1)[-1] in suffixes and k.lower() not in MASK_KEYS), key=lambda k: ("." in k, k))
        if not images:
            raise BadSample(f"no image member (has {', '.join(members)})")
        if self.targets.kind == "mask":
            y = self.mask(sample, members, where)
        try:
            return decode_image(bytes(sample[images[0]]), self.shape), y
        except CorruptImage as exc:
            raise BadSample(str(exc)) from None

    def label(self, sample: dict[str, Any]) -> int:
        if "cls" not in sample:
            raise BadSample("no .cls member (the class index)")
        text = sample["cls"].strip()
        if not text.isdigit():
            raise BadSample(f"its .cls is not a class index: {text[:20]!r}")
        label = int(text)
        if label >= self.num_classes:
            raise BadSample(f"class index {label} is not below the number of classes ({self.num_classes})")
        return label

    def mask(self, sample: dict[str, Any], members: list[str], where: str) -> torch.Tensor:
        """The sample's mask at the input's H x W; a mask the task cannot use stops the run (a DataError, not a skip)."""
        key = next((k for k in members if k.lower() in MASK_KEYS), None)
        if key is None:
            raise BadSample(f"no .mask.png or .seg.png member (has {', '.join(members)})")
        try:
            mask = decode_mask(bytes(sample[key]))[None]
            check_masks(mask, self.targets)
        except CorruptImage as exc:
            raise BadSample(str(exc)) from None
        except (NotAMask, BadTarget) as exc:
            raise fail(f"{where}.{key}", str(exc)) from None
        return fit_mask(mask, self.shape[1:])[0]


def read_shards(shards: Iterable[tuple[str, int]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Raw samples of each shard (WebDataset's tar reader), checking that each holds the count the epoch was planned with."""
    wds = require_webdataset("train.data.urls")
    for shard, expected in shards:
        seen = 0
        try:
            with wds.gopen(shard) as stream:  # opened here to be closed here: WebDataset's own opener leaves it to the GC
                for sample in wds.tariterators.group_by_keys(wds.tariterators.tar_file_expander([{"url": shard, "stream": stream}])):
                    seen += 1
                    yield shard, sample
        except (OSError, ValueError, tarfile.TarError) as exc:
            raise fail(shard, f"cannot read the shard: {exc.args[0] if exc.args else exc}") from None
        if seen != expected:
            raise fail(shard, f"holds {seen} samples, but {expected} were counted before training (index.json or a scan); re-run netdsl data pack")


def shuffle_buffer(items: Iterator[T], size: int, rng: random.Random) -> Iterator[T]:
    """Items in a seeded order within a window of `size` (WebDataset's shuffle buffer, reproducible from `rng`)."""
    if size <= 1:
        yield from items
        return
    buffer: list[T] = []
    for item in items:
        buffer.append(item)
        if len(buffer) >= size:
            k = rng.randrange(len(buffer))
            buffer[k], buffer[-1] = buffer[-1], buffer[k]
            yield buffer.pop()
    while buffer:
        k = rng.randrange(len(buffer))
        buffer[k], buffer[-1] = buffer[-1], buffer[k]
        yield buffer.pop()


# ---------------------------------------------------------------- the split


def as_is(item: T) -> T:
    """The DataLoader's collate_fn: batches come ready (its default would turn the (x, y, skipped) tuples into lists)."""
    return item


class ShardSplit(SplitData):
    """A split stored as tar shards, streamed: each rank reads its own shards, so ranks may take different numbers of batches."""

    uneven = True

    def __init__(
        self,
        shards: list[str],
        counts: list[int],
        shape: tuple[int, ...],
        *,
        num_classes: int,
        shuffle_buffer: int = 1000,
        skip_corrupt: bool = False,
        targets: Targets = CLASS_TARGETS,
    ) -> None:
        self.shards, self.counts, self.shape, self.targets = list(shards), list(counts), shape, targets
        self.num_classes, self.buffer, self.skip_corrupt = num_classes, shuffle_buffer, skip_corrupt
        self.size = sum(counts)
        self._iterators: weakref.WeakSet[Any] = weakref.WeakSet()

    def local_batch(self, reading: Reading) -> int:
        """This rank's share of a global batch: samples rank, rank + world, ... of it."""
        n = len(range(reading.rank, reading.batch_size, reading.world))
        if n == 0:
            raise fail("train.batch_size", f"{reading.batch_size} is smaller than the {reading.world} processes; each needs at least one sample per batch")
        return n

    def streams(self, reading: Reading, order: list[int]) -> list[list[int]]:
        """Shard indices of each worker stream of this rank (workers without a shard left out)."""
        mine = order[reading.rank :: reading.world]
        workers = max(reading.workers, 1)
        return [mine[w::workers] for w in range(min(workers, len(mine)))]

    def stream_batches(self, reading: Reading, streams: list[list[int]]) -> list[int]:
        batch = self.local_batch(reading)
        return [math.ceil(sum(self.counts[i] for i in s) / batch) for s in streams]

    def steps(self, reading: Reading) -> int:
        # shard_order keeps every slot's count, so the stored order gives every epoch's figure
        return sum(self.stream_batches(reading, self.streams(reading, list(range(len(self.shards))))))

    def plan(self, reading: Reading, *, epoch: int, seed: int, shuffle: bool, start_step: int = 0) -> list[StreamPlan]:
        """The DataLoader workers' streams from `start_step` on, rotated so that worker 0 holds the stream of batch `start_step`."""
        streams = self.streams(reading, shard_order(self.counts, seed, epoch, shuffle))
        batches = self.stream_batches(reading, streams)
        schedule = round_robin(batches)
        if start_step >= len(schedule):
            return []
        taken = Counter(schedule[:start_step])
        first = schedule[start_step]
        rotated = [(first + i) % len(streams) for i in range(len(streams))]
        batch = self.local_batch(reading)
        return [
            StreamPlan(
                tuple(self.shards[i] for i in streams[w]),
                tuple(self.counts[i] for i in streams[w]),
                taken[w] * batch,
                f"netdsl.shards:{seed}:{epoch}:{reading.rank}:{w}" if shuffle else None,
            )
            for w in rotated
            if batches[w] > taken[w]
        ]

    def batches(self, reading: Reading, *, epoch: int, seed: int, shuffle: bool, start_step: int = 0) -> Iterator[Batch]:
        plans = self.plan(reading, epoch=epoch, seed=seed, shuffle=shuffle, start_step=start_step)
        if not plans:
            return
        workers = len(plans) if reading.workers > 0 else 0
        streams = ShardStreams(plans, self.local_batch(reading), self.shape, self.num_classes, self.buffer, self.targets)
        # a new loader each epoch: its workers must see the epoch's plan (persistent workers would keep the last one)
        loader = torch.utils.data.DataLoader(
            streams,
            batch_size=None,
            collate_fn=as_is,
            num_workers=workers,
            pin_memory=reading.pin_memory,
            prefetch_factor=2 if workers else None,
            generator=own_generator(),  # starting workers must not draw from the generator dropout and augmentation use
        )
        iterator = iter(loader)
        self._iterators.add(iterator)
        for item in iterator:
            if isinstance(item, StreamFailure):
                raise fail(item.where, item.message)
            x, y, skipped = item
            if skipped and not self.skip_corrupt:
                raise fail(skipped[0][0], f"{skipped[0][1]}; {CORRUPT_HINT}")
            yield x, y, skipped

    def close(self) -> None:
        for iterator in list(self._iterators):
            shutdown = getattr(iterator, "_shutdown_workers", None)  # torch's multi-process iterator; stopping it ends the workers
            if shutdown is not None:
                shutdown()
        self._iterators = weakref.WeakSet()


def webdataset_splits(cfg: dict[str, Any], input_shape: tuple[int, ...], base: Path, targets: Targets = CLASS_TARGETS) -> Splits:
    """train.data with source webdataset (urls, val_urls, test_urls; relative paths start at `base`) as streamed splits.

    Classes: train.data.classes, else index.json's, else "0", "1", ... up to the highest `cls` in the training shards
    (for masks: the task's class count).
    """
    if len(input_shape) != 3:
        raise fail("train.data", f"webdataset needs an image input (C x H x W); the spec's input is {'x'.join(map(str, input_shape))}")
    shards = {split: expand_shards(cfg, "urls" if split == "train" else f"{split}_urls", base, split == "train") for split in SPLITS}
    counted = {split: count_samples(s) for split, s in shards.items()}
    train = counted["train"]
    if cfg.get("classes"):
        classes, origin = [str(c) for c in cfg["classes"]], "train.data.classes"
    elif train.classes:
        classes, origin = train.classes, "index.json"
    elif targets.kind == "mask":
        classes, origin = [str(i) for i in range(targets.classes or 0)], "the task"
    else:
        classes, origin = [str(i) for i in range(train.top_label + 1)], "the cls labels"
    if not classes and targets.kind == "class":
        raise fail("train.data.urls", "the training shards have no integer .cls labels; name the classes in train.data.classes")
    options = {
        "num_classes": len(classes) if classes else 1 << 62,  # the input as target, and no labels known: any cls is kept
        "shuffle_buffer": cfg.get("shuffle_buffer", 1000),
        "skip_corrupt": cfg.get("skip_corrupt", False),
    }
    splits = {split: ShardSplit(shards[split], counted[split].counts, input_shape, **options, targets=targets) for split in SPLITS}
    described = [f"{len(shards[s])} {s} shards ({splits[s].size:,} samples)" if shards[s] else f"no {s} shards" for s in SPLITS]
    scanned = sum(c.scanned for c in counted.values())
    counts = f"counted by scanning {scanned} shards (netdsl data pack writes an index.json that saves this)" if scanned else "counts from index.json"
    notes = [f"webdataset: {', '.join(described)}; {len(classes)} classes from {origin}; {counts}"]
    return Splits(splits["train"], splits["val"], splits["test"], classes, notes=notes)
