"""Segmentation image folders: `images/` and `masks/` with matching file names, or train/ val/ test/ folders of those.

    data/images/0001.jpg  data/masks/0001.png      (or data/train/images/..., data/val/masks/..., ...)

A mask pairs with the image of the same path below its folder, suffix aside (images/a/1.jpg with masks/a/1.png).
Masks are palette images (mode P: the palette indices are the classes) or integer greyscale images (L, I, 16-bit
PNGs). Images are fitted to the input as image_folder fits them (bilinear); masks are resized to the same H x W
with nearest neighbour, never blended. Mask values are checked where a batch is read (in the DataLoader workers):
a value that is not a class index, nor ignore_index, stops the run naming the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from netdsl.tasks.targets import Targets
from netdsl.train.batch_targets import BadTarget, check_masks
from netdsl.train.fitting import CorruptImage, NotAMask, decode_image, decode_mask, fit_mask, image_suffixes
from netdsl.train.image_folder import walk_once
from netdsl.train.splits import Failure, fail

EXAMPLES = 3  # unpaired files named in the error


@dataclass
class MaskListing:
    """The image and mask files of one folder, paired (the same index in both lists), in a stable sorted order."""

    root: Path
    images: list[str]
    masks: list[str]
    ignored: list[str] = field(default_factory=list)  # files that are not images by their suffix

    def __len__(self) -> int:
        return len(self.images)


def files_by_stem(folder: Path, ignored: list[str]) -> dict[str, str]:
    """{path below `folder` without its suffix: file} of every image at any depth; other files go to `ignored`."""
    suffixes = image_suffixes()
    found: dict[str, str] = {}
    for parent, _, entries in walk_once(folder):
        for entry in sorted(e for e in entries if not e.startswith(".")):
            full = os.path.join(parent, entry)
            stem, suffix = os.path.splitext(os.path.relpath(full, folder))
            if suffix.lower() not in suffixes:
                ignored.append(full)
            elif stem in found:
                raise fail(str(folder), f"two files for one sample: {os.path.relpath(found[stem], folder)} and {entry} (file names without suffix must differ)")
            else:
                found[stem] = full
    return found


def unpaired(count: int, what: str, other: str, names: list[str]) -> str:
    return f"{count} {what}{'s have' if count != 1 else ' has'} no {other} (e.g. {', '.join(names[:EXAMPLES])})"


def scan_mask_folder(path: Path) -> MaskListing:
    """Pair the images of `path`/images with the masks of `path`/masks; every file must have its partner."""
    if not (path / "images").is_dir() or not (path / "masks").is_dir():
        raise fail(str(path), "segmentation data needs images/ and masks/ folders here, with matching file names (optionally below train/ val/ test/)")
    ignored: list[str] = []
    images = files_by_stem(path / "images", ignored)
    masks = files_by_stem(path / "masks", ignored)
    lonely_images = [os.path.relpath(images[s], path / "images") for s in images if s not in masks]
    lonely_masks = [os.path.relpath(masks[s], path / "masks") for s in masks if s not in images]
    if lonely_images or lonely_masks:
        parts = [unpaired(len(lonely_images), "image", "mask", lonely_images)] if lonely_images else []
        parts += [unpaired(len(lonely_masks), "mask", "image", lonely_masks)] if lonely_masks else []
        raise fail(str(path), "; ".join(parts))
    if not images:
        raise fail(str(path / "images"), "holds no images")
    stems = sorted(images)
    return MaskListing(path, [images[s] for s in stems], [masks[s] for s in stems], ignored)


class MaskedImages(torch.utils.data.Dataset[object]):
    """Item i: (image fitted to the input, its mask at the input's H x W), (file, reason) for a file that cannot be
    decoded, or a Failure for a mask the task cannot use (a colour image, a value that is not a class index)."""

    def __init__(self, images: list[str], masks: list[str], shape: tuple[int, ...], targets: Targets) -> None:
        # fixed-width bytes, not lists of str: no per-item refcounts for forked workers to copy
        self.images = np.array([f.encode() for f in images], dtype=np.bytes_)
        self.masks = np.array([f.encode() for f in masks], dtype=np.bytes_)
        self.shape, self.targets = shape, targets

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor] | tuple[str, str] | Failure:
        image, mask_file = self.images[i].decode(), self.masks[i].decode()
        try:
            x = decode_image(image, self.shape)
        except CorruptImage as exc:
            return image, str(exc)
        try:
            mask = decode_mask(mask_file)[None]
            check_masks(mask, self.targets)
        except CorruptImage as exc:
            return mask_file, str(exc)
        except (NotAMask, BadTarget) as exc:
            return Failure(mask_file, str(exc))
        return x, fit_mask(mask, self.shape[1:])[0]
