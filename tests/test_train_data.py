"""netdsl.train.sources: every source (npz, image_folder, mnist_idx, cifar10_bin, digits, synthetic) and split option,
on files each test writes itself into tmp_path; exact values, sizes and one-line messages.

Splits are streams of batches now (netdsl/train/splits.py), not tensors: `tensors()` reads a whole split in its
stored order. What is new in the data layer (nested and split image folders, memory-mapped arrays, the batch
sampler, bounded memory) is tested in tests/test_train_sources.py."""

from __future__ import annotations

import gzip
import json
import multiprocessing
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from netdsl.errors import SpecError
from netdsl.lang.train_section import resolve
from netdsl.train import image_folder
from netdsl.train.api import train
from netdsl.train.loader import epoch_order
from netdsl.train.sources import CIFAR10_CLASSES, Splits, load_splits, read_digits
from netdsl.train.splits import DataError, Reading, SplitData

ALL = {"train": 1.0}  # every sample in the training split, nothing in val or test


def load(base: Path, data: dict[str, Any], shape: tuple[int, ...] = (1, 12, 12)) -> Splits:
    """load_splits as `netdsl train` calls it: the data section with the schema's defaults filled in."""
    return load_splits(resolve({"data": data})["data"], shape, base)


def error(base: Path, data: dict[str, Any], shape: tuple[int, ...] = (1, 12, 12)) -> str:
    with pytest.raises(SpecError) as info:
        load(base, data, shape)
    message = str(info.value)
    assert "\n" not in message  # one line
    return message


def tensors(split: SplitData, workers: int = 0, batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """A whole split as (x, y), read in its stored order (no shuffle), as validation and test are read."""
    xs, ys = [], []
    for x, y, _ in split.batches(Reading(batch_size=batch_size, workers=workers), epoch=0, seed=0, shuffle=False):
        xs.append(x)
        ys.append(y)
    if not xs:  # an empty split has no batches
        return torch.zeros(0), torch.zeros(0, dtype=torch.int64)
    return torch.cat(xs), torch.cat(ys)


def xs(split: SplitData) -> torch.Tensor:
    return tensors(split)[0]


def ys(split: SplitData) -> torch.Tensor:
    return tensors(split)[1]


def ids(split: SplitData) -> list[int]:
    """Sample ids that the tests store in the first pixel (x = id / 1000)."""
    x = xs(split)
    return [round(float(v) * 1000) for v in x.flatten(1)[:, 0]] if len(x) else []


def numbered(n: int, shape: tuple[int, ...] = (1, 2, 2)) -> tuple[np.ndarray, np.ndarray]:
    """n float samples whose first pixel is id / 1000 (0.000, 0.001, ...), labels id % 4."""
    x = np.zeros((n, *shape), np.float32)
    x.reshape(n, -1)[:, 0] = np.arange(n) / 1000
    return x, np.arange(n) % 4


# ---------------------------------------------------------------- npz


def test_npz_n_c_h_w_float_is_taken_as_is(tmp_path):
    x = np.random.default_rng(0).random((6, 3, 4, 5), dtype=np.float32)
    y = np.array([0, 2, 1, 2, 0, 1])
    np.savez(tmp_path / "d.npz", x=x, y=y)
    data = load(tmp_path, {"source": "npz", "path": "d.npz", "split": ALL, "shuffle": False, "normalize": False}, (3, 4, 5))
    train_x, train_y = tensors(data.train)
    assert torch.equal(train_x, torch.from_numpy(x))
    assert train_y.tolist() == [0, 2, 1, 2, 0, 1] and train_y.dtype == torch.int64
    assert len(data.val) == len(data.test) == 0
    assert data.classes == ["0", "1", "2"]  # 0 .. max(y)


def test_npz_n_h_w_c_uint8_is_scaled_by_1_255_and_made_channels_first(tmp_path):
    x = np.zeros((2, 4, 5, 3), np.uint8)
    x[1, 2, 3] = (255, 51, 0)  # sample 1, row 2, column 3: R, G, B
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1]))
    # the arrays are read through load_splits now (npz() is gone); a 3 x 4 x 5 input keeps the stored size
    data = load(tmp_path, {"source": "npz", "path": "d.npz", "split": ALL, "shuffle": False, "normalize": False}, (3, 4, 5))
    got, y = tensors(data.train)
    assert got.shape == (2, 3, 4, 5) and got.dtype == torch.float32
    assert got[1, :, 2, 3].tolist() == pytest.approx([1.0, 0.2, 0.0], abs=1e-7)  # 255/255, 51/255, 0/255
    assert float(got.sum()) == pytest.approx(1.2, abs=1e-6)  # nothing else is lit
    assert y.tolist() == [0, 1] and data.classes == ["0", "1"]


def test_npz_n_h_w_gets_one_channel_and_n_features_stays_flat(tmp_path):
    grey = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4) / 100
    np.savez(tmp_path / "g.npz", x=grey, y=np.array([1, 0]))
    got = xs(load(tmp_path, {"source": "npz", "path": "g.npz", "split": ALL, "shuffle": False, "normalize": False}, (1, 3, 4)).train)
    assert got.shape == (2, 1, 3, 4) and torch.equal(got[:, 0], torch.from_numpy(grey))

    features = np.arange(4 * 7, dtype=np.float64).reshape(4, 7) / 10
    np.savez(tmp_path / "f.npz", x=features, y=np.array([[3], [0], [1], [2]]))  # a column of labels is flattened
    data = load(tmp_path, {"source": "npz", "path": "f.npz", "split": ALL, "shuffle": False, "normalize": False}, (7,))
    train_x, train_y = tensors(data.train)
    assert train_x.shape == (4, 7) and train_x.dtype == torch.float32
    assert train_x[2].tolist() == pytest.approx([1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2.0])  # row 2: 14..20 / 10
    assert train_y.tolist() == [3, 0, 1, 2] and data.classes == ["0", "1", "2", "3"]


