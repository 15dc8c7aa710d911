"""Samples made to fit the spec's input: resized and channel-converted tensors, and decoded images."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Pillow formats that can be opened but need a handler or program Pillow does not bring (stubs, Ghostscript, Windows)
UNREADABLE_FORMATS = frozenset({"BUFR", "GRIB", "HDF5", "EPS", "WMF"})


def image_suffixes() -> frozenset[str]:
    """Every file suffix Pillow can decode here (.png, .jpg, .webp, .tif, .bmp, ...), lower case."""
    from PIL import Image

    Image.init()
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN and fmt not in UNREADABLE_FORMATS)


class CorruptImage(Exception):
    """A file that Pillow cannot decode; the message says why."""


def fit_to_input(x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """N x C x H x W images (or N x features) in [0, 1], resized and channel-converted to the spec's input shape."""
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


def decode_image(source: str | bytes, shape: tuple[int, ...] | None) -> torch.Tensor:
    """One image file (a path or its bytes) as a float tensor in [0, 1]: fitted to `shape` (C x H x W), or 3 x H x W as stored.

    Pillow releases the GIL while it decodes, so threads and worker processes both decode in parallel.
    Raises CorruptImage for a file Pillow cannot read (truncated, not an image, unknown format).
    """
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            rgb = img.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:  # UnidentifiedImageError is an OSError
        raise CorruptImage(f"cannot decode image: {exc}") from None
    x = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8).view(rgb.height, rgb.width, 3).permute(2, 0, 1).float() / 255.0
    if shape is None:
        return x
    if len(shape) != 3:
        raise ValueError(f"the spec's input {'x'.join(map(str, shape))} is not an image (C x H x W)")
    return fit_to_input(x[None], shape)[0]
