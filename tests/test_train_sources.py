"""What the rewritten data layer adds: nested and split image folders, every suffix Pillow reads, corrupt images,
memory-mapped arrays, the normalization settings, the batch sampler (epochs, ranks, resume) and bounded memory.

Files are written by each test into tmp_path; the sources, splits and loader are in netdsl/train/sources.py,
splits.py and loader.py. The older sources and split options are in tests/test_train_data.py.
"""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from netdsl.lang.train_section import resolve
from netdsl.train.arrays import MappedArray, cache_dir
from netdsl.train.fitting import image_suffixes
from netdsl.train.image_folder import scan_image_folder, split_layout
from netdsl.train.loader import epoch_order
from netdsl.train.sources import IMAGENET, normalization, open_source
from netdsl.train.splits import DataError, Reading, SplitData, Splits
from tests.test_train_data import ALL, error, ids, load, numbered, solid, tensors  # the sibling module's helpers (pytest puts tests/ on the path)


def opened(base: Path, data: dict[str, Any], shape: tuple[int, ...] = (1, 12, 12)) -> Splits:
    """open_source as `netdsl train` calls it (defaults filled in); nothing is decoded and no statistics are read."""
    return open_source(resolve({"data": data})["data"], shape, base)


def grey(path: Path, level: int, size: tuple[int, int] = (4, 4)) -> None:
    solid(path, "L", size, level)


def levels(x: torch.Tensor) -> list[int]:
    """The grey level (0..255) of each image of a batch, read at its first pixel."""
    return [round(float(v) * 255) for v in x[:, 0, 0, 0]]


def batch_ids(x: torch.Tensor) -> list[int]:
    """Sample ids stored in the first value of each sample by `numbered` (id / 1000)."""
    return [round(float(v) * 1000) for v in x.flatten(1)[:, 0]] if len(x) else []


# ---------------------------------------------------------------- image_folder: what is found


