"""Array data sets: in memory (digits, synthetic, MNIST, CIFAR-10) or memory-mapped .npy / .npz files, read a batch at a time.

Only the labels are held in memory; a batch's rows are read from the (mapped) array when the batch is needed,
converted (uint8 / 255, channels first) and fitted to the spec's input shape.
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

from netdsl.train.fitting import fit_to_input
from netdsl.train.splits import Batch, fail


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


def channels_first(x: torch.Tensor) -> torch.Tensor:
    """N x H x W -> N x 1 x H x W; N x H x W x C (C 1 or 3, dimension 1 not) -> N x C x H x W; anything else as is."""
    if x.dim() == 3:
        return x[:, None]
    if x.dim() == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        return x.permute(0, 3, 1, 2)
    return x


class ArraySamples(torch.utils.data.Dataset[Any]):
    """Rows of an array (in memory, or a MappedArray) with their labels; `__getitems__` reads and fits a whole batch at once."""

    def __init__(self, x: np.ndarray | torch.Tensor | MappedArray, y: np.ndarray, shape: tuple[int, ...]) -> None:
        self.source, self.y, self.shape = x, np.asarray(y, dtype=np.int64), shape
        self._mapped: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.y)

    def rows(self, idx: list[int]) -> torch.Tensor:
        x = self.source
        if isinstance(x, MappedArray):
            if self._mapped is None:
                self._mapped = x.open()
            x = self._mapped
        if isinstance(x, torch.Tensor):
            return x[torch.as_tensor(idx, dtype=torch.long)]
        rows = x[np.asarray(idx, dtype=np.int64)] if len(idx) else np.zeros((0, *x.shape[1:]), x.dtype)
        return torch.from_numpy(np.ascontiguousarray(rows))

    def __getitems__(self, idx: list[int]) -> Batch:
        x = self.rows(idx)
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        fitted = fit_to_input(channels_first(x), self.shape)
        return fitted, torch.from_numpy(self.y[np.asarray(idx, dtype=np.int64)]), []

    def __getitem__(self, i: int) -> Any:
        x, y, _ = self.__getitems__([i])
        return x[0], y[0]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_mapped": None}  # a worker maps the file itself


def check_samples(where: str, x_len: int, y: np.ndarray) -> None:
    if len(y) != x_len:
        raise fail(where, f"x has {x_len} samples but y has {len(y)}")


def read_labels(where: str, y: np.ndarray) -> np.ndarray:
    if y.dtype.kind not in "iub":
        if y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0):
            return y.astype(np.int64).reshape(-1)
        raise fail(where, f"y holds {y.dtype} values; class labels are integers 0 .. classes - 1")
    return y.astype(np.int64).reshape(-1)


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


def map_npz(path: Path) -> tuple[MappedArray, np.ndarray]:
    """x memory-mapped and y read from an .npz; uncompressed members (np.savez) are mapped in place, compressed ones unpacked once."""
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
        if "x" not in members or "y" not in members:
            raise fail(str(path), f"needs arrays 'x' and 'y'; has {', '.join(members) or 'none'}")
        info = members["x"]
        try:
            if info.compress_type == zipfile.ZIP_STORED:
                x = map_npy(path, _member_offset(path, info))
            else:
                x = map_npy(_unpacked(path, archive, info.filename))
            with archive.open(members["y"]) as f:
                y = np.lib.format.read_array(f, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise fail(str(path), f"not a readable .npz file: {exc}") from None
    return x, read_labels(str(path), y)


def map_npy_folder(path: Path) -> tuple[MappedArray, np.ndarray]:
    """x.npy memory-mapped and y.npy read from a folder."""
    if not path.is_dir():
        raise fail(str(path), "source npy wants a folder holding x.npy and y.npy")
    missing = [n for n in ("x.npy", "y.npy") if not (path / n).is_file()]
    if missing:
        raise fail(str(path), f"needs {' and '.join(missing)} (source npy: a folder with x.npy, N samples, and y.npy, N labels)")
    try:
        x = map_npy(path / "x.npy")
        y = np.load(path / "y.npy", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise fail(str(path), f"not readable .npy files: {exc}") from None
    return x, read_labels(str(path / "y.npy"), y)
