"""Image folders: one sub-folder per class (images at any depth below it), or train/ val/ test/ folders of those.

When the input is its own target (reconstruction), a folder of images without class folders is read too, every
image labelled 0. Segmentation folders (images/ and masks/) are read by netdsl/train/mask_folder.py.

Only file names are listed up front; images are decoded when a batch needs them, in DataLoader workers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from netdsl.train.fitting import CorruptImage, decode_image, image_suffixes
from netdsl.train.splits import fail

SPLIT_FOLDERS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


@dataclass
class FolderListing:
    """The images of one folder: paths (as strings, in a stable sorted order) and class indices."""

    root: Path
    classes: list[str]
    files: list[str]
    labels: list[int]
    ignored: list[str] = field(default_factory=list)  # files below the class folders that are not images by their suffix

    def __len__(self) -> int:
        return len(self.files)


def walk_once(root: Path | str) -> Iterator[tuple[str, list[str], list[str]]]:
    """os.walk following links, sorted, hidden folders left out, each folder once: a link back up (a loop) is not walked again."""
    seen: set[tuple[int, int]] = set()
    for folder, dirs, entries in os.walk(root, followlinks=True):
        stat = os.stat(folder)
        if (stat.st_dev, stat.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((stat.st_dev, stat.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        yield folder, dirs, entries


def split_layout(path: Path) -> dict[str, Path] | None:
    """{'train': path/train, 'val': ..., 'test': ...} when `path` holds split folders (train/ and optionally val/ and test/)."""
    folders = [p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if not any(p.name == "train" for p in folders) or not all(p.name in SPLIT_FOLDERS for p in folders):
        return None
    return {SPLIT_FOLDERS[p.name]: p for p in sorted(folders)}


def scan_image_folder(path: Path, classes: list[str] | None = None, progress: Callable[[int], None] | None = None) -> FolderListing:
    """List the images of a class-folder tree; with `classes` (a training split's), every class folder must be one of them.

    Hidden files and folders are left out; other files that are not images are listed in `ignored`.
    `progress(n)` is told of every folder's files as they are listed.
    """
    if not path.is_dir():
        raise fail(str(path), "not a folder (image_folder wants one sub-folder of images per class)")
    found = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise fail(str(path), "no class sub-folders (expected one folder of images per class, e.g. cat/ and dog/)")
    if classes is not None and (unknown := [c for c in found if c not in classes]):
        raise fail(str(path / unknown[0]), f"class folder '{unknown[0]}' is not a class of the training data ({', '.join(classes)})")
    names = classes if classes is not None else found
    suffixes = image_suffixes()
    files: list[str] = []
    labels: list[int] = []
    ignored: list[str] = []
    ignored += [str(p) for p in sorted(path.iterdir()) if p.is_file() and not p.name.startswith(".")]  # beside the class folders: no class
    for label, name in enumerate(names):
        if name not in found:
            continue
        before = len(files)
        for folder, _, entries in walk_once(path / name):
            for entry in sorted(entries):
                if entry.startswith("."):
                    continue
                full = os.path.join(folder, entry)
                (files if os.path.splitext(entry)[1].lower() in suffixes else ignored).append(full)
            if progress is not None:
                progress(len(entries))
        if len(files) == before:
            raise fail(str(path / name), f"class folder '{name}' holds no images")
        labels += [label] * (len(files) - before)
    return FolderListing(path, list(names), files, labels, ignored)


class ImageFiles(torch.utils.data.Dataset[tuple[torch.Tensor, int] | tuple[str, str]]):
    """Map-style dataset over image files: item i is (image fitted to the input shape, label), or (file, reason) if it cannot be decoded."""

    def __init__(self, files: list[str], labels: list[int], shape: tuple[int, ...]) -> None:
        # one numpy array of fixed-width bytes instead of a list of str: no per-item refcounts for forked workers to copy
        self.files = np.array([f.encode() for f in files], dtype=np.bytes_) if files else np.zeros(0, dtype="S1")
        self.labels = np.asarray(labels, dtype=np.int64)
        self.shape = shape

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int] | tuple[str, str]:
        file = self.files[i].decode()
        try:
            return decode_image(file, self.shape), int(self.labels[i])
        except CorruptImage as exc:
            return file, str(exc)


def scan_flat_folder(path: Path, progress: Callable[[int], None] | None = None) -> FolderListing:
    """The images of a folder without class folders (any depth), all labelled 0: inputs that are their own targets."""
    suffixes = image_suffixes()
    files: list[str] = []
    ignored: list[str] = []
    for folder, _, entries in walk_once(path):
        for entry in sorted(e for e in entries if not e.startswith(".")):
            (files if os.path.splitext(entry)[1].lower() in suffixes else ignored).append(os.path.join(folder, entry))
        if progress is not None:
            progress(len(entries))
    if not files:
        raise fail(str(path), "holds no images")
    return FolderListing(path, [], files, [0] * len(files), ignored)


def has_class_folders(path: Path) -> bool:
    return path.is_dir() and any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir())