def test_npz_mismatched_lengths(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((5, 4), np.float32), y=np.zeros(3, np.int64))
    assert error(tmp_path, {"source": "npz", "path": "d.npz"}, (4,)) == f"{tmp_path / 'd.npz'}:1:1: x has 5 samples but y has 3"


def test_npz_missing_arrays(tmp_path):
    np.savez(tmp_path / "d.npz", images=np.zeros((2, 4)), y=np.zeros(2))
    assert error(tmp_path, {"source": "npz", "path": "d.npz"}) == f"{tmp_path / 'd.npz'}:1:1: needs arrays 'x' and 'y'; has images, y"
    np.savez(tmp_path / "empty.npz")
    assert error(tmp_path, {"source": "npz", "path": "empty.npz"}) == f"{tmp_path / 'empty.npz'}:1:1: needs arrays 'x' and 'y'; has none"


def test_npz_that_is_not_an_npz_file(tmp_path):
    # a single array saved with np.save (used to escape as a TypeError from the `with` statement)
    np.save(tmp_path / "one.npy", np.zeros((3, 4)))
    assert (
        error(tmp_path, {"source": "npz", "path": "one.npy"})
        == f"{tmp_path / 'one.npy'}:1:1: not a readable .npz file: it holds a single array (.npy), not named arrays"
    )
    # text, and an empty file (used to escape as an EOFError): numpy's own reason after the fixed prefix, on one line
    (tmp_path / "text.npz").write_text("x,y\n1,2\n")
    (tmp_path / "empty.npz").write_bytes(b"")
    for name in ("text.npz", "empty.npz"):
        message = error(tmp_path, {"source": "npz", "path": name})
        assert message.startswith(f"{tmp_path / name}:1:1: not a readable .npz file: ") and len(message) > len(
            f"{tmp_path / name}:1:1: not a readable .npz file: "
        )


def test_npz_channel_count_that_cannot_be_converted(tmp_path):
    # last dimension 3 and dimension 1 not 1 or 3: read as N x H x W x C, 3 channels of 4 x 3
    x = np.arange(2 * 4 * 3 * 3, dtype=np.float32).reshape(2, 4, 3, 3) / 100
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1]))
    got = xs(load(tmp_path, {"source": "npz", "path": "d.npz", "split": ALL, "shuffle": False, "normalize": False}, (3, 4, 3)).train)
    assert got.shape == (2, 3, 4, 3) and torch.equal(got, torch.from_numpy(x).permute(0, 3, 1, 2))
    np.savez(tmp_path / "c4.npz", x=np.zeros((2, 4, 5, 5), np.float32), y=np.array([0, 1]))  # N x 4 x 5 x 5: four channels
    assert (
        error(tmp_path, {"source": "npz", "path": "c4.npz"}, (3, 5, 5))
        == "train.data:1:1: cannot convert 4-channel images to 3 channels (the spec's input is 3x5x5)"
    )


# ---------------------------------------------------------------- image_folder


def solid(path: Path, mode: str, size: tuple[int, int], color: Any, **save: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path, **save)


def test_image_folder_classes_sizes_modes_and_bt601_luma(tmp_path):
    root = tmp_path / "images"
    solid(root / "cat" / "a.png", "RGB", (12, 12), (200, 100, 50))  # already the spec's 12 x 12
    solid(root / "cat" / "b.png", "RGBA", (9, 6), (10, 20, 30, 0))  # 9 wide, 6 high, fully transparent: alpha is dropped
    solid(root / "dog" / "c.jpg", "L", (20, 20), 77, quality=100)  # grey JPEG, 20 x 20
    (root / "dog" / "notes.txt").write_text("not an image: skipped by its suffix")
    # changed: a class folder with no images used to be a class all the same (an `emu/` here gave classes cat, dog, emu);
    # it is now an error naming the folder (test_image_folder_empty)
    data = load(tmp_path, {"source": "image_folder", "path": "images", "split": ALL, "shuffle": False, "normalize": False})
    assert data.classes == ["cat", "dog"]
    x, y = tensors(data.train)
    assert y.tolist() == [0, 0, 1]  # sorted files within sorted class folders
    assert x.shape == (3, 1, 12, 12)
    # ITU-R BT.601 luma: (0.299*200 + 0.587*100 + 0.114*50) / 255 = (59.8 + 58.7 + 5.7) / 255 = 124.2 / 255
    assert torch.allclose(x[0], torch.full((1, 12, 12), 124.2 / 255), atol=1e-6)
    # (0.299*10 + 0.587*20 + 0.114*30) / 255 = (2.99 + 11.74 + 3.42) / 255 = 18.15 / 255, unchanged by resizing a flat image
    assert torch.allclose(x[1], torch.full((1, 12, 12), 18.15 / 255), atol=1e-5)
    # grey 77 -> RGB (77, 77, 77) -> 77 * (0.299 + 0.587 + 0.114) = 77; JPEG at quality 100 of a flat grey keeps 77 within 1 level
    assert torch.allclose(x[2], torch.full((1, 12, 12), 77 / 255), atol=1.01 / 255)


