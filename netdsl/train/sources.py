"""Data sources: `train.data` -> Splits (train, val, test). One registered function per source.

| source | read as | targets (Targets.kind) |
|---|---|---|
| digits, synthetic | in memory (small), fitted to the input once | class, input |
| shapes | generated in memory (uint8, netdsl/train/shapes.py) | mask, class, input |
| mnist_idx, cifar10_bin | in memory as uint8 (the files' own size), fitted a batch at a time | class, input |
| npz, npy | memory-mapped (x, dense y), a batch's rows read when needed (netdsl/train/arrays.py) | every kind |
| csv | read once into memory (small tables, netdsl/train/tables.py) | class, input, values |
| image_folder | file names listed; images decoded in DataLoader workers, a batch ahead | class, input, mask |
| webdataset | tar shards streamed, split across ranks and workers (netdsl/train/shards.py) | class, input, mask |

Every reader gets the Targets the task needs (netdsl/tasks/targets.py) and gives y accordingly: class indices,
masks at the input's H x W, the source's labels (or zeros) when the input is the target, values, 0/1 vectors.
npz files hold arrays `x` and `y`; npy folders x.npy and y.npy; y's shape per task is listed in arrays.py.
"""

from __future__ import annotations

import gzip
import itertools
import math
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from netdsl.tasks.targets import TARGET_KINDS, Targets
from netdsl.train.arrays import ArraySamples, array_targets, channels_first, map_npy_folder, map_npz
from netdsl.train.batch_targets import CLASS_TARGETS, KIND_WORDS
from netdsl.train.fitting import fit_to_input, shape_text
from netdsl.train.image_folder import FolderListing, ImageFiles, has_class_folders, scan_flat_folder, scan_image_folder, split_layout
from netdsl.train.loader import MapSplit
from netdsl.train.mask_folder import MaskedImages, MaskListing, scan_mask_folder
from netdsl.train.splits import DataError, Reading, SplitData, Splits, fail

__all__ = ["SOURCES", "DataError", "Splits", "Targets", "load_splits", "normalization", "open_source"]

Reader = Callable[[dict[str, Any], tuple[int, ...], Path, Targets], Splits]
SOURCES: dict[str, Reader] = {}
#: the kinds of targets each source can give
SOURCE_KINDS: dict[str, tuple[str, ...]] = {}

IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])  # torchvision's ImageNet statistics, which its pretrained weights expect
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def source(name: str, kinds: tuple[str, ...] = ("class", "input")) -> Callable[[Reader], Reader]:
    """Register a reader as `train.data.source: NAME`, giving the target kinds `kinds`."""

    def register(fn: Reader) -> Reader:
        SOURCES[name] = fn
        SOURCE_KINDS[name] = kinds
        return fn

    return register


def path_of(cfg: dict[str, Any], key: str, base: Path) -> Path:
    if key not in cfg:
        raise fail("train.data", f"source '{cfg['source']}' needs data.{key}")
    path = (base / cfg[key]).resolve()
    if not path.exists():
        raise fail(str(path), f"no such file or folder (train.data.{key})")
    return path