def test_images_at_any_depth_below_a_class_folder_and_what_is_left_out(tmp_path):
    root = tmp_path / "images"
    grey(root / "cat" / "y.png", 20)
    grey(root / "cat" / "a" / "b" / "x.png", 10)  # two levels down: still a cat
    grey(root / "dog" / "z.png", 30)
    (root / "cat" / "a" / "notes.txt").write_text("not an image")
    (root / "dog" / "readme.md").write_text("not an image either")
    (root / "cat" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # hidden: skipped without a word
    grey(root / "cat" / ".thumbnails" / "t.png", 99)  # inside a hidden folder: skipped too
    (root / ".git").mkdir()  # a hidden folder is not a class
    data = load(tmp_path, {"source": "image_folder", "path": "images", "split": ALL, "shuffle": False, "normalize": False}, (1, 4, 4))
    assert data.classes == ["cat", "dog"]
    x, y = tensors(data.train)
    assert sorted(zip(y.tolist(), levels(x))) == [(0, 10), (0, 20), (1, 30)]
    assert data.notes == [
        f"image_folder {root}: 2 classes; train 3, val 0, test 0",
        f"left out 2 file(s) that are not images by their suffix (first: {root / 'cat' / 'a' / 'notes.txt'})",
    ]


def test_every_suffix_pillow_reads_is_listed_in_any_case(tmp_path):
    suffixes = image_suffixes()
    assert {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif"} <= suffixes
    assert not {".txt", ".md", ".csv", ".json", ".npy"} & suffixes
    root = tmp_path / "listed"
    (root / "all").mkdir(parents=True)
    names = [f"{i:03d}{s.upper() if i % 2 else s}" for i, s in enumerate(sorted(suffixes))]  # .PNG as well as .png
    for name in names:
        (root / "all" / name).write_bytes(b"")  # listed by suffix; nothing is opened until a batch needs it
    listing = scan_image_folder(root)
    assert [Path(f).name for f in listing.files] == names and listing.ignored == []


@pytest.mark.filterwarnings("ignore:IM image format is deprecated:DeprecationWarning")
def test_every_suffix_pillow_writes_is_decoded(tmp_path):
    extensions = Image.registered_extensions()
    root = tmp_path / "images"
    written: dict[str, int] = {}  # file name -> expected red level at the decoded pixel
    for i, suffix in enumerate(sorted(image_suffixes())):
        if extensions[suffix] not in Image.SAVE:
            continue
        path = root / f"c{i % 2}" / f"{i:03d}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        for mode, color, red in (("RGB", (200, 100, 50), 200), ("1", 1, 255)):  # some formats write 1-bit images only (.xbm, .msp)
            try:
                Image.new(mode, (8, 8), color).save(path)
                written[path.name] = red
                break
            except (OSError, ValueError, KeyError):
                path.unlink(missing_ok=True)
    assert {".png", ".jpg", ".webp", ".tif", ".bmp", ".gif"} <= {Path(n).suffix for n in written}
    data = load(tmp_path, {"source": "image_folder", "path": "images", "split": ALL, "shuffle": False, "normalize": False}, (3, 8, 8))
    x, _ = tensors(data.train)
    assert len(x) == len(written)
    listing = scan_image_folder(root)
    decoded = {Path(f).name: round(float(v) * 255) for f, v in zip(listing.files, x[:, 0, 4, 4])}
    # lossy formats (JPEG, WebP, AVIF) may move a flat colour by a level or two
    assert decoded == {name: pytest.approx(red, abs=3) for name, red in written.items()}


# ---------------------------------------------------------------- image_folder: train/ val/ test/ folders


def test_train_val_test_folders_are_the_splits(tmp_path):
    root = tmp_path / "images"
    for split, base in (("train", 10), ("val", 100), ("test", 200)):
        for cls in ("a", "b"):
            for i in range(2 if split == "train" else 1):
                grey(root / split / cls / f"{i}.png", base + 10 * (cls == "b") + i)
    assert split_layout(root) == {"train": root / "train", "val": root / "val", "test": root / "test"}
    data = load(tmp_path, {"source": "image_folder", "path": "images", "normalize": False}, (1, 4, 4))
    assert data.classes == ["a", "b"]
    assert (len(data.train), len(data.val), len(data.test)) == (4, 2, 2)  # the folders, not the default 0.7 / 0.1 / 0.2
    train_x, _ = tensors(data.train)
    assert sorted(levels(train_x)) == [10, 11, 20, 21]
    assert levels(tensors(data.val)[0]) == [100, 110] and tensors(data.val)[1].tolist() == [0, 1]
    assert levels(tensors(data.test)[0]) == [200, 210]
    assert data.notes == [f"image_folder {root}: 2 classes; train 4 (from train/), val 2 (from val/), test 2 (from test/)"]


def test_validation_folder_and_a_missing_test_folder_cut_from_train(tmp_path):
    root = tmp_path / "images"
    for i in range(9):
        grey(root / "train" / ("a" if i < 5 else "b") / f"{i}.png", i)
    grey(root / "validation" / "b" / "0.png", 150)  # a validation folder may lack a class: its labels are the training data's
    assert split_layout(root) == {"train": root / "train", "val": root / "validation"}
    data = load(tmp_path, {"source": "image_folder", "path": "images", "normalize": False}, (1, 4, 4))
    # no test/: train and test are cut from train/ by their fractions, 0.7 : 0.2 -> 9 * 0.7 / 0.9 = 7 train, 2 test
    assert (len(data.train), len(data.val), len(data.test)) == (7, 1, 2)
    assert tensors(data.val)[1].tolist() == [1] and levels(tensors(data.val)[0]) == [150]
    (train_x, train_y), (test_x, test_y) = tensors(data.train), tensors(data.test)
    assert sorted(levels(train_x) + levels(test_x)) == list(range(9))  # a partition of train/
    assert [int(level >= 5) for level in levels(train_x) + levels(test_x)] == train_y.tolist() + test_y.tolist()
    assert data.notes == [f"image_folder {root}: 2 classes; train 7 (from train/), val 1 (from validation/), test 2"]


def test_a_folder_with_more_than_split_folders_is_a_folder_of_classes(tmp_path):
    root = tmp_path / "images"
    grey(root / "train" / "a" / "0.png", 1)
    grey(root / "other" / "1.png", 2)  # `other` is no split name: train/ and other/ are two classes
    assert split_layout(root) is None
    data = load(tmp_path, {"source": "image_folder", "path": "images", "split": ALL, "normalize": False}, (1, 4, 4))
    assert data.classes == ["other", "train"]


def test_a_val_folder_with_a_class_the_training_data_lacks(tmp_path):
    root = tmp_path / "images"
    for split, cls in (("train", "a"), ("train", "b"), ("val", "a"), ("val", "c")):
        grey(root / split / cls / "0.png", 0)
    assert error(tmp_path, {"source": "image_folder", "path": "images"}, (1, 4, 4)) == (
        f"{root / 'val' / 'c'}:1:1: class folder 'c' is not a class of the training data (a, b)"
    )


def test_empty_folders_and_class_folders_without_images(tmp_path):
    root = tmp_path / "images"
    (root / ".git").mkdir(parents=True)
    (root / "loose.png").write_bytes(b"")  # an image beside the class folders is in no class
    assert error(tmp_path, {"source": "image_folder", "path": "images"}) == (
        f"{root}:1:1: no class sub-folders (expected one folder of images per class, e.g. cat/ and dog/)"
    )
    grey(root / "cat" / "0.png", 0)
    (root / "dog").mkdir()
    (root / "dog" / ".DS_Store").write_bytes(b"x")
    (root / "dog" / "notes.txt").write_text("no images here")
    assert error(tmp_path, {"source": "image_folder", "path": "images"}) == f"{root / 'dog'}:1:1: class folder 'dog' holds no images"
    (tmp_path / "one.png").write_bytes(b"")
    assert error(tmp_path, {"source": "image_folder", "path": "one.png"}) == (
        f"{tmp_path / 'one.png'}:1:1: not a folder (image_folder wants one sub-folder of images per class)"
    )
    assert error(tmp_path, {"source": "image_folder", "path": "images"}, (12,)) == (
        "train.data:1:1: image_folder needs an image input (C x H x W); the spec's input is 12"
    )


def test_a_symlink_loop_inside_a_class_folder_lists_each_image_once(tmp_path):
    root = tmp_path / "images"
    grey(root / "cat" / "0.png", 0)
    (root / "cat" / "again").symlink_to(".")  # cat/again -> cat; two such links make the walk exponential (it never ends)
    assert scan_image_folder(root).files == [str(root / "cat" / "0.png")]  # today: 41 entries, cat/again/again/.../0.png


# ---------------------------------------------------------------- image_folder: corrupt images


def corrupt_folder(tmp_path: Path) -> tuple[Path, Path, Path]:
    """cat/a.png (grey 60), cat/x.png (random bytes), cat/y.png (a PNG cut short after its header), dog/b.png (grey 90)."""
    root = tmp_path / "images"
    grey(root / "cat" / "a.png", 60)
    bad = root / "cat" / "x.png"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes())
    cut = root / "cat" / "y.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(cut)
    cut.write_bytes(cut.read_bytes()[:200])
    grey(root / "dog" / "b.png", 90)
    return root, bad, cut


@pytest.mark.parametrize("workers", [0, 2])
def test_a_corrupt_image_stops_the_split_with_its_name_and_the_way_out(tmp_path, workers):
    _, bad, _ = corrupt_folder(tmp_path)
    data = opened(tmp_path, {"source": "image_folder", "path": "images", "split": ALL, "shuffle": False}, (1, 4, 4))  # nothing decoded yet
    with pytest.raises(DataError) as info:
        tensors(data.train, workers=workers)
    data.close()
    assert str(info.value) == (
        f"{bad}:1:1: cannot decode image: cannot identify image file {str(bad)!r}; "
        "set train.data.skip_corrupt: true to leave such files out (they are then listed in skipped_files.txt)"
    )


def test_skip_corrupt_leaves_them_out_of_the_batch_and_reports_them(tmp_path):
    _, bad, cut = corrupt_folder(tmp_path)
    data = load(tmp_path, {"source": "image_folder", "path": "images", "split": ALL, "shuffle": False, "skip_corrupt": True}, (1, 4, 4))
    assert len(data.train) == 4  # listed: whether a file decodes is known only when it is read
    batches = list(data.train.batches(Reading(batch_size=4), epoch=0, seed=0, shuffle=False))
    assert len(batches) == 1
    x, y, skipped = batches[0]
    assert levels(x) == [60, 90] and y.tolist() == [0, 1]
    assert [file for file, _ in skipped] == [str(bad), str(cut)]
    assert skipped[0][1] == f"cannot decode image: cannot identify image file {str(bad)!r}"
    assert skipped[1][1].startswith("cannot decode image: ")  # Pillow's own reason for a truncated file
    # the statistics were read from the two good images only: levels 60 and 90, mean 75 / 255
    assert data.mean == [pytest.approx(75 / 255, abs=1e-6)]


def test_skip_corrupt_statistics_survive_a_batch_of_corrupt_images_only(tmp_path):
    corrupt_folder(tmp_path)
    cfg = resolve({"data": {"source": "image_folder", "path": "images", "split": ALL, "skip_corrupt": True}})["data"]
    data = open_source(cfg, (1, 4, 4), tmp_path)
    # batches of one sample (train.batch_size 1): two of the four are corrupt
    mean, _ = normalization(cfg, data.train, (1, 4, 4), Reading(batch_size=1))
    assert mean == [pytest.approx(75 / 255, abs=1e-6)]


# ---------------------------------------------------------------- npz and npy: memory-mapped


def test_an_uncompressed_npz_is_memory_mapped_in_place(tmp_path, monkeypatch):
    monkeypatch.setenv("NETDSL_CACHE", str(tmp_path / "cache"))
    x = np.random.default_rng(0).random((10, 1, 3, 3), dtype=np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(10) % 3)
    data = opened(tmp_path, {"source": "npz", "path": "d.npz", "split": ALL, "shuffle": False}, (1, 3, 3))
    source = data.train.dataset.source
    assert isinstance(source, MappedArray) and source.path == str((tmp_path / "d.npz").resolve())
    assert source.shape == (10, 1, 3, 3) and np.dtype(source.dtype) == np.float32
    with open(tmp_path / "d.npz", "rb") as f:  # the offset is where x's bytes start inside the archive
        f.seek(source.offset)
        assert f.read(x.nbytes) == x.tobytes()
    got, y = tensors(data.train)
    assert torch.equal(got, torch.from_numpy(x)) and y.tolist() == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
    assert not (tmp_path / "cache").exists()  # nothing unpacked


def test_a_compressed_npz_is_unpacked_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NETDSL_CACHE", str(tmp_path / "cache"))
    assert cache_dir() == tmp_path / "cache"
    x = np.random.default_rng(0).integers(0, 256, (12, 5, 5, 3), dtype=np.uint8)  # N x H x W x C bytes
    np.savez_compressed(tmp_path / "d.npz", x=x, y=np.arange(12) % 4)
    settings = {"source": "npz", "path": "d.npz", "split": ALL, "shuffle": False}
    data = opened(tmp_path, settings, (3, 5, 5))
    source = data.train.dataset.source
    unpacked = Path(source.path)
    assert isinstance(source, MappedArray) and unpacked.parent.parent == tmp_path / "cache" / "npz" and unpacked.name == "x.npy"
    assert np.array_equal(np.load(unpacked), x)
    before = unpacked.stat()
    again = opened(tmp_path, settings, (3, 5, 5))
    assert again.train.dataset.source == source  # the same file, not unpacked a second time
    after = unpacked.stat()
    assert (after.st_mtime_ns, after.st_ino) == (before.st_mtime_ns, before.st_ino)
    got, y = tensors(again.train)
    assert torch.equal(got, torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255) and y.tolist() == [0, 1, 2, 3] * 3


def test_source_npy_maps_x_npy_of_a_folder(tmp_path):
    folder = tmp_path / "arrays"
    folder.mkdir()
    x, y = numbered(8, (1, 2, 2))
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", y)
    data = opened(tmp_path, {"source": "npy", "path": "arrays", "split": ALL, "shuffle": False}, (1, 2, 2))
    source = data.train.dataset.source
    assert isinstance(source, MappedArray) and source.path == str(folder / "x.npy") and source.offset == 128  # a version 1.0 header
    assert ids(data.train) == list(range(8)) and tensors(data.train)[1].tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    assert data.classes == ["0", "1", "2", "3"]
    (folder / "y.npy").unlink()
    assert error(tmp_path, {"source": "npy", "path": "arrays"}, (1, 2, 2)) == (
        f"{folder}:1:1: needs y.npy (source npy: a folder with x.npy, N samples, and y.npy, N labels)"
    )
    assert error(tmp_path, {"source": "npy", "path": "arrays/x.npy"}, (1, 2, 2)) == (
        f"{folder / 'x.npy'}:1:1: source npy wants a folder holding x.npy and y.npy"
    )


def test_labels_float_integers_are_accepted_fractions_and_objects_refused(tmp_path):
    x = np.zeros((3, 4), np.float32)
    np.savez(tmp_path / "whole.npz", x=x, y=np.array([0.0, 2.0, 1.0]))
    data = opened(tmp_path, {"source": "npz", "path": "whole.npz", "split": ALL, "shuffle": False}, (4,))
    assert tensors(data.train)[1].tolist() == [0, 2, 1] and data.classes == ["0", "1", "2"]

    np.savez(tmp_path / "half.npz", x=x, y=np.array([0.0, 0.5, 1.0]))
    assert error(tmp_path, {"source": "npz", "path": "half.npz"}, (4,)) == (
        f"{tmp_path / 'half.npz'}:1:1: y holds float64 values; class labels are integers 0 .. classes - 1"
    )
    np.savez(tmp_path / "names.npz", x=x, y=np.array(["cat", 1, 2.5], dtype=object))
    assert error(tmp_path, {"source": "npz", "path": "names.npz"}, (4,)) == (
        f"{tmp_path / 'names.npz'}:1:1: not a readable .npz file: Object arrays cannot be loaded when allow_pickle=False"
    )
    np.savez(tmp_path / "objects.npz", x=np.array([[1], [2], [3]], dtype=object), y=np.arange(3))
    assert error(tmp_path, {"source": "npz", "path": "objects.npz"}, (4,)) == (
        f"{tmp_path / 'objects.npz'}:1:1: holds Python objects (dtype=object), which are not read; save numeric arrays"
    )


# ---------------------------------------------------------------- normalize


def test_normalize_imagenet_is_torchvisions_statistics_for_three_channels_only(tmp_path):
    x, y = numbered(6, (3, 2, 2))
    np.savez(tmp_path / "d.npz", x=x, y=y)
    data = load(tmp_path, {"source": "npz", "path": "d.npz", "normalize": "imagenet"}, (3, 2, 2))
    # torchvision's ImageNet statistics, which its pretrained models expect: "normalized using mean = [0.485, 0.456, 0.406]
    # and std = [0.229, 0.224, 0.225]" (torchvision.models docs, with transforms.Normalize: https://pytorch.org/vision/0.8/models.html)
    assert (data.mean, data.std) == ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]) == (IMAGENET[0], IMAGENET[1])
    for shape, channels in (((1, 2, 2), 1), ((12,), 1)):
        assert error(tmp_path, {"source": "npz", "path": "d.npz", "normalize": "imagenet"}, shape) == (
            f"train.data.normalize:1:1: imagenet statistics are for 3-channel images; the spec's input has {channels}"
        )