def test_image_folder_to_three_channels_keeps_rgb_and_repeats_grey(tmp_path):
    root = tmp_path / "images"
    solid(root / "a" / "rgb.png", "RGB", (8, 8), (255, 0, 51))
    solid(root / "b" / "grey.png", "L", (8, 8), 102)
    data = load(tmp_path, {"source": "image_folder", "path": "images", "split": ALL, "shuffle": False, "normalize": False}, (3, 8, 8))
    x = xs(data.train)
    assert x[0, :, 4, 4].tolist() == pytest.approx([1.0, 0.0, 0.2], abs=1e-7)  # 255, 0, 51 / 255
    assert x[1, :, 4, 4].tolist() == pytest.approx([0.4, 0.4, 0.4], abs=1e-7)  # 102 / 255 in each channel
    assert data.classes == ["a", "b"]


def test_image_folder_resizes_each_image_once_straight_to_the_spec_input(tmp_path):
    # the first file is 3 x 3; the second is already 12 x 12 and must come through untouched. Before the fix every image
    # was first squeezed to the first image's size (3 x 3) and then blown up again, smearing the second one.
    root = tmp_path / "images"
    solid(root / "a" / "1.png", "L", (3, 3), 0)
    pattern = (np.indices((12, 12)).sum(0) % 2 * 255).astype(np.uint8)  # 12 x 12 checkerboard of 0 and 255
    Image.fromarray(pattern, "L").save(root / "a" / "2.png")
    data = load(tmp_path, {"source": "image_folder", "path": "images", "split": ALL, "shuffle": False, "normalize": False})
    x = xs(data.train)
    assert torch.allclose(x[1, 0], torch.from_numpy(pattern).float() / 255, atol=1e-6)
    assert float(x[0].abs().max()) == 0.0


def test_image_folder_decoded_by_worker_processes_is_the_same_in_the_same_order(tmp_path, monkeypatch):
    # changed: worker threads inside image_folder() became DataLoader worker processes (train.workers -> Reading.workers),
    # and every image is fitted to the spec's input (10 x 10 here), not to the first image's size
    rng = np.random.default_rng(0)
    for i in range(24):  # mixed sizes: the ones that are not 10 x 10 are resized to the input
        side = 7 + i % 5 if i % 3 == 1 else 10
        folder = tmp_path / "imgs" / f"c{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    data = load(tmp_path, {"source": "image_folder", "path": "imgs", "split": ALL, "shuffle": False, "normalize": False}, (3, 10, 10))
    x0, y0 = tensors(data.train, batch_size=5)
    decoders = tmp_path / "decoders.txt"  # the process id of every decode (forked workers inherit the patch)
    decode_image = image_folder.decode_image

    def logged(file: str, shape: tuple[int, ...]) -> torch.Tensor:
        with open(decoders, "a") as f:
            f.write(f"{os.getpid()}\n")
        return decode_image(file, shape)

    monkeypatch.setattr(image_folder, "decode_image", logged)
    x2, y2 = tensors(data.train, workers=2, batch_size=5)  # 5 batches, handed out to the two workers in turn
    data.close()
    if multiprocessing.get_start_method() == "fork":  # Linux up to Python 3.13; spawned workers would import the module afresh
        pids = decoders.read_text().split()
        assert len(pids) == 24 and str(os.getpid()) not in pids and len(set(pids)) == 2  # two worker processes decoded them all
    assert x0.shape == (24, 3, 10, 10) and torch.equal(x0, x2) and torch.equal(y0, y2) and data.classes == ["c0", "c1", "c2", "c3"]
    assert y0.tolist() == sorted(y0.tolist())  # class by class
    # an image that is already 10 x 10 comes through as stored: file 00.png is the first of class c0
    stored = np.array(Image.open(tmp_path / "imgs" / "c0" / "00.png"))
    assert torch.equal(x0[0], torch.from_numpy(stored).permute(2, 0, 1).float() / 255)


def test_image_folder_undecodable_file(tmp_path):
    root = tmp_path / "images"
    solid(root / "cat" / "a.png", "RGB", (4, 4), (1, 2, 3))
    bad = root / "cat" / "b.png"
    bad.write_bytes(b"this is not a PNG")
    expected = (
        f"{bad}:1:1: cannot decode image: cannot identify image file {str(bad)!r}; "
        "set train.data.skip_corrupt: true to leave such files out (they are then listed in skipped_files.txt)"
    )
    # changed: images are decoded when a batch needs them, not all at load time, so the file is found when its split is
    # read: here, in the training split, while the normalization statistics are read. The message now ends with the
    # way out (skip_corrupt: tests/test_train_sources.py).
    assert error(tmp_path, {"source": "image_folder", "path": "images", "split": ALL}) == expected
    # in the test split, loading succeeds and reading the test split stops
    data = load(tmp_path, {"source": "image_folder", "path": "images", "split": {"train": 0.5, "test": 0.5}, "shuffle": False})
    assert len(data.train) == len(data.test) == 1
    with pytest.raises(DataError) as info:
        tensors(data.test)
    assert str(info.value) == expected


def test_image_folder_empty(tmp_path):
    (tmp_path / "images").mkdir()
    assert error(tmp_path, {"source": "image_folder", "path": "images"}) == (
        f"{tmp_path / 'images'}:1:1: no class sub-folders (expected one folder of images per class, e.g. cat/ and dog/)"
    )
    (tmp_path / "images" / "cat").mkdir()
    (tmp_path / "images" / "cat" / "readme.md").write_text("no images here")
    # changed: each class folder must hold images (any suffix Pillow reads, so the list of suffixes is no longer in the
    # message); the error names the class folder instead of the whole tree
    assert error(tmp_path, {"source": "image_folder", "path": "images"}) == f"{tmp_path / 'images' / 'cat'}:1:1: class folder 'cat' holds no images"


# ---------------------------------------------------------------- mnist_idx


