"""Data sources: `train.data` -> Splits (train, val, test). One registered function per source.

| source | read as |
|---|---|
| digits, synthetic | in memory (small), fitted to the input once |
| mnist_idx, cifar10_bin | in memory as uint8 (the files' own size), fitted a batch at a time |
| npz, npy | memory-mapped (x), a batch's rows read when needed |
| image_folder | file names listed; images decoded in DataLoader workers, a batch ahead |
| webdataset | tar shards streamed, split across ranks and workers (netdsl/train/shards.py) |
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

from netdsl.train.arrays import ArraySamples, map_npy_folder, map_npz
from netdsl.train.fitting import fit_to_input
from netdsl.train.image_folder import FolderListing, ImageFiles, scan_image_folder, split_layout
from netdsl.train.loader import MapSplit
from netdsl.train.splits import DataError, Reading, SplitData, Splits, fail

__all__ = ["SOURCES", "DataError", "Splits", "load_splits", "normalization", "open_source"]

Reader = Callable[[dict[str, Any], tuple[int, ...], Path], Splits]
SOURCES: dict[str, Reader] = {}

IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])  # torchvision's ImageNet statistics, which its pretrained weights expect
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def source(name: str) -> Callable[[Reader], Reader]:
    def register(fn: Reader) -> Reader:
        SOURCES[name] = fn
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


def in_memory(cfg: dict[str, Any], x: torch.Tensor, y: torch.Tensor, shape: tuple[int, ...], classes: list[str], own_test: Any = None) -> Splits:
    """Splits of in-memory tensors; small float data is fitted once, uint8 data a batch at a time."""
    check_fits("train.data", tuple(x.shape), shape)
    if x.dtype != torch.uint8:
        x = fit_to_input(x, shape)
    data = ArraySamples(x, y.numpy(), shape)
    parts = three_ways(cfg, len(y), {"test"} if own_test is not None else set())
    splits = {k: MapSplit(data, v) for k, v in parts.items()}
    test = splits["test"] if own_test is None else MapSplit(ArraySamples(own_test[0], own_test[1].numpy(), shape))
    return Splits(splits["train"], splits["val"], test, classes, streamed=False)


def read_digits() -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """scikit-learn's bundled 1,797 handwritten digits (8 x 8, 16 grey levels; UCI optdigits test set), no download.

    Read straight from the package's `datasets/data/digits.csv.gz` (64 pixels and the label per row), which is
    what `load_digits()` parses, without importing scikit-learn and SciPy (about 2.5 s on 2 cores).
    """
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    csv = Path(next(iter(spec.submodule_search_locations or []), "")) / "datasets" / "data" / "digits.csv.gz" if spec else None
    if csv is not None and csv.is_file():
        with gzip.open(csv, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.float32)
        images, target = table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    else:  # a scikit-learn that keeps the file elsewhere
        from sklearn.datasets import load_digits  # type: ignore[import-untyped]

        bunch = load_digits()
        images, target = bunch.images, bunch.target
    x = torch.tensor(images, dtype=torch.float32)[:, None] / 16.0
    return x, torch.tensor(target, dtype=torch.int64), [str(c) for c in range(10)]


@source("digits")
def digits(cfg: dict[str, Any], shape: tuple[int, ...], base: Path) -> Splits:
    x, y, classes = read_digits()
    return in_memory(cfg, x, y, shape, classes)


def make_synthetic(shape: tuple[int, ...], samples: int, num_classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Separable class prototypes plus noise: a smoke-test data set that a network can learn quickly."""
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.rand(num_classes, *shape, generator=g)
    y = torch.randint(0, num_classes, (samples,), generator=g)
    x = (0.7 * prototypes[y] + 0.3 * torch.rand(samples, *shape, generator=g)).clamp(0, 1)
    return x, y, [f"class{i}" for i in range(num_classes)]


@source("synthetic")
def synthetic(cfg: dict[str, Any], shape: tuple[int, ...], base: Path) -> Splits:
    x, y, classes = make_synthetic(shape, cfg["samples"], cfg["num_classes"], cfg["seed"])
    return in_memory(cfg, x, y, shape, classes)


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
def mnist_idx(cfg: dict[str, Any], shape: tuple[int, ...], base: Path) -> Splits:
    """The four IDX files of MNIST or Fashion-MNIST: their own test set; train split into train and val."""
    path = path_of(cfg, "path", base)
    out = []
    for prefix in ("train", "t10k"):
        images, labels = read_idx(find_idx(path, f"{prefix}-images-idx3-ubyte"), 3), read_idx(find_idx(path, f"{prefix}-labels-idx1-ubyte"), 1)
        if len(images) != len(labels):
            raise fail(str(path), f"{prefix}: {len(images)} images but {len(labels)} labels")
        out.append((images[:, None], labels.long()))
    return in_memory(cfg, *out[0], shape, [str(i) for i in range(10)], own_test=out[1])


@source("cifar10_bin")
def cifar10_bin(cfg: dict[str, Any], shape: tuple[int, ...], base: Path) -> Splits:
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
    return in_memory(cfg, *read(train_files), shape, classes, own_test=read([path / "test_batch.bin"]))


# ---------------------------------------------------------------- memory-mapped arrays


def _arrays(cfg: dict[str, Any], shape: tuple[int, ...], base: Path, reader: Callable[[Path], Any]) -> Splits:
    def open_(key: str) -> ArraySamples:
        path = path_of(cfg, key, base)
        x, y = reader(path)
        if x.shape[0] != len(y):
            raise fail(str(path), f"x has {x.shape[0]} samples but y has {len(y)}")
        check_fits(str(path), x.shape, shape)
        return ArraySamples(x, y, shape)

    data = open_("path")
    given = {p: open_(f"{p}_path") for p in ("val", "test") if f"{p}_path" in cfg}
    parts = three_ways(cfg, len(data), set(given))
    splits: dict[str, SplitData] = {k: MapSplit(data, v) for k, v in parts.items()}
    splits |= {k: MapSplit(v) for k, v in given.items()}
    top = int(data.y.max()) + 1 if len(data.y) else 0
    return Splits(splits["train"], splits["val"], splits["test"], [str(c) for c in range(top)])