def test_normalize_mean_and_std_need_one_value_per_channel(tmp_path):
    x, y = numbered(6, (3, 2, 2))
    np.savez(tmp_path / "d.npz", x=x, y=y)
    for given in ({"mean": [0.5, 0.5], "std": [0.2, 0.2, 0.2]}, {"mean": [0.5] * 3, "std": [0.2] * 4}):
        assert error(tmp_path, {"source": "npz", "path": "d.npz", "normalize": given}, (3, 2, 2)) == (
            "train.data.normalize:1:1: mean and std need 3 value(s), one per input channel"
        )


def test_stats_samples_is_the_size_of_the_seeded_sample(tmp_path):
    x, y = numbered(50)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    settings = {"source": "npz", "path": "d.npz", "split": {"train": 0.8, "test": 0.2}, "seed": 4}
    cfg = resolve({"data": {**settings, "stats_samples": 7}})["data"]
    data = open_source(cfg, (1, 2, 2), tmp_path)
    counted: list[int] = []
    mean, std = normalization(cfg, data.train, (1, 2, 2), Reading(batch_size=3), counted.append)
    assert counted == [3, 3, 1]  # 7 samples in batches of 3, reported as they are read
    train_x = tensors(data.train)[0].double()
    chosen = train_x[epoch_order(40, 4, 0)[:7]]
    assert (mean, std) == ([pytest.approx(float(chosen.mean()), abs=1e-6)], [pytest.approx(float(chosen.std()), abs=1e-6)])
    everything = load(tmp_path, {**settings, "stats_samples": 500}, (1, 2, 2))  # more than the 40 training samples: all of them
    assert everything.mean == [pytest.approx(float(train_x.mean()), abs=1e-6)]
    assert mean != everything.mean