def write_idx(path: Path, array: np.ndarray, magic: int | None = None) -> None:
    """IDX: big-endian 0x0000 0x08 (unsigned byte) ndim, then each dimension as a big-endian uint32, then the bytes."""
    header = struct.pack(">I", 0x800 + array.ndim if magic is None else magic) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)


def mnist_arrays(n: int, start: int) -> tuple[np.ndarray, np.ndarray]:
    """n 28 x 28 images where pixel (r, c) of image i is (start + i + 3r + c) % 256; labels (start + i) * 3 % 10."""
    i, r, c = np.indices((n, 28, 28))
    return (start + i + 3 * r + c) % 256, (start + np.arange(n)) * 3 % 10


def write_mnist(folder: Path, suffix: str = "", n_train: int = 40, n_test: int = 10) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n, start in (("train", n_train, 0), ("t10k", n_test, 100)):
        images, labels = mnist_arrays(n, start)
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)


def test_idx_header_is_big_endian():
    # the helper writes what the format says: 0x00000803 then the dimensions, most significant byte first
    assert struct.pack(">I", 0x803) + struct.pack(">3I", 2, 28, 28) == b"\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00\x00\x1c\x00\x00\x00\x1c"


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_mnist_idx_uses_its_own_test_set_and_splits_train_into_train_and_val(tmp_path, suffix):
    write_mnist(tmp_path / "mnist", suffix)
    data = load(tmp_path, {"source": "mnist_idx", "path": "mnist", "shuffle": False, "normalize": False}, (1, 28, 28))
    # default fractions 0.7 / 0.1 (the test fraction is unused): 40 * 0.7 / 0.8 = 35 train, 5 val; test: the 10 t10k images
    assert (len(data.train), len(data.val), len(data.test)) == (35, 5, 10)
    assert xs(data.train).shape == (35, 1, 28, 28) and xs(data.test).shape == (10, 1, 28, 28)
    assert data.classes == [str(i) for i in range(10)]
    assert ys(data.train)[:5].tolist() == [0, 3, 6, 9, 2]  # i * 3 % 10
    assert ys(data.val).tolist() == [5, 8, 1, 4, 7]  # i = 35..39
    assert ys(data.test).tolist() == [0, 3, 6, 9, 2, 5, 8, 1, 4, 7]  # (100 + i) * 3 % 10
    assert float(xs(data.train)[7, 0, 2, 5]) == pytest.approx((7 + 6 + 5) / 255, abs=1e-7)  # 18 / 255
    assert float(xs(data.val)[1, 0, 27, 27]) == pytest.approx((36 + 81 + 27) / 255, abs=1e-7)  # sample 36: 144 / 255
    assert float(xs(data.test)[9, 0, 27, 27]) == pytest.approx((109 + 81 + 27) % 256 / 255, abs=1e-7)  # 217 / 255


def test_mnist_idx_dotted_names_and_shuffled_split_keep_every_training_image(tmp_path):
    folder = tmp_path / "fashion"
    folder.mkdir()
    for prefix, n, start in (("train", 20, 0), ("t10k", 4, 100)):
        images, labels = mnist_arrays(n, start)
        write_idx(folder / f"{prefix}-images.idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels.idx1-ubyte.gz", labels)
    data = load(tmp_path, {"source": "mnist_idx", "path": "fashion", "split": {"train": 0.5, "val": 0.5}, "normalize": False}, (1, 28, 28))
    assert (len(data.train), len(data.val), len(data.test)) == (10, 10, 4)
    first_pixels = sorted(round(float(v) * 255) for v in torch.cat([xs(data.train), xs(data.val)])[:, 0, 0, 0])
    assert first_pixels == list(range(20))  # a partition of images 0..19 (pixel (0, 0) of image i is i)
    assert [round(float(v) * 255) for v in xs(data.train)[:, 0, 0, 0]] != list(range(10))  # shuffled


def test_mnist_idx_wrong_magic_number(tmp_path):
    write_mnist(tmp_path / "m")
    images, _ = mnist_arrays(40, 0)
    write_idx(tmp_path / "m" / "train-images-idx3-ubyte", images, magic=0x0903)  # 0x09: signed bytes
    file = tmp_path / "m" / "train-images-idx3-ubyte"
    assert error(tmp_path, {"source": "mnist_idx", "path": "m"}) == (
        f"{file}:1:1: not an IDX file of unsigned bytes in 3 dimension(s): magic number 0x00000903, expected 0x00000803"
    )
    write_mnist(tmp_path / "m")
    labels_as_images, _ = mnist_arrays(40, 0)  # an image file where the labels belong: magic 0x00000803, not 0x00000801
    write_idx(tmp_path / "m" / "train-labels-idx1-ubyte", labels_as_images)
    assert error(tmp_path, {"source": "mnist_idx", "path": "m"}) == (
        f"{tmp_path / 'm' / 'train-labels-idx1-ubyte'}:1:1: not an IDX file of unsigned bytes in 1 dimension(s): magic number 0x00000803, expected 0x00000801"
    )


def test_mnist_idx_truncated_missing_and_mismatched_files(tmp_path):
    write_mnist(tmp_path / "m")
    file = tmp_path / "m" / "t10k-images-idx3-ubyte"
    file.write_bytes(file.read_bytes()[:-100])  # 16-byte header + 10 * 784 bytes = 7,856 bytes; now 7,756
    assert error(tmp_path, {"source": "mnist_idx", "path": "m"}) == f"{file}:1:1: 7756 bytes, but its header (10x28x28) needs 7856"

    write_mnist(tmp_path / "m")
    write_idx(tmp_path / "m" / "t10k-labels-idx1-ubyte", np.zeros(9))
    assert error(tmp_path, {"source": "mnist_idx", "path": "m"}) == f"{tmp_path / 'm'}:1:1: t10k: 10 images but 9 labels"

    (tmp_path / "m" / "t10k-labels-idx1-ubyte").unlink()
    assert error(tmp_path, {"source": "mnist_idx", "path": "m"}) == (
        f"{tmp_path / 'm'}:1:1: no t10k-labels-idx1-ubyte[.gz] here (MNIST/Fashion-MNIST IDX files)"
    )