def check_fits(where: str, x_shape: tuple[int, ...], shape: tuple[int, ...]) -> None:
    """The array's samples can be fitted to the input (checked on an empty batch of the same layout)."""
    from netdsl.train.arrays import channels_first

    try:
        fit_to_input(channels_first(torch.zeros((0, *x_shape[1:]))), shape)
    except (ValueError, RuntimeError) as exc:
        raise fail("train.data", f"{exc} (the spec's input is {'x'.join(map(str, shape))})") from None


@source("npz")
def npz(cfg: dict[str, Any], shape: tuple[int, ...], base: Path) -> Splits:
    """An .npz with arrays x (N x C x H x W, N x H x W x C, N x H x W or N x F; uint8 is scaled by 1/255) and y (N labels)."""
    return _arrays(cfg, shape, base, map_npz)


@source("npy")
def npy(cfg: dict[str, Any], shape: tuple[int, ...], base: Path) -> Splits:
    """A folder with x.npy and y.npy (as npz's x and y), memory-mapped."""
    return _arrays(cfg, shape, base, map_npy_folder)


# ---------------------------------------------------------------- image folders


@source("image_folder")
def image_folder(cfg: dict[str, Any], shape: tuple[int, ...], base: Path) -> Splits:
    """Class folders, or train/ val/ test/ folders of class folders; val_path/test_path name separate folders."""
    if len(shape) != 3:
        raise fail("train.data", f"image_folder needs an image input (C x H x W); the spec's input is {'x'.join(map(str, shape))}")
    root = path_of(cfg, "path", base)
    layout = split_layout(root) if root.is_dir() else None
    folders = dict(layout or {"train": root})
    folders |= {p: path_of(cfg, f"{p}_path", base) for p in ("val", "test") if f"{p}_path" in cfg}
    from netdsl.train.progress import task

    with task(f"listing images in {root}", None) as bar:
        train = scan_image_folder(folders["train"], progress=bar.advance)
        listings = {"train": train} | {p: scan_image_folder(folders[p], train.classes, bar.advance) for p in ("val", "test") if p in folders}
    parts = three_ways(cfg, len(train), set(listings) - {"train"})
    skip = cfg["skip_corrupt"]

    def split_of(listing: FolderListing, positions: np.ndarray | None) -> MapSplit:
        return MapSplit(ImageFiles(listing.files, listing.labels, shape), positions, skip_corrupt=skip)

    splits = {k: split_of(train, v) for k, v in parts.items()}
    splits |= {k: split_of(v, None) for k, v in listings.items() if k != "train"}
    notes = [
        f"image_folder {root}: {len(train.classes)} classes; "
        + ", ".join(f"{k} {len(splits[k]):,}" + (f" (from {folders[k].name}/)" if k in listings and layout else "") for k in ("train", "val", "test"))
    ]
    ignored = [f for listing in listings.values() for f in listing.ignored]
    if ignored:
        notes.append(f"left out {len(ignored)} file(s) that are not images by their suffix (first: {ignored[0]})")
    return Splits(splits["train"], splits["val"], splits["test"], train.classes, notes=notes)


@source("webdataset")
def webdataset(cfg: dict[str, Any], shape: tuple[int, ...], base: Path) -> Splits:
    from netdsl.train.shards import webdataset_splits

    return webdataset_splits(cfg, shape, base)


# ---------------------------------------------------------------- the whole step


def open_source(cfg: dict[str, Any], input_shape: tuple[int, ...], base: Path) -> Splits:
    """The configured source split three ways (train.data as resolved); nothing is decoded yet."""
    if "source" not in cfg:
        raise fail("train.data", "no training data: name a source in train.data.source (" + ", ".join(SOURCES) + ")")
    fractions = cfg["split"]
    if sum(fractions.values()) > 1 + 1e-9:
        listed = ", ".join(f"{k} {v:g}" for k, v in fractions.items())
        raise fail("train.data.split", f"the fractions ({listed}) add up to {sum(fractions.values()):g}, more than the whole data set")
    if ("test_path" in cfg or "val_path" in cfg) and cfg["source"] not in ("image_folder", "npz", "npy"):
        raise fail("train.data", f"val_path/test_path need source image_folder, npz or npy, not '{cfg['source']}'")
    splits = SOURCES[cfg["source"]](cfg, input_shape, base)
    if len(splits.train) == 0:
        raise fail("train.data", "the training split is empty")
    if cfg.get("classes"):
        splits.classes = list(cfg["classes"])
    return splits


def load_splits(cfg: dict[str, Any], input_shape: tuple[int, ...], base: Path, reading: Reading | None = None) -> Splits:
    """open_source, then the normalization (for eval, predict and tests; `netdsl train` shows progress in between)."""
    splits = open_source(cfg, input_shape, base)
    splits.mean, splits.std = normalization(cfg, splits.train, input_shape, reading or Reading(batch_size=256))
    return splits


def normalization(cfg: dict[str, Any], train: SplitData, shape: tuple[int, ...], reading: Reading, progress: Any = None) -> tuple[list[float], list[float]]:
    """Per-channel mean and std: given, ImageNet's, identity, or computed from a seeded sample of the training split."""
    setting = cfg["normalize"]
    channels = shape[0] if len(shape) == 3 else 1
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
