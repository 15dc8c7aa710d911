"""`netdsl data pack`: an image folder written as WebDataset shards (original image bytes and class index) plus index.json."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from netdsl.train.image_folder import scan_image_folder, split_layout
from netdsl.train.shards import SHARD_NAME, require_webdataset
from netdsl.train.splits import fail

__all__ = ["pack"]


def pack(folder: Path, out: Path, shard_size: int = 1000, progress: Callable[[int, int], None] | None = None, *, seed: int = 0) -> dict[str, Any]:
    """Write an image folder (class folders, or train/ val/ test/ of them) as WebDataset shards and index.json in `out`.

    Samples keep their original file bytes; each split's listing is shuffled (seeded) so that a shard mixes classes.
    Returns index.json's content plus `out`, `index`, `urls` (brace patterns per split) and `stale` (older shards
    in `out` that this pack did not write and index.json does not list).
    """
    wds = require_webdataset("netdsl data pack")
    folder, out = Path(folder), Path(out)
    if shard_size < 1:
        raise fail("--shard-size", f"must be at least 1 sample per shard, got {shard_size}")
    if not folder.is_dir():
        raise fail(str(folder), "no such folder" if not folder.exists() else "not a folder (pack wants one sub-folder of images per class)")
    if out.resolve().is_relative_to(folder.resolve()):
        raise fail(str(out), f"inside the image folder {folder}; write the shards somewhere else")
    layout = split_layout(folder) or {"train": folder}
    train = scan_image_folder(layout["train"])
    listings = {"train": train} | {k: scan_image_folder(layout[k], train.classes) for k in ("val", "test") if k in layout}
    prepare_folder(out)
    before = {p.name for p in out.iterdir() if SHARD_NAME.match(p.name)}
    total, done = sum(len(listing) for listing in listings.values()), 0
    splits: dict[str, dict[str, Any]] = {}

    def written(n: int) -> None:  # n samples of the current shard are written; `done` counts those before it
        if progress is not None:
            progress(done + n, total)

    for split, listing in listings.items():
        order = random.Random(seed).sample(range(len(listing)), len(listing))
        width = max(6, len(str(len(order) - 1)))
        names: list[str] = []
        counts: list[int] = []
        for start in range(0, len(order), shard_size):
            name = f"{split}-{len(names):06d}.tar"
            chunk = [(f"{pos:0{width}d}", listing.files[i], listing.labels[i]) for pos, i in enumerate(order[start : start + shard_size], start)]
            write_shard(wds, out / name, chunk, written)
            names.append(name)
            counts.append(len(chunk))
            done += len(chunk)
        splits[split] = {"shards": names, "counts": counts, "samples": len(order)}
    ignored = [os.path.relpath(f, folder) for listing in listings.values() for f in listing.ignored]
    index = {"classes": train.classes, "splits": splits, "ignored": ignored}
    write_atomically(out / "index.json", (json.dumps(index, indent=1) + "\n").encode())
    fresh = {n for s in splits.values() for n in s["shards"]}
    urls = {k: brace_pattern(s["shards"]) for k, s in splits.items()}
    return index | {"out": str(out), "index": str(out / "index.json"), "urls": urls, "stale": sorted(before - fresh)}


def prepare_folder(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise fail(str(out), "not a folder (the shards and index.json go into a folder)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise fail(str(out), f"cannot create the folder: {exc.strerror or exc}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise fail(str(out), "not writable")


def write_shard(wds: Any, path: Path, samples: list[tuple[str, str, int]], written: Callable[[int], None] | None = None) -> None:
    """One tar shard of (key, image file, class index) samples, written under a temporary name and then renamed."""

    def write(f: Any) -> None:
        with wds.TarWriter(f, encoder=False) as sink:
            for n, (key, file, label) in enumerate(samples, 1):
                try:
                    image = Path(file).read_bytes()
                except OSError as exc:
                    raise fail(file, f"cannot read: {exc.strerror or exc}") from None
                sink.write({"__key__": key, os.path.splitext(file)[1].lower()[1:]: image, "cls": str(label).encode("ascii")})
                if written is not None:
                    written(n)

    write_atomically(path, write)


def write_atomically(path: Path, content: bytes | Callable[[Any], None]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            if isinstance(content, bytes):
                f.write(content)
            else:
                content(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise fail(str(path), f"cannot write: {exc.strerror or exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def brace_pattern(names: list[str]) -> str:
    """'train-{000000..000019}.tar' for consecutive shard names (the one name when there is one)."""
    if len(names) < 2:
        return names[0] if names else ""
    prefix = names[0].split("-")[0]
    return f"{prefix}-{{{0:06d}..{len(names) - 1:06d}}}.tar"


# ---------------------------------------------------------------- finding and counting shards