# ---------------------------------------------------------------- cifar10_bin


def cifar_records(labels: list[int], start: int) -> bytes:
    """Records of 1 label byte + 3,072 pixel bytes, channel-major (R 32x32, G 32x32, B 32x32);
    pixel (c, r, w) of record i is (start + i + 7c + 3r + w) % 256."""
    out = bytearray()
    for i, label in enumerate(labels):
        c, r, w = np.indices((3, 32, 32))
        out += bytes([label]) + ((start + i + 7 * c + 3 * r + w) % 256).astype(np.uint8).tobytes()
    return bytes(out)


def write_cifar(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data_batch_1.bin").write_bytes(cifar_records([6, 9, 9, 4, 1, 1], 0))
    (folder / "data_batch_2.bin").write_bytes(cifar_records([2, 7, 8, 3], 6))  # continues the numbering: records 6..9
    (folder / "test_batch.bin").write_bytes(cifar_records([3, 8, 8, 0, 6], 50))


def test_cifar10_bin_records_pixels_labels_and_default_class_names(tmp_path):
    write_cifar(tmp_path / "cifar")
    data = load(tmp_path, {"source": "cifar10_bin", "path": "cifar", "split": {"train": 0.8, "val": 0.2}, "shuffle": False, "normalize": False}, (3, 32, 32))
    assert (len(data.train), len(data.val), len(data.test)) == (8, 2, 5)  # 10 training records: 8 / 2; test_batch.bin: 5
    assert ys(data.train).tolist() == [6, 9, 9, 4, 1, 1, 2, 7] and ys(data.val).tolist() == [8, 3]
    assert ys(data.test).tolist() == [3, 8, 8, 0, 6]
    # record 7 (second of data_batch_2), blue channel, row 5, column 9: byte 1 + 2*1024 + 5*32 + 9; value 7 + 14 + 15 + 9 = 45
    raw = (tmp_path / "cifar" / "data_batch_2.bin").read_bytes()[3073 + 1 + 2 * 1024 + 5 * 32 + 9]
    assert raw == 45
    assert float(xs(data.train)[7, 2, 5, 9]) == pytest.approx(45 / 255, abs=1e-7)
    assert float(xs(data.test)[4, 0, 31, 31]) == pytest.approx((54 + 93 + 31) / 255, abs=1e-7)  # 178 / 255
    assert data.classes == CIFAR10_CLASSES == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def test_cifar10_bin_class_names_from_batches_meta_and_grey_conversion(tmp_path):
    write_cifar(tmp_path / "cifar")
    (tmp_path / "cifar" / "batches.meta.txt").write_text("".join(f"name{i}\n" for i in range(10)) + "\n\n")  # trailing blank lines as shipped
    data = load(tmp_path, {"source": "cifar10_bin", "path": "cifar", "split": ALL, "shuffle": False, "normalize": False}, (1, 32, 32))
    assert data.classes == [f"name{i}" for i in range(10)]
    # record 0, pixel (0, 0): R 0, G 7, B 14 -> (0.587*7 + 0.114*14) / 255 = (4.109 + 1.596) / 255 = 5.705 / 255
    assert float(xs(data.train)[0, 0, 0, 0]) == pytest.approx(5.705 / 255, abs=1e-6)


def test_cifar10_bin_size_not_a_multiple_of_3073(tmp_path):
    write_cifar(tmp_path / "cifar")
    second = tmp_path / "cifar" / "data_batch_2.bin"
    second.write_bytes(second.read_bytes() + b"\x00")  # 4 * 3,073 + 1 bytes
    assert error(tmp_path, {"source": "cifar10_bin", "path": "cifar"}, (3, 32, 32)) == (
        f"{second}:1:1: size is not a multiple of 3,073 bytes (CIFAR-10 binary records)"
    )
    # one byte too many in batch 1 and one too few in batch 2: 6*3073 + 1 + 4*3073 - 1 is a multiple of 3,073 together,
    # but every record after the first would be shifted by a byte; each file is checked on its own
    write_cifar(tmp_path / "cifar")
    first = tmp_path / "cifar" / "data_batch_1.bin"
    first.write_bytes(first.read_bytes() + b"\x00")
    second.write_bytes(second.read_bytes()[:-1])
    assert error(tmp_path, {"source": "cifar10_bin", "path": "cifar"}, (3, 32, 32)) == (
        f"{first}:1:1: size is not a multiple of 3,073 bytes (CIFAR-10 binary records)"
    )


def test_cifar10_bin_channel_count_that_cannot_be_converted(tmp_path):
    # the old loader fitted every source when it was loaded, so this was the one-line error npz still gives
    write_cifar(tmp_path / "cifar")
    assert error(tmp_path, {"source": "cifar10_bin", "path": "cifar"}, (2, 32, 32)) == (
        "train.data:1:1: cannot convert 3-channel images to 2 channels (the spec's input is 2x32x32)"
    )


def test_cifar10_bin_missing_test_batch(tmp_path):
    write_cifar(tmp_path / "cifar")
    (tmp_path / "cifar" / "test_batch.bin").unlink()
    assert error(tmp_path, {"source": "cifar10_bin", "path": "cifar"}, (3, 32, 32)) == (
        f"{tmp_path / 'cifar'}:1:1: expected data_batch_1..5.bin and test_batch.bin (the CIFAR-10 binary version)"
    )


# ---------------------------------------------------------------- digits and synthetic


def test_digits_sizes_classes_values_and_seeded_split(tmp_path):
    a = load(tmp_path, {"source": "digits", "normalize": False}, (1, 8, 8))
    # 1,797 * 0.7 = 1257.9 -> 1258; 1,797 * 0.1 = 179.7 -> 180; the rest, 1,797 - 1,438 = 359, is the test split
    assert (len(a.train), len(a.val), len(a.test)) == (1258, 180, 359)
    assert a.classes == ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
    a_x = xs(a.train)
    assert a_x.shape == (1258, 1, 8, 8)
    assert set((a_x * 16).round().unique().tolist()) <= set(range(17)) and float(a_x.max()) == 1.0  # 16 grey levels / 16
    b = load(tmp_path, {"source": "digits", "normalize": False}, (1, 8, 8))
    assert torch.equal(a_x, xs(b.train)) and torch.equal(ys(a.test), ys(b.test))  # same seed, same split
    c = load(tmp_path, {"source": "digits", "normalize": False, "seed": 1}, (1, 8, 8))
    assert (len(c.train), len(c.val), len(c.test)) == (1258, 180, 359) and not torch.equal(ys(a.train), ys(c.train))
    ordered = load(tmp_path, {"source": "digits", "shuffle": False, "normalize": False}, (1, 8, 8))
    x, target, _ = read_digits()  # the file's rows in order (its sha256 is scikit-learn's: tests/test_install_groups.py)
    assert ys(ordered.train).tolist() == target[:1258].tolist() and ys(ordered.test).tolist() == target[1438:].tolist()
    assert torch.equal(xs(ordered.train)[0], x[0])
    # load_digits().images[0], the first row of the file: a 0
    assert target[0] == 0 and (x[0, 0, 0] * 16).tolist() == [0, 0, 5, 13, 9, 1, 0, 0]


def test_demo_data_and_plot_import_neither_scikit_learn_nor_pyplot(tmp_path):
    code = (
        "import sys; from pathlib import Path; from netdsl.train.sources import read_digits; from netdsl.train.plots import plot_curves; read_digits(); "
        f"plot_curves([{{'epoch': 1, 'train_loss': 1.0, 'val_loss': 1.5}}], Path({str(tmp_path / 'c.png')!r}), 't'); "
        "print(sorted(m for m in ('sklearn', 'scipy', 'matplotlib.pyplot') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]" and (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_synthetic_sizes_shape_classes_and_seed(tmp_path):
    settings = {"source": "synthetic", "samples": 50, "num_classes": 3, "normalize": False}
    a = load(tmp_path, settings, (2, 5, 5))
    assert (len(a.train), len(a.val), len(a.test)) == (35, 5, 10)  # 50 * 0.7, 50 * 0.1, the rest
    a_x, a_y = tensors(a.train)
    assert a_x.shape == (35, 2, 5, 5) and float(a_x.min()) >= 0 and float(a_x.max()) <= 1
    assert a.classes == ["class0", "class1", "class2"] and set(a_y.tolist()) <= {0, 1, 2}
    b = load(tmp_path, settings, (2, 5, 5))
    assert torch.equal(a_x, xs(b.train)) and torch.equal(ys(a.val), ys(b.val))
    c = load(tmp_path, {**settings, "seed": 7}, (2, 5, 5))
    assert not torch.equal(a_x, xs(c.train))
    flat = load(tmp_path, {"source": "synthetic", "samples": 10, "num_classes": 2}, (6,))
    assert xs(flat.train).shape == (7, 6) and flat.classes == ["class0", "class1"]


# ---------------------------------------------------------------- split options


def test_split_fractions_round_half_up_and_the_last_split_takes_the_rest(tmp_path):
    x, y = numbered(10)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    base = {"source": "npz", "path": "d.npz", "shuffle": False, "normalize": False}
    data = load(tmp_path, {**base, "split": {"train": 0.25, "val": 0.25, "test": 0.5}}, (1, 2, 2))
    # 10 * 0.25 = 2.5 -> 3 (rounded half up), again 2.5 -> 3, the rest 4
    assert (ids(data.train), ids(data.val), ids(data.test)) == ([0, 1, 2], [3, 4, 5], [6, 7, 8, 9])
    data = load(tmp_path, {**base, "split": {"train": 0.6, "val": 0.2}}, (1, 2, 2))  # relative fractions: 0.75 / 0.25, no test
    assert (ids(data.train), ids(data.val), ids(data.test)) == ([0, 1, 2, 3, 4, 5, 6, 7], [8, 9], [])  # 10 * 0.6 / 0.8 = 7.5 -> 8
    assert ys(data.train).tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    assert error(tmp_path, {**base, "split": {"train": 0.99, "val": 0.1, "test": 0.2}}, (1, 2, 2)) == (
        "train.data.split:1:1: the fractions (train 0.99, val 0.1, test 0.2) add up to 1.29, more than the whole data set"
    )


@pytest.mark.parametrize("source", [{"source": "synthetic", "samples": 10, "num_classes": 2}, {"source": "digits"}])
def test_in_memory_sources_without_a_test_fraction_have_an_empty_test_split(tmp_path, source):
    # a regression of the rewrite: an empty test split was taken for a missing one (`splits.get("test") or ...`: an empty
    # split is falsy) and the source's own test set, which these have not, was read: TypeError
    data = load(tmp_path, {**source, "split": {"train": 0.8, "val": 0.2}, "normalize": False}, (1, 8, 8))
    n = len(data.train) + len(data.val)
    assert len(data.test) == 0 and n in (10, 1797) and len(data.val) == round(n * 0.2)
    assert ys(data.test).tolist() == []


def test_shuffle_false_keeps_the_file_order_and_shuffle_true_is_a_seeded_partition(tmp_path):
    x, y = numbered(20)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    base = {"source": "npz", "path": "d.npz", "normalize": False}
    ordered = load(tmp_path, {**base, "shuffle": False}, (1, 2, 2))
    assert (ids(ordered.train), ids(ordered.val), ids(ordered.test)) == (list(range(14)), [14, 15], [16, 17, 18, 19])
    shuffled = load(tmp_path, base, (1, 2, 2))
    assert (len(shuffled.train), len(shuffled.val), len(shuffled.test)) == (14, 2, 4)
    assert ids(shuffled.train) != list(range(14))
    assert sorted(ids(shuffled.train) + ids(shuffled.val) + ids(shuffled.test)) == list(range(20))
    assert ys(shuffled.train).tolist() == [i % 4 for i in ids(shuffled.train)]  # labels travel with their samples
    again = load(tmp_path, base, (1, 2, 2))
    other = load(tmp_path, {**base, "seed": 3}, (1, 2, 2))
    assert ids(again.train) == ids(shuffled.train) and ids(other.train) != ids(shuffled.train)


def test_val_path_and_test_path_replace_their_fractions(tmp_path):
    x, y = numbered(20)
    np.savez(tmp_path / "main.npz", x=x, y=y)
    vx, vy = numbered(3)
    np.savez(tmp_path / "val.npz", x=vx + 0.5, y=vy)  # ids 500..502
    tx, ty = numbered(4)
    np.savez(tmp_path / "test.npz", x=tx + 0.9, y=ty)  # ids 900..903
    base = {"source": "npz", "path": "main.npz", "shuffle": False, "normalize": False}

    data = load(tmp_path, {**base, "test_path": "test.npz"}, (1, 2, 2))
    # train and val share the 20 samples 0.7 : 0.1 -> 20 * 0.875 = 17.5 -> 18 train, 2 val; test is the file
    assert (ids(data.train), ids(data.val), ids(data.test)) == (list(range(18)), [18, 19], [900, 901, 902, 903])

    data = load(tmp_path, {**base, "val_path": "val.npz"}, (1, 2, 2))
    # train and test share the 20 samples 0.7 : 0.2 -> 20 * 0.7 / 0.9 = 15.6 -> 16 train, 4 test; nothing is thrown away
    # (before the fix a 0.1 val share was carved out of the samples and then replaced by the file: 14 / 4, 2 samples lost)
    assert (ids(data.train), ids(data.val), ids(data.test)) == (list(range(16)), [500, 501, 502], [16, 17, 18, 19])

    data = load(tmp_path, {**base, "val_path": "val.npz", "test_path": "test.npz"}, (1, 2, 2))
    assert (ids(data.train), ids(data.val), ids(data.test)) == (list(range(20)), [500, 501, 502], [900, 901, 902, 903])
    assert ys(data.test).tolist() == [0, 1, 2, 3]


def test_val_path_with_image_folders(tmp_path):
    for name, folder, n in (("a", "train", 3), ("b", "train", 2), ("a", "val", 1), ("b", "val", 1)):
        for i in range(n):
            solid(tmp_path / folder / name / f"{i}.png", "L", (5, 5), 40 * i + (0 if folder == "train" else 200))
    data = load(
        tmp_path, {"source": "image_folder", "path": "train", "val_path": "val", "split": {"train": 1.0}, "shuffle": False, "normalize": False}, (1, 5, 5)
    )
    assert (len(data.train), len(data.val), len(data.test)) == (5, 2, 0)
    assert ys(data.val).tolist() == [0, 1] and float(xs(data.val)[1, 0, 2, 2]) == pytest.approx(200 / 255, abs=1e-6)
    assert data.classes == ["a", "b"]


def test_path_errors(tmp_path):
    write_mnist(tmp_path / "m")
    assert error(tmp_path, {"source": "mnist_idx", "path": "m", "test_path": "m"}, (1, 28, 28)) == (
        "train.data:1:1: val_path/test_path need source image_folder, npz, npy or csv, not 'mnist_idx'"  # npy and csv are new
    )
    x, y = numbered(4)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    assert error(tmp_path, {"source": "npz", "path": "d.npz", "val_path": "sub/missing.npz"}) == (
        f"{tmp_path / 'sub' / 'missing.npz'}:1:1: no such file or folder (train.data.val_path)"
    )
    assert error(tmp_path, {"source": "npz"}) == "train.data:1:1: source 'npz' needs data.path"
    assert error(tmp_path, {"source": "npz", "path": "d.npz", "split": {"train": 0.0, "val": 1.0}}, (1, 2, 2)) == "train.data:1:1: the training split is empty"


# ---------------------------------------------------------------- normalization and class names


def two_channel(tmp_path: Path) -> dict[str, Any]:
    # 4 samples of 2 x 1 x 2; the first two are the training split (shuffle off, split 0.5 / 0.5)
    x = np.array(
        [
            [[[0.0, 0.2]], [[0.5, 0.5]]],
            [[[0.4, 0.6]], [[0.5, 0.5]]],
            [[[1.0, 1.0]], [[0.0, 0.0]]],  # held out: would move both means if it were counted
            [[[1.0, 1.0]], [[0.0, 1.0]]],
        ],
        np.float32,
    )
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1, 0, 1]))
    return {"source": "npz", "path": "d.npz", "shuffle": False, "split": {"train": 0.5, "test": 0.5}}