# ---------------------------------------------------------------- the batch sampler


def numbered_splits(tmp_path: Path, n: int, split: dict[str, float] = ALL, shuffle: bool = False) -> Splits:
    x, y = numbered(n)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    return opened(tmp_path, {"source": "npz", "path": "d.npz", "split": split, "shuffle": shuffle}, (1, 2, 2))


def epoch_batches(split: SplitData, reading: Reading, epoch: int, seed: int = 5, start_step: int = 0) -> list[list[int]]:
    return [batch_ids(x) for x, _, _ in split.batches(reading, epoch=epoch, seed=seed, shuffle=True, start_step=start_step)]


def test_the_training_order_of_an_epoch_is_epoch_order(tmp_path):
    data = numbered_splits(tmp_path, 30, {"train": 0.8, "val": 0.2}, shuffle=True)  # 24 training samples, a seeded subset
    stored = ids(data.train)
    assert sorted(stored) != stored  # shuffled into train and val
    orders = []
    for epoch in range(3):
        batches = epoch_batches(data.train, Reading(batch_size=5), epoch)
        assert [len(b) for b in batches] == [5, 5, 5, 5, 4]
        orders.append([i for b in batches for i in b])
        assert orders[-1] == [stored[i] for i in epoch_order(24, 5, epoch).tolist()]
    assert len({tuple(o) for o in orders}) == 3  # each epoch its own order
    assert epoch_batches(data.train, Reading(batch_size=5), 1) == epoch_batches(data.train, Reading(batch_size=5), 1)  # a function of (seed, epoch)


