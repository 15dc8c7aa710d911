"""Data sources for training: in-memory tensors of images in [0, 1] at the spec's input shape, split three ways.

Every source yields (x, y) with x: float32 N x C x H x W (or N x features) and y: int64 class indices.
Images are resized to the spec's input and converted to its channel count, so any source fits any spec.
"""

from __future__ import annotations

import gzip
import itertools
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from netdsl.errors import Diagnostic, Loc, SpecError
from netdsl.inputs import IMAGE_SUFFIXES


@dataclass
class Split:
    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Splits:
    train: Split
    val: Split
    test: Split
    classes: list[str]
    mean: list[float]
    std: list[float]


class DataError(SpecError):
    """Data cannot be read or does not fit the spec (a one-line located error, like a spec error)."""


def fail(where: str, message: str) -> DataError:
    return DataError([Diagnostic(Loc(where, 1, 1), message)])


def fit_to_input(x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """N x C x H x W images (or N x features) resized and channel-converted to the spec's input shape."""
    if len(shape) == 1:
        x = x.reshape(len(x), math.prod(x.shape[1:]))  # not -1: an empty split has no size to infer
        if x.shape[1] != shape[0]:
            x = F.interpolate(x[:, None], size=shape[0], mode="linear", align_corners=False)[:, 0]
        return x.contiguous()
    c, *size = shape
    if x.shape[1] != c:
        if x.shape[1] == 1:
            x = x.expand(-1, c, *x.shape[2:])
        elif c == 1:
            x = (x[:, :3] * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)  # ITU-R BT.601 luma
        else:
            raise ValueError(f"cannot convert {x.shape[1]}-channel images to {c} channels")
    if list(x.shape[2:]) != size:
        x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    return x.contiguous()


def digits() -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """scikit-learn's bundled 1,797 handwritten digits (8 x 8, 16 grey levels; UCI optdigits test set), no download.

    Read straight from the package's `datasets/data/digits.csv.gz` (64 pixels and the label per row), which is
    what `load_digits()` parses, without importing scikit-learn and SciPy (about 2.5 s on 2 cores).
    """
    import importlib.util

    import numpy as np

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


def synthetic(shape: tuple[int, ...], samples: int, num_classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Separable class prototypes plus noise: a smoke-test data set that a network can learn quickly."""
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.rand(num_classes, *shape, generator=g)
    y = torch.randint(0, num_classes, (samples,), generator=g)
    x = (0.7 * prototypes[y] + 0.3 * torch.rand(samples, *shape, generator=g)).clamp(0, 1)
    return x, y, [f"class{i}" for i in range(num_classes)]


def _decode(file: Path, size: tuple[int, int] | None) -> torch.Tensor:
    """One image as a 3 x H x W float tensor in [0, 1], resized to `size` if given (Pillow releases the GIL while it decodes)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(file) as img:
            rgb = img.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise fail(str(file), f"cannot decode image: {exc}") from None
    x = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8).view(rgb.height, rgb.width, 3).permute(2, 0, 1).float() / 255.0
    return x if size is None or x.shape[1:] == size else fit_to_input(x[None], (3, *size))[0]


def image_folder(path: Path, size: tuple[int, int] | None = None, workers: int = 0) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """One sub-folder per class, images decoded with Pillow, each resized once: to `size` (H, W) if given, else to the first image's size.

    `workers` > 0 decodes (and resizes) that many images at a time in threads; the result is the same, in the same order.
    Only resized images are kept, so a folder of large photos needs the memory of the data set at the spec's size.
    """
    classes = sorted(p.name for p in path.iterdir() if p.is_dir())
    if not classes:
        raise fail(str(path), "no class sub-folders (expected one folder of images per class)")
    files = [(label, f) for label, name in enumerate(classes) for f in sorted((path / name).iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise fail(str(path), f"no images ({', '.join(IMAGE_SUFFIXES)}) in the class folders")
    first = _decode(files[0][1], size)
    size = (first.shape[1], first.shape[2])
    rest = [f for _, f in files[1:]]
    if workers > 0:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as pool:
            images = list(pool.map(lambda f: _decode(f, size), rest))
    else:
        images = [_decode(f, size) for f in rest]
    return torch.stack([first, *images]), torch.tensor([label for label, _ in files]), classes


def npz(path: Path) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Arrays x (N x C x H x W, N x H x W x C, N x H x W or N x F; uint8 is scaled by 1/255) and y."""
    import numpy as np

    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError("it holds a single array (.npy), not named arrays")
        with loaded as arrays:
            if "x" not in arrays or "y" not in arrays:
                raise fail(str(path), f"needs arrays 'x' and 'y'; has {', '.join(arrays.files) or 'none'}")
            x_np, y_np = arrays["x"], arrays["y"]
    except (OSError, ValueError, EOFError) as exc:
        raise fail(str(path), f"not a readable .npz file: {exc}") from None
    x = torch.from_numpy(np.ascontiguousarray(x_np))
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    if x.dim() == 3:
        x = x[:, None]
    elif x.dim() == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.permute(0, 3, 1, 2)
    y = torch.from_numpy(np.asarray(y_np)).long().reshape(-1)
    if len(y) != len(x):
        raise fail(str(path), f"x has {len(x)} samples but y has {len(y)}")
    return x, y, [str(c) for c in range(int(y.max()) + 1)]


def _idx(path: Path, dims: int) -> torch.Tensor:
    opener: Any = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if data[:4] != bytes((0, 0, 0x08, dims)):
        raise fail(str(path), f"not an IDX file of unsigned bytes in {dims} dimension(s): magic number 0x{data[:4].hex()}, expected 0x{0x800 + dims:08x}")
    shape = struct.unpack(f">{dims}I", data[4 : 4 + 4 * dims].ljust(4 * dims, b"\0"))
    if len(data) != 4 + 4 * dims + math.prod(shape):
        raise fail(str(path), f"{len(data)} bytes, but its header ({'x'.join(map(str, shape))}) needs {4 + 4 * dims + math.prod(shape)}")
    return torch.frombuffer(bytearray(data[4 + 4 * dims :]), dtype=torch.uint8).view(*shape)


def _find(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (folder / name).exists():
            return folder / name
    raise fail(str(folder), f"no {stem}[.gz] here (MNIST/Fashion-MNIST IDX files)")


def mnist_idx(path: Path) -> tuple[Split, Split, list[str]]:
    """The four IDX files of MNIST or Fashion-MNIST: (train, test)."""
    out = []
    for prefix in ("train", "t10k"):
        images, labels = _idx(_find(path, f"{prefix}-images-idx3-ubyte"), 3), _idx(_find(path, f"{prefix}-labels-idx1-ubyte"), 1)
        if len(images) != len(labels):
            raise fail(str(path), f"{prefix}: {len(images)} images but {len(labels)} labels")
        out.append(Split(images[:, None].float() / 255.0, labels.long()))
    return out[0], out[1], [str(i) for i in range(10)]


CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def cifar10_bin(path: Path) -> tuple[Split, Split, list[str]]:
    """The CIFAR-10 binary version: data_batch_1..5.bin and test_batch.bin, 1 label byte + 3,072 pixel bytes each."""

    def read(files: list[Path]) -> Split:
        for f in files:
            if f.stat().st_size % 3073:
                raise fail(str(f), "size is not a multiple of 3,073 bytes (CIFAR-10 binary records)")
        raw = b"".join(f.read_bytes() for f in files)
        records = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(-1, 3073)
        return Split(records[:, 1:].reshape(-1, 3, 32, 32).float() / 255.0, records[:, 0].long())

    train_files = sorted(path.glob("data_batch_*.bin"))
    if not train_files or not (path / "test_batch.bin").exists():
        raise fail(str(path), "expected data_batch_1..5.bin and test_batch.bin (the CIFAR-10 binary version)")
    meta = path / "batches.meta.txt"
    classes = [c for c in meta.read_text().split() if c] if meta.exists() else CIFAR10_CLASSES
    return read(train_files), read([path / "test_batch.bin"]), classes


def _split(x: torch.Tensor, y: torch.Tensor, fractions: list[float], shuffle: bool, seed: int) -> list[Split]:
    n = len(y)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)) if shuffle else torch.arange(n)
    total = sum(fractions)
    bounds = [0]
    for f in fractions:
        bounds.append(min(n, bounds[-1] + math.floor(n * f / total + 0.5)))
    bounds[-1] = n
    return [Split(x[order[a:b]], y[order[a:b]]) for a, b in itertools.pairwise(bounds)]


def load_splits(cfg: dict[str, Any], input_shape: tuple[int, ...], base: Path, workers: int = 0) -> Splits:
    """Read the configured source, split it, fit it to the input shape, and compute normalization.

    `workers` (train.workers) decode image folders in parallel; every other source is one array read.
    """
    source = cfg["source"]
    fractions = cfg["split"]
    if sum(fractions.values()) > 1 + 1e-9:
        listed = ", ".join(f"{k} {v:g}" for k, v in fractions.items())
        raise fail("train.data.split", f"the fractions ({listed}) add up to {sum(fractions.values()):g}, more than the whole data set")

    def resolve(key: str) -> Path:
        if key not in cfg:
            raise fail("train.data", f"source '{source}' needs data.{key}")
        path = (base / cfg[key]).resolve()
        if not path.exists():
            raise fail(str(path), f"no such file or folder (train.data.{key})")
        return path

    size = (input_shape[1], input_shape[2]) if len(input_shape) == 3 else None
    readers = {"image_folder": lambda p: image_folder(p, size, workers), "npz": npz}
    own_test: Split | None = None
    if source == "digits":
        x, y, classes = digits()
    elif source == "synthetic":
        x, y, classes = synthetic(input_shape, cfg["samples"], cfg["num_classes"], cfg["seed"])
    elif source == "image_folder":
        x, y, classes = readers["image_folder"](resolve("path"))
    elif source == "npz":
        x, y, classes = npz(resolve("path"))
    else:
        reader = mnist_idx if source == "mnist_idx" else cifar10_bin
        train, own_test, classes = reader(resolve("path"))
        x, y = train.x, train.y
    if "test_path" in cfg or "val_path" in cfg:
        if source not in readers:
            raise fail("train.data", f"val_path/test_path need source image_folder or npz, not '{source}'")
        if "test_path" in cfg:
            tx, ty, _ = readers[source](resolve("test_path"))
            own_test = Split(tx, ty)
    parts = ["train"] + ["val"] * ("val_path" not in cfg) + ["test"] * (own_test is None)
    splits = dict(zip(parts, _split(x, y, [fractions.get(p, 0.0) for p in parts], cfg["shuffle"], cfg["seed"])))
    if "val_path" in cfg:
        vx, vy, _ = readers[source](resolve("val_path"))
        splits["val"] = Split(vx, vy)
    if own_test is not None:
        splits["test"] = own_test
    try:
        fitted = {k: Split(fit_to_input(s.x, input_shape), s.y) for k, s in splits.items()}
    except ValueError as exc:
        raise fail("train.data", f"{exc} (the spec's input is {'x'.join(map(str, input_shape))})") from None
    if len(fitted["train"]) == 0:
        raise fail("train.data", "the training split is empty")
    mean, std = normalization(cfg["normalize"], fitted["train"].x)
    return Splits(fitted["train"], fitted["val"], fitted["test"], list(cfg.get("classes") or classes), mean, std)


def normalization(setting: Any, x: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std: given, computed from the training split, or identity."""
    channels = x.shape[1] if x.dim() == 4 else 1
    if setting is False:
        return [0.0] * channels, [1.0] * channels
    if isinstance(setting, dict):
        return [float(v) for v in setting["mean"]], [float(v) for v in setting["std"]]
    dims = (0, 2, 3) if x.dim() == 4 else (0, 1)
    mean, std = x.mean(dims), x.std(dims).clamp_min(1e-6)
    return [round(float(v), 6) for v in mean.reshape(-1)], [round(float(v), 6) for v in std.reshape(-1)]
