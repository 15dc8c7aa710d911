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


def shape_text(shape: tuple[int, ...] | torch.Size | list[int]) -> str:
    return "x".join(map(str, shape))


def fit_to_input(x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Samples made to fit the spec's input shape: N x features (F), N x C x L signals (C x L) or N x C x H x W
    images in [0, 1] (C x H x W), resized (linear, bilinear) and channel-converted (1 -> C; images also 3 -> 1)."""
    if len(shape) == 1:
        x = x.reshape(len(x), math.prod(x.shape[1:]))  # not -1: an empty split has no size to infer
        if x.shape[1] != shape[0]:
            x = F.interpolate(x[:, None], size=shape[0], mode="linear", align_corners=False)[:, 0]
        return x.contiguous()
    c, *size = shape
    kind = "signals" if len(shape) == 2 else "images"
    if x.dim() != len(shape) + 1:
        layout = "C x L" if len(shape) == 2 else "C x H x W" if len(shape) == 3 else "C x " + " x ".join("D" * len(size))
        raise ValueError(f"samples of shape {shape_text(x.shape[1:])} do not fit a {layout} input")
    if x.shape[1] != c:
        if x.shape[1] == 1:
            x = x.expand(-1, c, *x.shape[2:])
        elif c == 1 and len(shape) == 3 and x.shape[1] in (3, 4):
            x = (x[:, :3] * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)  # ITU-R BT.601 luma
        else:
            raise ValueError(f"cannot convert {x.shape[1]}-channel {kind} to {c} channels")
    if list(x.shape[2:]) != size:
        if len(shape) == 2:  # signals: any range, so no clamp
            x = F.interpolate(x, size=size[0], mode="linear", align_corners=False)
        elif len(shape) == 3:
            x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
        else:
            raise ValueError(f"samples of shape {shape_text(x.shape[1:])} cannot be resized to {shape_text(shape)}")
    return x.contiguous()


def fit_mask(mask: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """N x h x w class indices at the input's H x W: nearest neighbour, never a blend of two classes.

    'nearest-exact' samples at pixel centres, as the image's bilinear resize (align_corners=False) does, so mask
    and image stay aligned; torch's 'nearest' is shifted by up to a pixel. Float32 holds every index below 2**24.
    """
    if tuple(mask.shape[1:]) == tuple(size):
        return mask
    return F.interpolate(mask[:, None].float(), size=tuple(size), mode="nearest-exact")[:, 0].long()


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


MASK_MODES = frozenset({"P", "L", "I", "I;16", "I;16L", "I;16B", "1"})


class NotAMask(Exception):
    """An image that decodes but holds colours, not class indices (the message says what to save instead)."""


def decode_mask(source: str | bytes) -> torch.Tensor:
    """A mask image as int64 H x W class indices: a palette image's indices (mode P), or the values of an integer
    greyscale image (L, I, I;16; a 1-bit image gives 0 and 1).

    Raises CorruptImage for a file Pillow cannot read and NotAMask for a colour image (RGB, LA, ...), whose
    colours would have to be mapped to classes first.
    """
    import io

    import numpy as np
    from PIL import Image

    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            if img.mode not in MASK_MODES:
                raise NotAMask(f"the mask is a {img.mode} image; masks are palette (P) or integer greyscale (L, I) images whose values are class indices")
            values = np.asarray(img)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise CorruptImage(f"cannot decode mask: {exc}") from None
    return torch.from_numpy(values.astype(np.int64))
