"""Training-time augmentation, batched on the training device with kornia (never applied to val/test)."""

from __future__ import annotations

from typing import Any

from torch import nn


def _options(value: Any) -> dict[str, Any]:
    return {"p": float(value)} if isinstance(value, (int, float)) else dict(value)


def build_augmentation(cfg: dict[str, Any], input_shape: tuple[int, ...], masks: bool = False) -> nn.Module | None:
    """A kornia AugmentationSequential for the configured transforms, in a fixed order; None if there are none.

    With `masks` it is called as aug(images, masks) and moves the masks with the images (nearest, geometry only).
    """
    if not cfg:
        return None
    if len(input_shape) != 3:
        raise ValueError("augmentation needs image inputs (C x H x W)")
    import kornia.augmentation as K

    size: Any = tuple(input_shape[1:])  # (H, W)
    builders = {
        "crop": lambda o: K.RandomCrop(size, padding=o["padding"], p=o["p"]),
        "resized_crop": lambda o: K.RandomResizedCrop(size, scale=tuple(o["scale"]), ratio=tuple(o["ratio"]), p=o["p"]),
        "hflip": lambda o: K.RandomHorizontalFlip(p=o["p"]),
        "vflip": lambda o: K.RandomVerticalFlip(p=o["p"]),
        "rotation": lambda o: K.RandomRotation(degrees=o["degrees"], p=o["p"]),
        "perspective": lambda o: K.RandomPerspective(distortion_scale=o["distortion"], p=o["p"]),
        "color_jitter": lambda o: K.ColorJitter(o["brightness"], o["contrast"], o["saturation"], o["hue"], p=o["p"]),
        "erasing": lambda o: K.RandomErasing(scale=tuple(o["scale"]), ratio=tuple(o["ratio"]), p=o["p"]),
    }
    steps = [builders[name](_options(cfg[name])) for name in builders if name in cfg]  # geometry, then colour, then erasing
    if "color_jitter" in cfg and input_shape[0] not in (1, 3):
        raise ValueError("color_jitter needs 1- or 3-channel images")
    if not steps:
        return None
    return K.AugmentationSequential(*steps, data_keys=["input", "mask"]) if masks else K.AugmentationSequential(*steps)
