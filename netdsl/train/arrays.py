"""Array data sets: in memory (digits, synthetic, shapes, MNIST, CIFAR-10) or memory-mapped .npy / .npz files, read a batch at a time.

An .npz holds arrays named `x` (the samples) and `y` (the targets); an npy folder holds x.npy and y.npy. x is
N x C x H x W, N x H x W x C or N x H x W (images; uint8 is scaled by 1/255), N x C x L or N x L x C (signals,
for a C x L input; N x L for a 1 x L input) or N x F (features). y depends on the task (batch_targets.py):
N class indices (classification), N x H x W or N x 1 x H x W integer masks (segmentation), N x *output shape
numbers (regression; N alone for one value), N x classes of 0/1 (multilabel), nothing needed (reconstruction).

Only class labels are held in memory; x (and dense targets) are memory-mapped, and a batch's rows are read when
the batch is needed, converted (uint8 / 255, channels first) and fitted to the spec's input shape.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from netdsl.tasks.targets import Targets
from netdsl.train.batch_targets import CLASS_TARGETS, BadTarget, check_target_array, input_labels, masks_from_rows, multihot_from_rows, read_labels
from netdsl.train.fitting import fit_to_input
from netdsl.train.splits import Batch, Failure, fail


@dataclass(frozen=True)
class MappedArray:
    """Where a .npy array's data lies in a file (its own .npy, or an uncompressed member of an .npz), opened lazily in each process."""

    path: str
    offset: int
    dtype: str
    shape: tuple[int, ...]
    fortran: bool = False

    def open(self) -> np.ndarray:
        return np.memmap(self.path, dtype=np.dtype(self.dtype), mode="r", offset=self.offset, shape=self.shape, order="F" if self.fortran else "C")