def test_normalize_true_is_per_channel_over_the_training_split_only(tmp_path):
    data = load(tmp_path, {**two_channel(tmp_path), "normalize": True}, (2, 1, 2))
    # a sample of min(stats_samples (1000), 2) training samples: both of them, so the figures are the whole split's
    # channel 0 over the training split: 0, 0.2, 0.4, 0.6 -> mean 0.3; squared deviations 0.09 + 0.01 + 0.01 + 0.09 = 0.2,
    # / (4 - 1) = 0.0667 -> std 0.258199 (Bessel's correction); channel 1: all 0.5 -> std 0, clamped to 1e-6
    assert data.mean == [0.3, 0.5]
    assert data.std == [0.258199, 1e-06]
    assert float(xs(data.train)[0, 0, 0, 1]) == pytest.approx(0.2)  # the samples themselves are not normalized here


def test_normalize_true_uses_a_seeded_sample_of_stats_samples_training_samples(tmp_path):
    # changed: normalize true used the whole training split; it now reads a seeded sample of up to stats_samples
    # (default 1000) of them, the first ones of epoch 0's order under the data seed. Digits: 1,258 training samples.
    for seed in (0, 3):
        data = load(tmp_path, {"source": "digits", "seed": seed}, (1, 8, 8))
        train_x = xs(data.train).double()
        chosen = train_x[epoch_order(len(train_x), seed, 0)[:1000]]
        assert len(data.train) == 1258 and len(chosen) == 1000
        assert data.mean == [pytest.approx(float(chosen.mean()), abs=1e-6)]  # rounded to 6 places
        assert data.std == [pytest.approx(float(chosen.std()), abs=1e-6)]  # Bessel's correction, as torch.std
        assert abs(data.mean[0] - float(train_x.mean())) > 1e-4  # not the whole split's mean
    # seed 0: 0.304466 (the sample's) against 0.3048 (all 1,258)


