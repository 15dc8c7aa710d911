"""Reading inputs for prediction: images (Pillow) and .npy arrays as N x C x H x W float32 in [0, 1]; numpy only.

Images are converted to the model's channel count (Pillow's "L" is ITU-R 601 luma, as training converts) and
resized to its input size. A .npy array holds values on the same [0, 1] scale (uint8 pixels are divided by 255),
one sample (C x H x W) or a stack (N x C x H x W). Both `netdsl predict` (PyTorch) and `netdsl infer`
(onnxruntime) read through here, so the two see the same numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from netdsl.errors import input_error

PILLOW_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def read_image(path: str, shape: tuple[int, ...]) -> np.ndarray:
    """One image as a 1 x C x H x W float32 array in [0, 1] at the model's size."""
    from PIL import Image, UnidentifiedImageError

    if len(shape) != 3:
        raise input_error(path, f"the model takes {'x'.join(map(str, shape))} inputs, not images; give a .npy array")
    channels, height, width = shape
    if channels not in PILLOW_MODES:
        raise input_error(path, f"the model takes {channels}-channel inputs; images give 1, 3 or 4; give a .npy array")
    try:
        with Image.open(path) as img:
            img = img.convert(PILLOW_MODES[channels])
            if img.size != (width, height):
                img = img.resize((width, height), Image.Resampling.BILINEAR)
            pixels = np.asarray(img, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise input_error(path, f"cannot read as an image ({exc})") from None
    return pixels.reshape(height, width, channels).transpose(2, 0, 1)[None]


def read_array(path: str, shape: tuple[int, ...]) -> np.ndarray:
    """A .npy file as an N x (sample shape) float32 array: one sample or a stack of them."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise input_error(path, f"not a readable .npy array ({exc})") from None
    if array.dtype == np.uint8:
        array = array.astype(np.float32) / 255.0
    elif array.dtype.kind == "f":
        array = array.astype(np.float32)
    else:
        raise input_error(path, f"dtype {array.dtype} is not supported; give float values in [0, 1] or uint8 pixels")
    if array.shape == shape:
        return array[None]
    if array.ndim == len(shape) + 1 and array.shape[1:] == shape and len(array):
        return array
    want = "x".join(map(str, shape))
    raise input_error(path, f"shape {'x'.join(map(str, array.shape))} does not fit the model's input {want} (give {want} or Nx{want})")


def read_inputs(paths: list[str], shape: tuple[int, ...]) -> tuple[np.ndarray, list[str]]:
    """Every input stacked (N x sample shape, [0, 1] scale) and a label per sample (file, or file[i] for stacks)."""
    arrays, labels = [], []
    for path in paths:
        if not Path(path).is_file():
            raise input_error(path, "no such file" if not Path(path).exists() else "is not a file")
        array = read_array(path, shape) if path.lower().endswith(".npy") else read_image(path, shape)
        arrays.append(array)
        labels += [path] if len(array) == 1 else [f"{path}[{i}]" for i in range(len(array))]
    return np.concatenate(arrays), labels
