"""Targets from every source (netdsl/tasks/targets.py, batch_targets.py): masks, the input as target, values and
0/1 vectors from npz/npy; segmentation image folders (mask_folder.py); signals (N x C x L); the generated shapes
set (shapes.py); CSV tables (tables.py); masks in WebDataset shards; and the one-line errors for each bad input.

Every test writes its files into tmp_path; messages are asserted whole.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from netdsl.errors import SpecError
from netdsl.lang.train_section import resolve
from netdsl.tasks.targets import Targets
from netdsl.train import tables
from netdsl.train.batch_targets import CLASS_TARGETS
from netdsl.train.loader import collate
from netdsl.train.shapes import make_shapes
from netdsl.train.sources import load_splits, open_source
from netdsl.train.splits import Failure, Reading, SplitData, Splits

ALL = {"train": 1.0}
MASKS = Targets("mask", classes=4)


def opened(base: Path, data: dict[str, Any], shape: tuple[int, ...], targets: Targets = CLASS_TARGETS) -> Splits:
    """open_source as `netdsl train` calls it (defaults filled in); nothing is decoded yet."""
    return open_source(resolve({"data": {"split": ALL, "shuffle": False, "normalize": False, **data}})["data"], shape, base, targets)


def error(base: Path, data: dict[str, Any], shape: tuple[int, ...], targets: Targets = CLASS_TARGETS, workers: int = 0) -> str:
    """The one-line message of opening the source and reading every batch of its training split."""
    with pytest.raises(SpecError) as info:
        read(opened(base, data, shape, targets).train, workers)
    message = str(info.value)
    assert "\n" not in message
    return message


def read(split: SplitData, workers: int = 0, batch_size: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """A whole split as (x, y) in its stored order."""
    xs, ys = [], []
    for x, y, _ in split.batches(Reading(batch_size=batch_size, workers=workers), epoch=0, seed=0, shuffle=False):
        xs.append(x)
        ys.append(y)
    split.close()
    return torch.cat(xs), torch.cat(ys)


# ---------------------------------------------------------------- which source gives what


def test_a_source_without_the_targets_the_task_needs_is_refused(tmp_path):
    assert error(tmp_path, {"source": "digits"}, (1, 8, 8), MASKS) == (
        "train.data.source:1:1: source 'digits' gives no masks, which the task needs; sources that do: shapes, npz, npy, image_folder, webdataset"
    )
    assert error(tmp_path, {"source": "webdataset", "urls": "x.tar"}, (3, 8, 8), Targets("values", (2,))) == (
        "train.data.source:1:1: source 'webdataset' gives no values (regression targets), which the task needs; sources that do: npz, npy, csv"
    )
    assert error(tmp_path, {"source": "image_folder", "path": "."}, (3, 8, 8), Targets("multihot", (3,), 3)) == (
        "train.data.source:1:1: source 'image_folder' gives no 0/1 label vectors (multilabel targets), which the task needs; sources that do: npz, npy"
    )


def test_class_targets_are_the_default_and_the_input_kind_keeps_the_labels(tmp_path):
    x, y = read(opened(tmp_path, {"source": "digits"}, (1, 8, 8)).train, batch_size=512)
    _, y_input = read(opened(tmp_path, {"source": "digits"}, (1, 8, 8), Targets("input")).train, batch_size=512)
    assert x.shape == (1797, 1, 8, 8) and y.dtype == torch.int64 and torch.equal(y, y_input)


# ---------------------------------------------------------------- npz / npy


def test_npz_masks_stay_per_sample_and_are_resized_with_nearest_neighbour(tmp_path):
    x = np.random.default_rng(0).random((6, 3, 4, 4), dtype=np.float32)
    masks = np.random.default_rng(1).integers(0, 4, (6, 4, 4)).astype(np.uint8)
    np.savez(tmp_path / "seg.npz", x=x, y=masks)
    got_x, got_y = read(opened(tmp_path, {"source": "npz", "path": "seg.npz"}, (3, 4, 4), MASKS).train)
    assert got_y.dtype == torch.int64 and torch.equal(got_y, torch.from_numpy(masks).long()) and got_x.shape == (6, 3, 4, 4)
    # the input twice the size: every mask pixel becomes 2 x 2 pixels of the same class, no blend of two classes
    _, up = read(opened(tmp_path, {"source": "npz", "path": "seg.npz"}, (3, 8, 8), MASKS).train)
    assert torch.equal(up, torch.from_numpy(masks).long().repeat_interleave(2, 1).repeat_interleave(2, 2))
    # N x 1 x H x W masks, and a separate npy folder with int32 masks
    np.savez(tmp_path / "seg1.npz", x=x, y=masks[:, None])
    assert torch.equal(read(opened(tmp_path, {"source": "npz", "path": "seg1.npz"}, (3, 4, 4), MASKS).train)[1], got_y)
    (tmp_path / "arrays").mkdir()
    np.save(tmp_path / "arrays" / "x.npy", x)
    np.save(tmp_path / "arrays" / "y.npy", masks.astype(np.int32))
    data = opened(tmp_path, {"source": "npy", "path": "arrays"}, (3, 4, 4), MASKS)
    assert torch.equal(read(data.train)[1], got_y) and data.classes == ["0", "1", "2", "3"]


def test_per_pixel_labels_for_a_classification_task_name_the_shapes(tmp_path):
    # what the issue measured: `x has 64 samples but y has 262144` (y was flattened across samples)
    np.savez(tmp_path / "seg.npz", x=np.zeros((64, 3, 64, 64), np.float32), y=np.zeros((64, 64, 64), np.int64))
    assert error(tmp_path, {"source": "npz", "path": "seg.npz"}, (3, 64, 64)) == (
        f"{tmp_path / 'seg.npz'}:1:1: y is 64x64x64, 64x64 per sample; class labels are one integer per sample "
        "(per-pixel labels are masks: train.task segmentation)"
    )


def test_npz_mask_values_are_checked_per_batch_naming_the_sample(tmp_path):
    masks = np.zeros((6, 4, 4), np.uint8)
    masks[2, 1, 1] = 255  # ignored with ignore_index 255
    masks[5, 3, 0] = 7
    np.savez(tmp_path / "seg.npz", x=np.zeros((6, 1, 4, 4), np.float32), y=masks)
    data = {"source": "npz", "path": "seg.npz"}
    where = tmp_path / "seg.npz"
    assert error(tmp_path, data, (1, 4, 4), MASKS) == (
        f"{where}:1:1: sample 2: mask value 255 is not a class index (the network outputs 4 classes, 0 .. 3; train.task.ignore_index marks pixels to leave out)"
    )
    expected = f"{where}:1:1: sample 5: mask value 7 is not a class index (the network outputs 4 classes, 0 .. 3; ignore_index is 255)"
    assert error(tmp_path, data, (1, 4, 4), Targets("mask", classes=4, ignore_index=255)) == expected
    # read by a worker process, the check happens there and comes back as the same line
    assert error(tmp_path, data, (1, 4, 4), Targets("mask", classes=4, ignore_index=255), workers=1) == expected
    # only the batch that holds it fails: the first batch (samples 0 .. 3) reads
    split = opened(tmp_path, data, (1, 4, 4), Targets("mask", classes=4, ignore_index=255)).train
    _, y, _ = next(iter(split.batches(Reading(batch_size=4), epoch=0, seed=0, shuffle=False)))
    assert y.shape == (4, 4, 4) and int(y[2, 1, 1]) == 255


def test_npz_mask_shapes_and_types_that_cannot_be_masks(tmp_path):
    np.savez(tmp_path / "flat.npz", x=np.zeros((3, 1, 4, 4), np.float32), y=np.zeros((3, 16), np.int64))
    assert error(tmp_path, {"source": "npz", "path": "flat.npz"}, (1, 4, 4), MASKS) == (
        f"{tmp_path / 'flat.npz'}:1:1: y is 3x16; masks are N x H x W (or N x 1 x H x W) class indices"
    )
    np.savez(tmp_path / "half.npz", x=np.zeros((3, 1, 2, 2), np.float32), y=np.full((3, 2, 2), 0.5))
    assert error(tmp_path, {"source": "npz", "path": "half.npz"}, (1, 2, 2), MASKS) == (
        f"{tmp_path / 'half.npz'}:1:1: sample 0: mask value 0.5 is not a class index (masks hold integers)"
    )
    np.savez(tmp_path / "sig.npz", x=np.zeros((3, 2, 8), np.float32), y=np.zeros((3, 2, 8), np.int64))
    assert error(tmp_path, {"source": "npz", "path": "sig.npz"}, (2, 8), MASKS) == (
        "train.data:1:1: masks need an image input (C x H x W); the spec's input is 2x8"
    )


def test_the_input_as_target_needs_no_y_and_keeps_labels_it_finds(tmp_path):
    x = np.random.default_rng(0).random((5, 1, 3, 3), dtype=np.float32)
    np.savez(tmp_path / "only_x.npz", x=x)
    data = opened(tmp_path, {"source": "npz", "path": "only_x.npz"}, (1, 3, 3), Targets("input"))
    got_x, got_y = read(data.train)
    assert torch.equal(got_x, torch.from_numpy(x)) and got_y.tolist() == [0] * 5 and data.classes == [] and data.notes == []
    np.savez(tmp_path / "labelled.npz", x=x, y=np.array([2, 0, 1, 1, 0]))
    data = opened(tmp_path, {"source": "npz", "path": "labelled.npz"}, (1, 3, 3), Targets("input"))
    assert read(data.train)[1].tolist() == [2, 0, 1, 1, 0] and data.classes == ["0", "1", "2"]
    np.savez(tmp_path / "masks.npz", x=x, y=np.zeros((5, 3, 3), np.int64))
    data = opened(tmp_path, {"source": "npz", "path": "masks.npz"}, (1, 3, 3), Targets("input"))
    assert read(data.train)[1].tolist() == [0] * 5
    assert data.notes == [f"{tmp_path / 'masks.npz'}: y is not used (y is 5x3x3, 3x3 per sample); the target is the input"]
    (tmp_path / "folder").mkdir()
    np.save(tmp_path / "folder" / "x.npy", x)
    assert read(opened(tmp_path, {"source": "npy", "path": "folder"}, (1, 3, 3), Targets("input")).train)[1].tolist() == [0] * 5
    assert error(tmp_path, {"source": "npz", "path": "only_x.npz"}, (1, 3, 3)) == f"{tmp_path / 'only_x.npz'}:1:1: needs arrays 'x' and 'y'; has x"


def test_values_have_the_outputs_shape(tmp_path):
    x = np.zeros((4, 5), np.float32)
    y = np.arange(12, dtype=np.float64).reshape(4, 3)
    np.savez(tmp_path / "v.npz", x=x, y=y)
    got = read(opened(tmp_path, {"source": "npz", "path": "v.npz"}, (5,), Targets("values", (3,))).train)[1]
    assert got.dtype == torch.float32 and torch.equal(got, torch.from_numpy(y).float())
    np.savez(tmp_path / "one.npz", x=x, y=np.array([0.5, 1.5, 2.5, 3.5]))  # N values for one output
    got = read(opened(tmp_path, {"source": "npz", "path": "one.npz"}, (5,), Targets("values", (1,))).train)[1]
    assert got.shape == (4, 1) and got[:, 0].tolist() == [0.5, 1.5, 2.5, 3.5]
    assert error(tmp_path, {"source": "npz", "path": "v.npz"}, (5,), Targets("values", (2,))) == (
        f"{tmp_path / 'v.npz'}:1:1: y is 4x3, 3 per sample, but the network outputs 2 per sample"
    )
    assert error(tmp_path, {"source": "npz", "path": "one.npz"}, (5,), Targets("values", (1, 2, 2))) == (
        f"{tmp_path / 'one.npz'}:1:1: y is 4, 1 per sample, but the network outputs 1x2x2 per sample"
    )


def test_multihot_targets_are_0_or_1_for_each_class(tmp_path):
    y = np.array([[1, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0]], np.uint8)
    np.savez(tmp_path / "m.npz", x=np.zeros((4, 2), np.float32), y=y)
    data = opened(tmp_path, {"source": "npz", "path": "m.npz"}, (2,), Targets("multihot", (3,), 3))
    got = read(data.train)[1]
    assert got.dtype == torch.float32 and torch.equal(got, torch.from_numpy(y).float()) and data.classes == ["0", "1", "2"]
    assert error(tmp_path, {"source": "npz", "path": "m.npz"}, (2,), Targets("multihot", (4,), 4)) == (
        f"{tmp_path / 'm.npz'}:1:1: y is 4x3, but multilabel targets are N x 4 (0 or 1 for each class the network outputs)"
    )
    y[3, 2] = 2
    np.savez(tmp_path / "bad.npz", x=np.zeros((4, 2), np.float32), y=y)
    assert error(tmp_path, {"source": "npz", "path": "bad.npz"}, (2,), Targets("multihot", (3,), 3)) == (
        f"{tmp_path / 'bad.npz'}:1:1: sample 3: multilabel target 2 is not 0 or 1"
    )


def test_collate_stacks_targets_of_any_shape_and_passes_a_failure_on():
    masks = [(torch.zeros(3, 2, 2), torch.full((2, 2), i)) for i in range(3)]
    x, y, skipped = collate(masks)
    assert x.shape == (3, 3, 2, 2) and y.shape == (3, 2, 2) and y[2, 0, 0] == 2 and skipped == []
    x, y, skipped = collate([(torch.zeros(2), 4), ("bad.png", "cannot decode image: truncated")])
    assert y.tolist() == [4] and skipped == [("bad.png", "cannot decode image: truncated")]
    failure = Failure("m.png", "mask value 9 is not a class index")
    assert collate([(torch.zeros(2), 4), failure]) is failure and collate(failure) is failure


# ---------------------------------------------------------------- signals: N x C x L


def test_signals_keep_their_channels(tmp_path):
    x = np.random.default_rng(0).random((4, 3, 16), dtype=np.float32)
    np.savez(tmp_path / "s.npz", x=x, y=np.arange(4))
    assert torch.equal(read(opened(tmp_path, {"source": "npz", "path": "s.npz"}, (3, 16)).train)[0], torch.from_numpy(x))
    np.savez(tmp_path / "last.npz", x=x.transpose(0, 2, 1), y=np.arange(4))  # N x L x C, as Keras stores sequences
    assert torch.equal(read(opened(tmp_path, {"source": "npz", "path": "last.npz"}, (3, 16)).train)[0], torch.from_numpy(x))
    np.savez(tmp_path / "one.npz", x=x[:, 0], y=np.arange(4))  # N x L for a 1 x L input gets its channel axis
    assert torch.equal(read(opened(tmp_path, {"source": "npz", "path": "one.npz"}, (1, 16)).train)[0], torch.from_numpy(x[:, :1]))
    assert error(tmp_path, {"source": "npz", "path": "s.npz"}, (2, 16)) == (
        "train.data:1:1: cannot convert 3-channel signals to 2 channels (the spec's input is 2x16)"
    )
    np.savez(tmp_path / "img.npz", x=np.zeros((4, 3, 8, 8), np.float32), y=np.arange(4))
    assert error(tmp_path, {"source": "npz", "path": "img.npz"}, (3, 16)) == (
        "train.data:1:1: samples of shape 3x8x8 do not fit a C x L input (the spec's input is 3x16)"
    )


def test_synthetic_signals_are_normalized_per_channel(tmp_path):
    # the issue: `input: 3x128` with source synthetic crashed with "The size of tensor a (3) must match ... (128)"
    cfg = resolve({"data": {"source": "synthetic", "samples": 64}})["data"]
    data = load_splits(cfg, (3, 128), tmp_path)
    x, _ = read(data.train, batch_size=64)
    assert x.shape[1:] == (3, 128) and len(data.mean) == len(data.std) == 3
    assert np.allclose(data.mean, x.double().mean((0, 2)).numpy(), atol=0.02)  # a sample of the training split


# ---------------------------------------------------------------- segmentation image folders


def save_mask(path: Path, values: np.ndarray, mode: str = "P") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "P":
        img = Image.fromarray(values.astype(np.uint8), "P")
        img.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [128] * 252 * 3)
    elif mode == "I;16":
        img = Image.fromarray(values.astype(np.uint16))
    else:
        img = Image.fromarray(values.astype(np.uint8), mode)
    img.save(path)


def save_image(path: Path, level: int, size: tuple[int, int] = (4, 4)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (level, level, level)).save(path)


def test_mask_folder_pairs_images_and_masks_by_name(tmp_path):
    pattern = np.array([[0, 1, 2, 3]] * 4)
    for i, mode in enumerate(("P", "L", "I;16")):
        save_image(tmp_path / "data" / "images" / f"s{i}.jpg", 10 * i)
        save_mask(tmp_path / "data" / "masks" / f"s{i}.png", (pattern + i) % 4, mode)
    save_image(tmp_path / "data" / "images" / "deeper" / "s9.png", 90)  # nested: pairs with masks/deeper/s9.png
    save_mask(tmp_path / "data" / "masks" / "deeper" / "s9.png", pattern.T)
    data = opened(tmp_path, {"source": "image_folder", "path": "data"}, (3, 8, 8), MASKS)
    x, y = read(data.train)
    assert x.shape == (4, 3, 8, 8) and y.shape == (4, 8, 8) and y.dtype == torch.int64
    expected = [pattern.T] + [(pattern + i) % 4 for i in range(3)]  # sorted by name: deeper/s9 first
    for got, want in zip(y, expected):  # 4 x 4 -> 8 x 8 with nearest neighbour: each value twice in each direction
        assert torch.equal(got, torch.from_numpy(want).repeat_interleave(2, 0).repeat_interleave(2, 1))
    assert data.classes == ["0", "1", "2", "3"]
    assert data.notes == [f"image_folder {tmp_path / 'data'}: images with masks; train 4, val 0, test 0"]


def test_mask_folder_with_split_folders_and_masks_downsized(tmp_path):
    mask = np.zeros((8, 8), np.uint8)
    mask[:, 4:] = 2
    for split in ("train", "val"):
        for k in range(2):
            save_image(tmp_path / "d" / split / "images" / f"{k}.png", 100, (8, 8))
            save_mask(tmp_path / "d" / split / "masks" / f"{k}.png", mask, "L")
    data = opened(tmp_path, {"source": "image_folder", "path": "d"}, (1, 4, 4), MASKS)
    assert (len(data.train), len(data.val), len(data.test)) == (2, 2, 0)
    assert read(data.val)[1][0].tolist() == [[0, 0, 2, 2]] * 4  # never a blend such as 1 at the edge


def test_symlink_loops_in_mask_folders_list_each_file_once(tmp_path):
    for sub in ("images", "masks"):
        (tmp_path / "d" / sub).mkdir(parents=True)
        (tmp_path / "d" / sub / "again").symlink_to(".")  # a link back up: two such would make the walk never end
        (tmp_path / "d" / sub / "more").symlink_to(".")
    save_image(tmp_path / "d" / "images" / "a.png", 5)
    save_mask(tmp_path / "d" / "masks" / "a.png", np.zeros((4, 4)))
    data = opened(tmp_path, {"source": "image_folder", "path": "d"}, (3, 4, 4), MASKS)
    assert len(data.train) + len(data.val) + len(data.test) == 1


def test_unpaired_images_and_masks_are_listed(tmp_path):
    for name in ("a", "b", "c", "d", "e"):
        save_image(tmp_path / "images" / f"{name}.png", 0)
    for name in ("a", "z"):
        save_mask(tmp_path / "masks" / f"{name}.png", np.zeros((4, 4)))
    assert error(tmp_path, {"source": "image_folder", "path": "."}, (3, 4, 4), MASKS) == (
        f"{tmp_path}:1:1: 4 images have no mask (e.g. b.png, c.png, d.png); 1 mask has no image (e.g. z.png)"
    )
    (tmp_path / "masks").rename(tmp_path / "labels")
    assert error(tmp_path, {"source": "image_folder", "path": "."}, (3, 4, 4), MASKS) == (
        f"{tmp_path}:1:1: segmentation data needs images/ and masks/ folders here, with matching file names (optionally below train/ val/ test/)"
    )


def test_mask_file_values_and_colour_masks_stop_the_run_naming_the_file(tmp_path):
    save_image(tmp_path / "images" / "a.png", 0)
    save_image(tmp_path / "images" / "b.png", 0)
    save_mask(tmp_path / "masks" / "a.png", np.zeros((4, 4)))
    bad = np.zeros((4, 4))
    bad[2, 2] = 9
    save_mask(tmp_path / "masks" / "b.png", bad)
    data = {"source": "image_folder", "path": "."}
    assert error(tmp_path, data, (3, 4, 4), MASKS, workers=1) == (
        f"{tmp_path / 'masks' / 'b.png'}:1:1: mask value 9 is not a class index (the network outputs 4 classes, 0 .. 3; "
        "train.task.ignore_index marks pixels to leave out)"
    )
    Image.new("RGB", (4, 4), (255, 0, 0)).save(tmp_path / "masks" / "b.png")
    assert error(tmp_path, data, (3, 4, 4), MASKS) == (
        f"{tmp_path / 'masks' / 'b.png'}:1:1: the mask is a RGB image; masks are palette (P) or integer greyscale (L, I) images whose values are class indices"
    )
    (tmp_path / "masks" / "b.png").write_bytes(b"not a png")  # undecodable: skipped with skip_corrupt, like an image
    split = opened(tmp_path, {**data, "skip_corrupt": True}, (3, 4, 4), MASKS).train
    batch = next(iter(split.batches(Reading(batch_size=2), epoch=0, seed=0, shuffle=False)))
    assert batch[1].shape == (1, 4, 4) and batch[2][0][0] == str(tmp_path / "masks" / "b.png")


def test_a_folder_without_class_folders_serves_the_input_as_target(tmp_path):
    save_image(tmp_path / "photos" / "a.png", 10)
    save_image(tmp_path / "photos" / "b.png", 20)
    data = opened(tmp_path, {"source": "image_folder", "path": "photos"}, (1, 4, 4), Targets("input"))
    x, y = read(data.train)
    assert [round(float(v) * 255) for v in x[:, 0, 0, 0]] == [10, 20] and y.tolist() == [0, 0] and data.classes == []


# ---------------------------------------------------------------- the generated shapes set


def test_shapes_are_the_same_bytes_for_a_seed(tmp_path):
    images, masks, largest = make_shapes((3, 32, 32), 64, 7)
    digest = hashlib.sha256(images.numpy().tobytes() + masks.numpy().tobytes() + largest.numpy().tobytes()).hexdigest()
    assert digest == SHAPES_SHA256  # pinned: torch's CPU generator and elementwise float32 arithmetic give these bytes everywhere
    again = make_shapes((3, 32, 32), 64, 7)
    assert torch.equal(images, again[0]) and torch.equal(masks, again[1])
    assert not torch.equal(images, make_shapes((3, 32, 32), 64, 8)[0])


SHAPES_SHA256 = "cc234d761fb9db6f4ec2a7a1c7210b593e96585b9523b20842d439ea9617906d"


def test_shapes_classes_colours_and_any_channel_count():
    images, masks, largest = make_shapes((1, 48, 48), 200, 0)
    assert images.shape == (200, 1, 48, 48) and images.dtype == torch.uint8 and masks.shape == (200, 48, 48)
    assert set(masks.unique().tolist()) == {0, 1, 2, 3} and set(largest.unique().tolist()) == {1, 2, 3}
    # the largest visible shape's class covers the most pixels of the images with one shape kind only
    for i in range(200):
        counts = torch.bincount(masks[i].flatten().long(), minlength=4)[1:]
        if (counts > 0).sum() == 1:
            assert int(counts.argmax()) + 1 == int(largest[i])
    background = images[:, 0][masks == 0].float()
    shapes = images[:, 0][masks > 0].float()
    assert background.max() < shapes.min()  # every shape is brighter than every background pixel
    assert make_shapes((4, 16, 24), 3, 0)[0].shape == (3, 4, 16, 24)


def test_shapes_generate_2000_images_of_64_x_64_in_well_under_a_second():
    make_shapes((3, 64, 64), 50, 0)  # warm up torch's kernels
    start = time.process_time()  # CPU time (all threads): other processes on a shared machine do not count
    make_shapes((3, 64, 64), 2000, 0)
    assert time.process_time() - start < 1.0  # about 0.25 s of wall time on 2 idle cores


def test_shapes_source_gives_masks_or_the_largest_shapes_class(tmp_path):
    data = opened(tmp_path, {"source": "shapes", "samples": 40, "seed": 3}, (3, 16, 16), MASKS)
    x, y = read(data.train, batch_size=40)
    images, masks, largest = make_shapes((3, 16, 16), 40, 3)
    assert torch.equal(x, images.float() / 255) and torch.equal(y, masks.long()) and data.classes == ["background", "circle", "square", "triangle"]
    data = opened(tmp_path, {"source": "shapes", "samples": 40, "seed": 3}, (3, 16, 16))
    assert torch.equal(read(data.train, batch_size=40)[1], largest - 1) and data.classes == ["circle", "square", "triangle"]
    assert error(tmp_path, {"source": "shapes"}, (3, 16), MASKS) == (
        "train.data:1:1: source shapes draws images of at least 8 x 8 (C x H x W); the spec's input is 3x16"
    )


# ---------------------------------------------------------------- CSV tables


def test_csv_rows_are_samples_reshaped_channel_major(tmp_path):
    (tmp_path / "t.csv").write_text("a0,a1,label,b0,b1\n1,2,3,4,5\n6,7,0,8,9\n")
    data = opened(tmp_path, {"source": "csv", "path": "t.csv"}, (2, 2))
    x, y = read(data.train)
    assert x.tolist() == [[[1, 2], [4, 5]], [[6, 7], [8, 9]]] and y.tolist() == [3, 0] and data.classes == ["0", "1", "2", "3"]
    flat = read(opened(tmp_path, {"source": "csv", "path": "t.csv"}, (4,)).train)[0]
    assert flat.tolist() == [[1, 2, 4, 5], [6, 7, 8, 9]]


def test_csv_class_names_values_and_the_input_as_target(tmp_path):
    (tmp_path / "names.csv").write_text("f,kind\n1,setosa\n2,virginica\n3,setosa\n4,versicolor\n")
    data = opened(tmp_path, {"source": "csv", "path": "names.csv", "label_column": "kind"}, (1,))
    assert read(data.train)[1].tolist() == [0, 2, 0, 1] and data.classes == ["setosa", "versicolor", "virginica"]
    (tmp_path / "val.csv").write_text("f,kind\n1,setosa\n2,rose\n")
    assert error(tmp_path, {"source": "csv", "path": "names.csv", "label_column": "kind", "val_path": "val.csv"}, (1,)) == (
        f"{tmp_path / 'val.csv'}:1:1: label 'rose' is not a class of the training data (setosa, versicolor, virginica)"
    )
    (tmp_path / "v.csv").write_text("x,y,label\n1,2,0.5\n3,4,-1.25\n")
    got = read(opened(tmp_path, {"source": "csv", "path": "v.csv"}, (2,), Targets("values", (1,))).train)[1]
    assert got.dtype == torch.float32 and got.tolist() == [[0.5], [-1.25]]
    assert error(tmp_path, {"source": "csv", "path": "v.csv"}, (2,), Targets("values", (3,))) == (
        f"{tmp_path / 'v.csv'}:1:1: the label column gives 1 value per sample, but the network outputs 3 per sample"
    )
    assert error(tmp_path, {"source": "csv", "path": "names.csv", "label_column": "kind"}, (1,), Targets("values", (1,))) == (
        f"{tmp_path / 'names.csv'}:1:1: label 'setosa' is not a number (a regression task needs numbers)"
    )
    (tmp_path / "plain.csv").write_text("x,y\n1,2\n3,4\n")
    x, y = read(opened(tmp_path, {"source": "csv", "path": "plain.csv"}, (2,), Targets("input")).train)
    assert x.tolist() == [[1, 2], [3, 4]] and y.tolist() == [0, 0]


def test_csv_errors(tmp_path, monkeypatch):
    (tmp_path / "t.csv").write_text("x1,x2,lable\n1,2,0\n3,oops,1\n")
    assert error(tmp_path, {"source": "csv", "path": "t.csv"}, (2,)) == (
        f"{tmp_path / 't.csv'}:1:1: no label column 'label' (columns: x1, x2, lable); did you mean 'lable'?"
    )
    assert error(tmp_path, {"source": "csv", "path": "t.csv", "label_column": "y"}, (2,)) == (
        f"{tmp_path / 't.csv'}:1:1: no label column 'y' (columns: x1, x2, lable); name the label column in train.data.label_column"
    )
    assert error(tmp_path, {"source": "csv", "path": "t.csv", "label_column": "lable"}, (2,)) == (
        f"{tmp_path / 't.csv'}:1:1: line 3, column 'x2': 'oops' is not a number"
    )
    (tmp_path / "short.csv").write_text("a,b,label\n1,2,0\n3,1\n")
    assert error(tmp_path, {"source": "csv", "path": "short.csv"}, (2,)) == f"{tmp_path / 'short.csv'}:1:1: line 3: 2 values, but the header names 3 columns"
    (tmp_path / "ok.csv").write_text("a,b,c,label\n1,2,3,0\n")
    assert error(tmp_path, {"source": "csv", "path": "ok.csv"}, (2, 2)) == (
        f"{tmp_path / 'ok.csv'}:1:1: 3 feature columns, but the spec's input 2x2 needs 4 (C x L: C * L columns, the first L are channel 0)"
    )
    (tmp_path / "empty.csv").write_text("")
    assert error(tmp_path, {"source": "csv", "path": "empty.csv"}, (2,)) == (
        f"{tmp_path / 'empty.csv'}:1:1: the file is empty; expected a header row naming the columns, then one sample per row"
    )
    (tmp_path / "labels.csv").write_text("label\n1\n")
    assert (
        error(tmp_path, {"source": "csv", "path": "labels.csv"}, (2,)) == f"{tmp_path / 'labels.csv'}:1:1: no feature columns besides the label column 'label'"
    )
    (tmp_path / "latin1.csv").write_bytes("a,label\n1,caf\xe9\n".encode("latin-1"))
    assert error(tmp_path, {"source": "csv", "path": "latin1.csv"}, (1,)) == (
        f"{tmp_path / 'latin1.csv'}:1:1: not a readable CSV file (UTF-8 text, comma-separated): "
        "'utf-8' codec can't decode byte 0xe9 in position 13: invalid continuation byte"
    )
    monkeypatch.setattr(tables, "CSV_LIMIT", 10)
    (tmp_path / "big.csv").write_text("a,label\n" + "1,0\n" * 300_000)  # 1.2 MB over a limit of 10 bytes
    assert error(tmp_path, {"source": "csv", "path": "big.csv"}, (1,)) == (
        f"{tmp_path / 'big.csv'}:1:1: 0.0 GB is too much for source csv, which reads the whole table into memory (it is meant for small tables): "
        "save larger data as x.npy and y.npy in a folder and use source: npy (memory-mapped)"
    )


# ---------------------------------------------------------------- masks in WebDataset shards


def png(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def write_shard(path: Path, samples: list[dict[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tar:
        for i, members in enumerate(samples):
            for suffix, data in members.items():
                info = tarfile.TarInfo(f"{i:06d}.{suffix}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def test_webdataset_masks(tmp_path):
    pytest.importorskip("webdataset")
    mask = np.zeros((4, 4), np.uint8)
    mask[:2] = 3
    image = png(Image.new("RGB", (4, 4), (200, 100, 50)))
    bad = mask.copy()
    bad[3, 3] = 8
    write_shard(
        tmp_path / "train-000000.tar",
        [{"png": image, "mask.png": png(Image.fromarray(mask, "L"))}, {"jpg": image, "seg.png": png(Image.fromarray(mask[::-1].copy(), "L"))}],
    )
    write_shard(tmp_path / "bad-000000.tar", [{"png": image, "mask.png": png(Image.fromarray(bad, "L"))}])
    data = opened(tmp_path, {"source": "webdataset", "urls": "train-000000.tar"}, (3, 8, 8), MASKS)
    x, y = read(data.train)
    up = torch.from_numpy(mask).long().repeat_interleave(2, 0).repeat_interleave(2, 1)
    assert x.shape == (2, 3, 8, 8) and y.dtype == torch.int64 and torch.equal(y[0], up) and torch.equal(y[1], up.flip(0))
    assert data.classes == ["0", "1", "2", "3"]
    assert error(tmp_path, {"source": "webdataset", "urls": "bad-000000.tar"}, (3, 8, 8), MASKS) == (
        f"{tmp_path / 'bad-000000.tar'}:000000.mask.png:1:1: mask value 8 is not a class index (the network outputs 4 classes, 0 .. 3; "
        "train.task.ignore_index marks pixels to leave out)"
    )
    write_shard(tmp_path / "nomask-000000.tar", [{"png": image, "cls": b"1"}])
    assert error(tmp_path, {"source": "webdataset", "urls": "nomask-000000.tar"}, (3, 8, 8), MASKS) == (
        f"{tmp_path / 'nomask-000000.tar'}:000000:1:1: no .mask.png or .seg.png member (has png, cls); "
        "set train.data.skip_corrupt: true to leave such samples out (they are then listed in skipped_files.txt)"
    )