def test_normalize_given_and_false(tmp_path):
    data = load(tmp_path, {**two_channel(tmp_path), "normalize": {"mean": [0.25, 1], "std": [2, 0.5]}}, (2, 1, 2))
    assert (data.mean, data.std) == ([0.25, 1.0], [2.0, 0.5]) and all(isinstance(v, float) for v in data.mean + data.std)
    data = load(tmp_path, {**two_channel(tmp_path), "normalize": False}, (2, 1, 2))
    assert (data.mean, data.std) == ([0.0, 0.0], [1.0, 1.0])
    flat = load(tmp_path, {**two_channel(tmp_path), "normalize": False}, (4,))  # features: one mean, one std
    assert (flat.mean, flat.std) == ([0.0], [1.0]) and torch.equal(xs(flat.train), torch.tensor([[0.0, 0.2, 0.5, 0.5], [0.4, 0.6, 0.5, 0.5]]))
    flat = load(tmp_path, {**two_channel(tmp_path), "normalize": True}, (4,))
    # the 8 training values 0, 0.2, 0.5, 0.5, 0.4, 0.6, 0.5, 0.5: mean 3.2 / 8 = 0.4
    assert flat.mean == [0.4]


def test_classes_setting_overrides_the_source_names(tmp_path):
    data = load(tmp_path, {"source": "synthetic", "samples": 10, "num_classes": 2, "classes": ["cat", "dog"]}, (1, 4, 4))
    assert data.classes == ["cat", "dog"]