def split_positions(n: int, fractions: list[float], shuffle: bool, seed: int) -> list[np.ndarray]:
    """Positions 0..n-1 cut by fractions (rounded half up; the last part takes the rest), after a seeded shuffle."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy() if shuffle else np.arange(n)
    total = sum(fractions) or 1.0
    bounds = [0]
    for f in fractions:
        bounds.append(min(n, bounds[-1] + math.floor(n * f / total + 0.5)))
    bounds[-1] = n
    return [order[a:b] for a, b in itertools.pairwise(bounds)]


def three_ways(cfg: dict[str, Any], n: int, given: set[str]) -> dict[str, np.ndarray]:
    """Positions of the splits that are not `given` separately, cut from one data set of n samples by train.data.split."""
    parts = [p for p in ("train", "val", "test") if p not in given]
    cut = split_positions(n, [cfg["split"].get(p, 0.0) for p in parts], cfg["shuffle"], cfg["seed"])
    return dict(zip(parts, cut))


# ---------------------------------------------------------------- in memory


def in_memory(
    cfg: dict[str, Any],
    x: torch.Tensor,
    y: torch.Tensor | np.ndarray,
    shape: tuple[int, ...],
    classes: list[str],
    own_test: Any = None,
    targets: Targets = CLASS_TARGETS,
) -> Splits:
    """Splits of in-memory tensors; small float data is fitted once, uint8 data a batch at a time."""
    check_fits("train.data", tuple(x.shape), shape)
    if x.dtype != torch.uint8:
        x = fit_to_input(channels_first(x, shape), shape)
    data = ArraySamples(x, np.asarray(y), shape, targets)
    parts = three_ways(cfg, len(data), {"test"} if own_test is not None else set())
    splits = {k: MapSplit(data, v) for k, v in parts.items()}
    test = splits["test"] if own_test is None else MapSplit(ArraySamples(own_test[0], np.asarray(own_test[1]), shape, targets))
    return Splits(splits["train"], splits["val"], test, classes, streamed=False)


def read_digits() -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The 1,797 handwritten digits shipped in netdsl/data (8 x 8, 16 grey levels; UCI optdigits test set), no download.

    `digits.csv.gz` is scikit-learn's file (64 pixels and the label per row; licence in DIGITS-LICENSE.md beside it),
    read as `load_digits()` reads it, without scikit-learn.
    """
    from importlib.resources import files

    with (files("netdsl") / "data" / "digits.csv.gz").open("rb") as raw, gzip.open(raw, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    images, target = table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    x = torch.tensor(images, dtype=torch.float32)[:, None] / 16.0
    return x, torch.tensor(target, dtype=torch.int64), [str(c) for c in range(10)]


@source("digits")
def digits(cfg: dict[str, Any], shape: tuple[int, ...], base: Path, targets: Targets) -> Splits:
    x, y, classes = read_digits()
    return in_memory(cfg, x, y, shape, classes, targets=targets)


def make_synthetic(shape: tuple[int, ...], samples: int, num_classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Separable class prototypes plus noise: a smoke-test data set that a network can learn quickly."""
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.rand(num_classes, *shape, generator=g)
    y = torch.randint(0, num_classes, (samples,), generator=g)
    x = (0.7 * prototypes[y] + 0.3 * torch.rand(samples, *shape, generator=g)).clamp(0, 1)
    return x, y, [f"class{i}" for i in range(num_classes)]


@source("synthetic")
def synthetic(cfg: dict[str, Any], shape: tuple[int, ...], base: Path, targets: Targets) -> Splits:
    x, y, classes = make_synthetic(shape, cfg["samples"], cfg["num_classes"], cfg["seed"])
    return in_memory(cfg, x, y, shape, classes, targets=targets)


@source("shapes", kinds=("mask", "class", "input"))
def shapes(cfg: dict[str, Any], shape: tuple[int, ...], base: Path, targets: Targets) -> Splits:
    """Generated segmentation data (netdsl/train/shapes.py): masks of classes background, circle, square, triangle;
    for classification (or as labels beside the input), the class of each image's largest shape: circle, square, triangle."""
    from netdsl.train.shapes import SHAPE_CLASSES, make_shapes

    if len(shape) != 3 or min(shape[1:]) < 8:
        raise fail("train.data", f"source shapes draws images of at least 8 x 8 (C x H x W); the spec's input is {shape_text(shape)}")
    x, masks, largest = make_shapes(shape, cfg.get("samples", 512), cfg.get("seed", 0))
    if targets.kind == "mask":
        return in_memory(cfg, x, masks.numpy(), shape, SHAPE_CLASSES, targets=targets)
    return in_memory(cfg, x, (largest - 1).numpy(), shape, SHAPE_CLASSES[1:], targets=targets)


def read_idx(path: Path, dims: int) -> torch.Tensor:
    opener: Any = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if data[:4] != bytes((0, 0, 0x08, dims)):
        raise fail(str(path), f"not an IDX file of unsigned bytes in {dims} dimension(s): magic number 0x{data[:4].hex()}, expected 0x{0x800 + dims:08x}")
    shape = struct.unpack(f">{dims}I", data[4 : 4 + 4 * dims].ljust(4 * dims, b"\0"))
    if len(data) != 4 + 4 * dims + math.prod(shape):
        raise fail(str(path), f"{len(data)} bytes, but its header ({'x'.join(map(str, shape))}) needs {4 + 4 * dims + math.prod(shape)}")
    return torch.frombuffer(bytearray(data[4 + 4 * dims :]), dtype=torch.uint8).view(*shape)


def find_idx(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (folder / name).exists():
            return folder / name
    raise fail(str(folder), f"no {stem}[.gz] here (MNIST/Fashion-MNIST IDX files)")


@source("mnist_idx")
def mnist_idx(cfg: dict[str, Any], shape: tuple[int, ...], base: Path, targets: Targets) -> Splits:
    """The four IDX files of MNIST or Fashion-MNIST: their own test set; train split into train and val."""
    path = path_of(cfg, "path", base)
    out = []
    for prefix in ("train", "t10k"):
        images, labels = read_idx(find_idx(path, f"{prefix}-images-idx3-ubyte"), 3), read_idx(find_idx(path, f"{prefix}-labels-idx1-ubyte"), 1)
        if len(images) != len(labels):
            raise fail(str(path), f"{prefix}: {len(images)} images but {len(labels)} labels")
        out.append((images[:, None], labels.long()))
    return in_memory(cfg, *out[0], shape, [str(i) for i in range(10)], own_test=out[1], targets=targets)


@source("cifar10_bin")
def cifar10_bin(cfg: dict[str, Any], shape: tuple[int, ...], base: Path, targets: Targets) -> Splits:
    """The CIFAR-10 binary version: data_batch_1..5.bin and test_batch.bin, 1 label byte + 3,072 pixel bytes each."""
    path = path_of(cfg, "path", base)

    def read(files: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
        for f in files:
            if f.stat().st_size % 3073:
                raise fail(str(f), "size is not a multiple of 3,073 bytes (CIFAR-10 binary records)")
        raw = b"".join(f.read_bytes() for f in files)
        records = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(-1, 3073)
        return records[:, 1:].reshape(-1, 3, 32, 32), records[:, 0].long()

    train_files = sorted(path.glob("data_batch_*.bin"))
    if not train_files or not (path / "test_batch.bin").exists():
        raise fail(str(path), "expected data_batch_1..5.bin and test_batch.bin (the CIFAR-10 binary version)")
    meta = path / "batches.meta.txt"
    classes = [c for c in meta.read_text().split() if c] if meta.exists() else CIFAR10_CLASSES
    return in_memory(cfg, *read(train_files), shape, classes, own_test=read([path / "test_batch.bin"]), targets=targets)


# ---------------------------------------------------------------- memory-mapped arrays


def _arrays(cfg: dict[str, Any], shape: tuple[int, ...], base: Path, targets: Targets, reader: Callable[[Path, Targets], Any]) -> Splits:
    notes: list[str] = []

    def open_(key: str) -> ArraySamples:
        path = path_of(cfg, key, base)
        x, y = reader(path, targets)
        y, said = array_targets(str(path), x, y, shape, targets)
        notes.extend(said)
        check_fits(str(path), x.shape, shape)
        return ArraySamples(x, y, shape, targets, str(path))

    data = open_("path")
    given = {p: open_(f"{p}_path") for p in ("val", "test") if f"{p}_path" in cfg}
    parts = three_ways(cfg, len(data), set(given))
    splits: dict[str, SplitData] = {k: MapSplit(data, v) for k, v in parts.items()}
    splits |= {k: MapSplit(v) for k, v in given.items()}
    return Splits(splits["train"], splits["val"], splits["test"], array_classes(data, targets), notes=notes)


def array_classes(data: ArraySamples, targets: Targets) -> list[str]:
    """Class names of an array data set: "0" .. the highest label, or the task's class count for masks and 0/1 vectors."""
    if targets.kind in ("class", "input"):
        top = int(data.labels.max()) + 1 if len(data.labels) and data.labelled else 0
        return [str(c) for c in range(top)]
    if targets.kind == "mask":
        return [str(c) for c in range(targets.classes or 0)]
    if targets.kind == "multihot":
        return [str(c) for c in range(targets.classes or (data.y.shape[1] if data.y is not None else 0))]
    return []


def check_fits(where: str, x_shape: tuple[int, ...], shape: tuple[int, ...]) -> None:
    """The array's samples can be fitted to the input (checked on an empty batch of the same layout)."""
    try:
        fit_to_input(channels_first(torch.zeros((0, *x_shape[1:])), shape), shape)
    except (ValueError, RuntimeError) as exc:
        raise fail("train.data", f"{exc} (the spec's input is {shape_text(shape)})") from None


@source("npz", kinds=TARGET_KINDS)
def npz(cfg: dict[str, Any], shape: tuple[int, ...], base: Path, targets: Targets) -> Splits:
    """An .npz with arrays x (the samples) and y (the targets, shaped per task: netdsl/train/arrays.py)."""
    return _arrays(cfg, shape, base, targets, map_npz)


@source("npy", kinds=TARGET_KINDS)
def npy(cfg: dict[str, Any], shape: tuple[int, ...], base: Path, targets: Targets) -> Splits:
    """A folder with x.npy and y.npy (as npz's x and y), memory-mapped."""
    return _arrays(cfg, shape, base, targets, map_npy_folder)


@source("csv", kinds=("class", "input", "values"))
def csv_table(cfg: dict[str, Any], shape: tuple[int, ...], base: Path, targets: Targets) -> Splits:
    """A CSV table: a label column (train.data.label_column) and feature columns (netdsl/train/tables.py)."""
    from netdsl.train.tables import read_csv

    column = cfg.get("label_column", "label")
    x, y, classes = read_csv(path_of(cfg, "path", base), shape, targets, column, None)
    data = ArraySamples(torch.from_numpy(x), y, shape, targets)
    given = {}
    for p in ("val", "test"):
        if f"{p}_path" in cfg:
            px, py, _ = read_csv(path_of(cfg, f"{p}_path", base), shape, targets, column, classes or None)
            given[p] = ArraySamples(torch.from_numpy(px), py, shape, targets)
    parts = three_ways(cfg, len(data), set(given))
    splits: dict[str, SplitData] = {k: MapSplit(data, v) for k, v in parts.items()}
    splits |= {k: MapSplit(v) for k, v in given.items()}
    return Splits(splits["train"], splits["val"], splits["test"], classes, streamed=False)


# ---------------------------------------------------------------- image folders


@source("image_folder", kinds=("class", "input", "mask"))
def image_folder(cfg: dict[str, Any], shape: tuple[int, ...], base: Path, targets: Targets) -> Splits:
    """Class folders, or train/ val/ test/ folders of class folders; val_path/test_path name separate folders.

    For masks: images/ and masks/ folders (or train/ val/ test/ folders of those, netdsl/train/mask_folder.py);
    when the input is the target, a folder of images without class folders is read too (every label 0).
    """
    if len(shape) != 3:
        raise fail("train.data", f"image_folder needs an image input (C x H x W); the spec's input is {shape_text(shape)}")
    root = path_of(cfg, "path", base)
    layout = split_layout(root) if root.is_dir() else None
    folders = dict(layout or {"train": root})
    folders |= {p: path_of(cfg, f"{p}_path", base) for p in ("val", "test") if f"{p}_path" in cfg}
    skip = cfg["skip_corrupt"]
    from netdsl.train.progress import task

    listings: dict[str, FolderListing | MaskListing]
    if targets.kind == "mask":
        with task(f"listing images and masks in {root}", None):
            listings = {p: scan_mask_folder(f) for p, f in folders.items()}
        classes = [str(c) for c in range(targets.classes or 0)]

        def split_of(listing: Any, positions: np.ndarray | None) -> MapSplit:
            return MapSplit(MaskedImages(listing.images, listing.masks, shape, targets), positions, skip_corrupt=skip)

    else:
        with task(f"listing images in {root}", None) as bar:
            flat = targets.kind == "input" and not has_class_folders(folders["train"])
            train = scan_flat_folder(folders["train"], bar.advance) if flat else scan_image_folder(folders["train"], progress=bar.advance)
            listings = {"train": train}
            for p in ("val", "test"):
                if p in folders:
                    listings[p] = scan_flat_folder(folders[p], bar.advance) if flat else scan_image_folder(folders[p], train.classes, bar.advance)
        classes = train.classes

        def split_of(listing: Any, positions: np.ndarray | None) -> MapSplit:
            return MapSplit(ImageFiles(listing.files, listing.labels, shape), positions, skip_corrupt=skip)

    parts = three_ways(cfg, len(listings["train"]), set(listings) - {"train"})
    splits = {k: split_of(listings["train"], v) for k, v in parts.items()}
    splits |= {k: split_of(v, None) for k, v in listings.items() if k != "train"}
    found = f"{len(classes)} classes" if targets.kind != "mask" else "images with masks"
    notes = [
        f"image_folder {root}: {found}; "
        + ", ".join(f"{k} {len(splits[k]):,}" + (f" (from {folders[k].name}/)" if k in listings and layout else "") for k in ("train", "val", "test"))
    ]
    ignored = [f for listing in listings.values() for f in listing.ignored]
    if ignored:
        notes.append(f"left out {len(ignored)} file(s) that are not images by their suffix (first: {ignored[0]})")
    return Splits(splits["train"], splits["val"], splits["test"], classes, notes=notes)


@source("webdataset", kinds=("class", "input", "mask"))
def webdataset(cfg: dict[str, Any], shape: tuple[int, ...], base: Path, targets: Targets) -> Splits:
    from netdsl.train.shards import webdataset_splits

    return webdataset_splits(cfg, shape, base, targets)


# ---------------------------------------------------------------- the whole step


def open_source(cfg: dict[str, Any], input_shape: tuple[int, ...], base: Path, targets: Targets = CLASS_TARGETS) -> Splits:
    """The configured source split three ways (train.data as resolved), giving y as `targets` asks; nothing is decoded yet."""
    if targets.kind not in TARGET_KINDS:
        raise ValueError(f"unknown target kind {targets.kind!r} (kinds: {', '.join(TARGET_KINDS)})")
    if "source" not in cfg:
        raise fail("train.data", "no training data: name a source in train.data.source (" + ", ".join(SOURCES) + ")")
    fractions = cfg["split"]
    if sum(fractions.values()) > 1 + 1e-9:
        listed = ", ".join(f"{k} {v:g}" for k, v in fractions.items())
        raise fail("train.data.split", f"the fractions ({listed}) add up to {sum(fractions.values()):g}, more than the whole data set")
    if ("test_path" in cfg or "val_path" in cfg) and cfg["source"] not in ("image_folder", "npz", "npy", "csv"):
        raise fail("train.data", f"val_path/test_path need source image_folder, npz, npy or csv, not '{cfg['source']}'")
    name = cfg["source"]
    if targets.kind not in SOURCE_KINDS[name]:
        able = ", ".join(s for s, kinds in SOURCE_KINDS.items() if targets.kind in kinds)
        raise fail("train.data.source", f"source '{name}' gives no {KIND_WORDS[targets.kind]}, which the task needs; sources that do: {able}")
    splits = SOURCES[name](cfg, input_shape, base, targets)
    if len(splits.train) == 0:
        raise fail("train.data", "the training split is empty")
    if cfg.get("classes"):
        splits.classes = list(cfg["classes"])
    return splits


def load_splits(cfg: dict[str, Any], input_shape: tuple[int, ...], base: Path, reading: Reading | None = None, targets: Targets = CLASS_TARGETS) -> Splits:
    """open_source, then the normalization (for eval, predict and tests; `netdsl train` shows progress in between)."""
    splits = open_source(cfg, input_shape, base, targets)
    splits.mean, splits.std = normalization(cfg, splits.train, input_shape, reading or Reading(batch_size=256))
    return splits


def normalization(cfg: dict[str, Any], train: SplitData, shape: tuple[int, ...], reading: Reading, progress: Any = None) -> tuple[list[float], list[float]]:
    """Per-channel mean and std: given, ImageNet's, identity, or computed from a seeded sample of the training split.

    Channels are the input's first dimension for images (C x H x W) and signals (C x L); features (F) have one.
    """
    setting = cfg["normalize"]
    channels = shape[0] if len(shape) in (2, 3) else 1
    if setting is False:
        return [0.0] * channels, [1.0] * channels
    if setting == "imagenet":
        if channels != 3:
            raise fail("train.data.normalize", f"imagenet statistics are for 3-channel images; the spec's input has {channels}")
        return list(IMAGENET[0]), list(IMAGENET[1])
    if isinstance(setting, dict):
        if len(setting["mean"]) != channels or len(setting["std"]) != channels:
            raise fail("train.data.normalize", f"mean and std need {channels} value(s), one per input channel")
        return [float(v) for v in setting["mean"]], [float(v) for v in setting["std"]]
    count = min(cfg["stats_samples"], len(train))
    total = torch.zeros(channels, dtype=torch.float64)
    squares = torch.zeros(channels, dtype=torch.float64)
    n = 0
    sample_reading = Reading(batch_size=max(1, min(256, reading.batch_size)), workers=reading.workers)
    for x in train.sample(count, cfg["seed"], sample_reading):
        if not x.numel():  # every sample of the batch was left out (skip_corrupt)
            continue
        flat = x.double().reshape(len(x), channels, -1).transpose(0, 1).reshape(channels, -1)
        total += flat.sum(1)
        squares += (flat * flat).sum(1)
        n += flat.shape[1]
        if progress is not None:
            progress(len(x))
    mean = total / max(n, 1)
    std = ((squares / max(n, 1) - mean * mean).clamp_min(0) * n / max(n - 1, 1)).sqrt().clamp_min(1e-6)
    return [round(float(v), 6) for v in mean], [round(float(v), 6) for v in std]
