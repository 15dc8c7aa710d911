"""Dense outputs as files: segmentation masks as palette PNGs, reconstructions as images (Pillow and numpy; no torch)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def palette(n: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map: class i gets the colour whose bits spread i's bits (0 black, 1 dark red, 2 green, ...), n x 3 uint8."""
    out = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out[i] = (r, g, b)
    return out


def mask_image(mask: np.ndarray) -> Any:
    """A class-index mask (H x W) as a Pillow palette image: its pixel values stay the class indices."""
    from PIL import Image

    img = Image.fromarray(np.asarray(mask, dtype=np.uint8), mode="P")
    img.putpalette(palette().ravel().tolist())
    return img


def plain_image(x: np.ndarray) -> Any:
    """A C x H x W array in [0, 1] (C = 1 or 3; else the first channel) as a Pillow image; C x L signals as one-row images."""
    from PIL import Image

    a = np.asarray(x, dtype=np.float32)
    if a.ndim == 2:
        a = a[:, None, :]
    if a.shape[0] not in (1, 3):
        a = a[:1]
    pixels = (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)
    return Image.fromarray(pixels[0], mode="L") if len(pixels) == 1 else Image.fromarray(pixels.transpose(1, 2, 0), mode="RGB")


def save_png(img: Any, path: Path) -> None:
    """Write atomically (a temp file of this process's own + rename); a failure removes it and is one line naming the file."""
    import io

    from netdsl.atomic import write_atomic

    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    write_atomic(path, buffer.getvalue())


def output_name(label: str) -> str:
    """A file name for an input's output: `photos/a.jpg` -> `a.png`, `x.npy[3]` -> `x_3.png`."""
    stem = Path(label.split("[")[0]).stem
    index = label[label.index("[") + 1 : -1] if "[" in label and label.endswith("]") else ""
    return f"{stem}_{index}.png" if index else f"{stem}.png"


def write_pictures(task: Any, outputs: np.ndarray, labels: Sequence[str], folder: Path) -> list[Path]:
    """One PNG per output (masks for segmentation, images for reconstruction) in `folder`; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    used: set[str] = set()
    for out, label in zip(outputs, labels):
        name, k = output_name(label), 1
        while name in used:  # two inputs with the same stem from different folders
            name, k = f"{Path(output_name(label)).stem}_{k}.png", k + 1
        used.add(name)
        picture = task.picture(out)
        img = mask_image(picture) if picture.dtype == np.uint8 and picture.ndim == 2 else plain_image(picture)
        path = folder / name
        save_png(img, path)
        paths.append(path)
    return paths