# ---------------------------------------------------------------- end to end: `netdsl train` on each file-based source

TINY = """netdsl: 1
name: tiny
input: 1x12x12
params: {classes: 4}
layers:
  - conv: {out: 4, k: 3, p: 1}
  - relu
  - maxpool: 2
  - flatten
  - linear: {name: head, out: classes}
train:
  optimizer: {name: sgd, lr: 0.05}
  batch_size: 8
  epochs: 1
  device: cpu
"""


def train_on(tmp_path: Path, data: str, classes: int) -> dict[str, Any]:
    spec = tmp_path / "spec.yaml"
    spec.write_text(TINY + f"  data: {data}\n")
    run = train(spec, out=tmp_path / "runs", variables={"classes": classes}, log=lambda _: None)
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    return json.loads((run / "results.json").read_text())


def test_train_end_to_end_npz(tmp_path):
    x = np.random.default_rng(1).integers(0, 256, (30, 12, 12, 1), dtype=np.uint8)  # N x H x W x C bytes
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(30) % 4)
    results = train_on(tmp_path, "{source: npz, path: d.npz}", 4)
    assert results["test_samples"] == 6  # 30 * 0.7 = 21, 30 * 0.1 = 3, the rest 6


def test_train_end_to_end_image_folder(tmp_path):
    for name, color in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        for i in range(5):
            solid(tmp_path / "images" / name / f"{i}.png", "RGB", (16 + i, 16), color)
    results = train_on(tmp_path, "{source: image_folder, path: images, test_path: images}", 2)
    assert results["test_samples"] == 10  # the test folder: all 10 images


def test_train_end_to_end_mnist_idx(tmp_path):
    write_mnist(tmp_path / "mnist", ".gz", n_train=24, n_test=7)
    results = train_on(tmp_path, "{source: mnist_idx, path: mnist}", 10)
    assert results["test_samples"] == 7  # t10k


def test_train_end_to_end_cifar10_bin(tmp_path):
    write_cifar(tmp_path / "cifar")
    results = train_on(tmp_path, "{source: cifar10_bin, path: cifar}", 10)
    assert results["test_samples"] == 5  # test_batch.bin