def channels_first(x: torch.Tensor, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """Samples in the layout of the spec's input `shape` (an image input when not given).

    Image inputs (C x H x W): N x H x W -> N x 1 x H x W; N x H x W x C (C 1 or 3, dimension 1 not) -> N x C x H x W.
    Signal inputs (C x L): N x L -> N x 1 x L; N x L x C (dimension 1 not C) -> N x C x L. Anything else as is.
    """
    if shape is not None and len(shape) == 2:
        if x.dim() == 2:
            return x[:, None]
        if x.dim() == 3 and x.shape[1] != shape[0] and x.shape[2] == shape[0]:
            return x.permute(0, 2, 1)
        return x
    if x.dim() == 3:
        return x[:, None]
    if x.dim() == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        return x.permute(0, 3, 1, 2)
    return x


ArrayLike = np.ndarray | torch.Tensor | MappedArray


class ArraySamples(torch.utils.data.Dataset[Any]):
    """Rows of an array (in memory, or a MappedArray) with their targets; `__getitems__` reads and fits a whole batch at once.

    `y` is class labels (int64 N, kept in memory as `labels`) for the class and input kinds, else the stored targets
    (in memory or mapped) that `targets` says how to read; a target the task cannot use comes back as a Failure
    naming the sample.
    """

    def __init__(self, x: ArrayLike, y: ArrayLike | None, shape: tuple[int, ...], targets: Targets = CLASS_TARGETS, where: str = "train.data") -> None:
        self.source, self.shape, self.targets, self.where = x, shape, targets, where
        labelled = targets.kind in ("class", "input")
        #: False for the input as target from a source without labels (y None): every label is 0, and there are no classes
        self.labelled = y is not None
        if y is None:
            y = np.zeros(int(x.shape[0]), np.int64)
        self.labels: np.ndarray = np.asarray(y, dtype=np.int64) if labelled else np.zeros(0, np.int64)
        self.y: ArrayLike | None = None if labelled else y
        self.per_sample = (tuple(targets.shape) or tuple(y.shape[1:])) if targets.kind == "values" else ()
        self._mapped: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return int(self.source.shape[0])

    def rows(self, idx: list[int], name: str = "source") -> np.ndarray | torch.Tensor:
        """Rows `idx` of x (name "source") or of the targets (name "y"), read from the mapped file in this process."""
        array = getattr(self, name)
        if isinstance(array, MappedArray):
            if name not in self._mapped:
                self._mapped[name] = array.open()
            array = self._mapped[name]
        if isinstance(array, torch.Tensor):
            return array[torch.as_tensor(idx, dtype=torch.long)]
        rows = array[np.asarray(idx, dtype=np.int64)] if len(idx) else np.zeros((0, *array.shape[1:]), array.dtype)
        return np.ascontiguousarray(rows)

    def targets_of(self, idx: list[int]) -> torch.Tensor:
        """The batch's y as the task asks for it (netdsl/train/batch_targets.py)."""
        kind = self.targets.kind
        if kind in ("class", "input"):
            return torch.from_numpy(self.labels[np.asarray(idx, dtype=np.int64)])
        rows = self.rows(idx, "y")
        rows = rows.numpy() if isinstance(rows, torch.Tensor) else rows
        if kind == "mask":
            return masks_from_rows(rows, self.shape[1:], self.targets)
        if kind == "multihot":
            return multihot_from_rows(rows)
        return torch.from_numpy(rows.astype(np.float32)).reshape(len(idx), *self.per_sample)

    def __getitems__(self, idx: list[int]) -> Batch | Failure:
        rows = self.rows(idx)
        x = torch.from_numpy(rows) if isinstance(rows, np.ndarray) else rows
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        fitted = fit_to_input(channels_first(x, self.shape), self.shape)
        try:
            y = self.targets_of(idx)
        except BadTarget as exc:
            return Failure(self.where, f"sample {idx[exc.index]}: {exc}")
        return fitted, y, []

    def __getitem__(self, i: int) -> Any:
        batch = self.__getitems__([i])
        if isinstance(batch, Failure):
            raise batch.error()
        return batch[0][0], batch[1][0]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_mapped": {}}  # a worker maps the file itself


def array_targets(
    where: str, x: MappedArray, y: np.ndarray | MappedArray | None, input_shape: tuple[int, ...], targets: Targets
) -> tuple[ArrayLike | None, list[str]]:
    """y as ArraySamples keeps it for the task (labels read, dense targets checked by their header; None: no labels), and notes."""
    if y is not None and y.shape[0] != x.shape[0]:
        raise fail(where, f"x has {x.shape[0]} samples but y has {y.shape[0]}")
    if targets.kind == "input":
        return input_labels(where, y if not isinstance(y, MappedArray) else y.open())
    if y is None:  # only the input kind reads an array without y
        raise fail(where, f"needs y, the {targets.kind} targets")
    if targets.kind == "class":
        return read_labels(where, y if not isinstance(y, MappedArray) else np.asarray(y.open())), []
    dtype = np.dtype(y.dtype) if isinstance(y, MappedArray) else y.dtype
    check_target_array(where, tuple(y.shape), dtype, input_shape, targets)
    return y, []


def _npy_header(f: Any) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    fmt = np.lib.format
    version = fmt.read_magic(f)
    if version not in ((1, 0), (2, 0)):
        raise ValueError(f".npy format version {version[0]}.{version[1]} (1.0 and 2.0 are read)")
    shape, fortran, dtype = (fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0)(f)
    return shape, fortran, dtype


def map_npy(path: Path, offset: int = 0) -> MappedArray:
    """A .npy file (or one starting at `offset` inside a file) as a MappedArray."""
    with open(path, "rb") as f:
        f.seek(offset)
        shape, fortran, dtype = _npy_header(f)
        if dtype.hasobject:
            raise fail(str(path), "holds Python objects (dtype=object), which are not read; save numeric arrays")
        return MappedArray(str(path), f.tell(), dtype.str, tuple(shape), fortran)


def cache_dir() -> Path:
    """Where compressed .npz files are unpacked once: $NETDSL_CACHE, else $XDG_CACHE_HOME/netdsl, else ~/.cache/netdsl."""
    if os.environ.get("NETDSL_CACHE"):
        return Path(os.environ["NETDSL_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "netdsl"


def _member_offset(path: Path, info: zipfile.ZipInfo) -> int:
    """Where an uncompressed zip member's bytes start: after its local header (30 bytes, name and extra field)."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        return info.header_offset + 30 + int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little")


def _unpacked(path: Path, archive: zipfile.ZipFile, member: str) -> Path:
    """A compressed member copied out once (streamed, atomically) to the cache, keyed by the archive's path, size and mtime."""
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:20]
    target = cache_dir() / "npz" / key / member
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        with archive.open(member) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 16 << 20)
        os.replace(tmp, target)
    return target


def map_npz(path: Path, targets: Targets = CLASS_TARGETS) -> tuple[MappedArray, np.ndarray | MappedArray | None]:
    """x memory-mapped and y from an .npz (uncompressed members, np.savez, are mapped in place; compressed ones unpacked
    once): class labels are read, other targets mapped (the input kind reads y only where it holds labels, and needs none)."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        head = path.read_bytes()[:6]
        why = "it holds a single array (.npy), not named arrays" if head == b"\x93NUMPY" else "not a zip archive of .npy arrays (np.savez writes one)"
        raise fail(str(path), f"not a readable .npz file: {why}") from None
    except OSError as exc:
        raise fail(str(path), f"not a readable .npz file: {exc.strerror or exc}") from None
    with archive:
        members = {Path(n).stem: archive.getinfo(n) for n in archive.namelist() if n.endswith(".npy")}
        if "x" not in members or ("y" not in members and targets.kind != "input"):
            raise fail(str(path), f"needs arrays 'x' and 'y'; has {', '.join(members) or 'none'}")

        def mapped(info: zipfile.ZipInfo) -> MappedArray:
            if info.compress_type == zipfile.ZIP_STORED:
                return map_npy(path, _member_offset(path, info))
            return map_npy(_unpacked(path, archive, info.filename))

        try:
            x = mapped(members["x"])
            y: np.ndarray | MappedArray | None = None
            if "y" in members and targets.kind == "class":
                with archive.open(members["y"]) as f:
                    y = np.lib.format.read_array(f, allow_pickle=False)
            elif "y" in members:
                y = mapped(members["y"])
        except (ValueError, OSError, EOFError) as exc:
            raise fail(str(path), f"not a readable .npz file: {exc}") from None
    return x, y


def map_npy_folder(path: Path, targets: Targets = CLASS_TARGETS) -> tuple[MappedArray, np.ndarray | MappedArray | None]:
    """x.npy memory-mapped and y.npy from a folder, as map_npz reads x and y."""
    if not path.is_dir():
        raise fail(str(path), "source npy wants a folder holding x.npy and y.npy")
    needed = ("x.npy",) if targets.kind == "input" else ("x.npy", "y.npy")
    missing = [n for n in needed if not (path / n).is_file()]
    if missing:
        raise fail(str(path), f"needs {' and '.join(missing)} (source npy: a folder with x.npy, N samples, and y.npy, N labels)")
    try:
        x = map_npy(path / "x.npy")
        y: np.ndarray | MappedArray | None = None
        if (path / "y.npy").is_file():
            y = np.load(path / "y.npy", allow_pickle=False) if targets.kind == "class" else map_npy(path / "y.npy")
    except (ValueError, OSError, EOFError) as exc:
        raise fail(str(path), f"not readable .npy files: {exc}") from None
    return x, y