@pytest.mark.parametrize(("n", "batch_size"), [(23, 6), (25, 4), (8, 8)])
def test_two_ranks_take_the_even_and_odd_places_of_each_global_batch(tmp_path, n, batch_size):
    data = numbered_splits(tmp_path, n)
    one = epoch_batches(data.train, Reading(batch_size=batch_size), 2)
    ranks = [epoch_batches(data.train, Reading(batch_size=batch_size, rank=r, world=2), 2) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(one)  # both ranks take a (possibly empty) part of every step
    for whole, even, odd in zip(one, *ranks):
        assert (even, odd) == (whole[0::2], whole[1::2])
    assert sorted(i for b in ranks[0] + ranks[1] for i in b) == list(range(n))


def test_start_step_gives_the_rest_of_the_uninterrupted_epoch(tmp_path):
    data = numbered_splits(tmp_path, 23)
    reading = Reading(batch_size=4)
    whole = epoch_batches(data.train, reading, 3)
    assert len(whole) == 6
    for k in range(7):
        assert epoch_batches(data.train, reading, 3, start_step=k) == whole[k:]
    rank1 = Reading(batch_size=4, rank=1, world=2)
    assert epoch_batches(data.train, rank1, 3, start_step=4) == epoch_batches(data.train, rank1, 3)[4:]


def test_persistent_workers_follow_each_epoch_and_a_resumed_one(tmp_path):
    data = numbered_splits(tmp_path, 23)
    serial, workers = Reading(batch_size=4), Reading(batch_size=4, workers=2)
    try:
        first = data.train.batches(workers, epoch=0, seed=5, shuffle=True)
        assert next(first) is not None  # an epoch left after one batch (early stopping, a signal) ...
        first.close()
        for epoch in (1, 2):  # ... does not leak into the next ones, read by the same worker processes
            assert epoch_batches(data.train, workers, epoch) == epoch_batches(data.train, serial, epoch)
        assert epoch_batches(data.train, workers, 4, start_step=3) == epoch_batches(data.train, serial, 4)[3:]
    finally:
        data.close()


@pytest.mark.parametrize(("n", "batch_size", "world"), [(23, 4, 1), (24, 4, 1), (3, 8, 1), (1, 1, 1), (23, 6, 2), (25, 4, 2), (1, 4, 2)])
def test_steps_is_the_number_of_batches_yielded(tmp_path, n, batch_size, world):
    data = numbered_splits(tmp_path, n)
    for rank in range(world):
        reading = Reading(batch_size=batch_size, rank=rank, world=world)
        assert data.train.steps(reading) == len(epoch_batches(data.train, reading, 0)) == -(-n // batch_size)
        stored = list(data.train.batches(reading, epoch=0, seed=0, shuffle=False))
        assert data.train.steps(reading) == len(stored)


# ---------------------------------------------------------------- bounded memory


def live_tensor_bytes() -> int:
    """Bytes of the storages of every tensor that Python code can still reach (each storage counted once)."""
    storages = {}
    for obj in gc.get_objects():
        if issubclass(type(obj), torch.Tensor) and obj.layout == torch.strided and obj.device.type == "cpu":  # type(): no __class__ lookups
            try:
                storage = obj.untyped_storage()
                storages[storage.data_ptr()] = storage.nbytes()
            except RuntimeError:  # fake tensors that other tests' torch.export / torch.compile left behind hold no data
                continue
    return sum(storages.values())


def test_an_epoch_over_an_image_folder_keeps_no_decoded_images(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(300):  # 300 photos of 64 x 64: 12 KiB each decoded as bytes, 48 KiB as float32
        folder = tmp_path / "images" / f"c{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png", compress_level=1)
    data = opened(tmp_path, {"source": "image_folder", "path": "images", "split": ALL}, (3, 64, 64))
    reading = Reading(batch_size=16)
    batch_bytes = 16 * 3 * 64 * 64 * 4  # 768 KiB of float32; the whole epoch would be 300 * 48 KiB = 14.1 MiB
    gc.collect()
    baseline = live_tensor_bytes()
    seen, growth, peaks = 0, [], []
    tracemalloc.start()
    try:
        for step, (x, _, _) in enumerate(data.train.batches(reading, epoch=0, seed=0, shuffle=True)):
            seen += len(x)
            if step % 4 == 3:
                peaks.append(tracemalloc.get_traced_memory()[1])
                growth.append(live_tensor_bytes() - baseline)
                tracemalloc.reset_peak()  # walking the objects is no part of reading
        peaks.append(tracemalloc.get_traced_memory()[1])
    finally:
        tracemalloc.stop()
    peak = max(peaks)
    assert seen == 300 and len(growth) == 4  # checked after batches 4, 8, 12 and 16 of 19
    # torch's memory is invisible to tracemalloc, so the live tensors are counted; one batch is held (x) at each check
    assert max(growth) < 3 * batch_bytes, growth
    # Python's own allocations (file reads, the decoded bytes before they become a tensor) peak at about 0.25 MiB;
    # keeping every image's decoded bytes (12 KiB each) would take 3.5 MiB
    assert peak < 2**20, peak
