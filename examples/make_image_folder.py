"""Write a small image-classification data set to try `netdsl train` on: circles, squares and triangles.

    python examples/make_image_folder.py OUT [--per-class 60] [--size 48] [--splits]

OUT/<shape>/<i>.png (or .jpg), each shape drawn at a random place, size and colour on a noisy background;
with --splits, OUT/train/, OUT/val/ and OUT/test/ (70/15/15) of such class folders. Deterministic (seeded).
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle")


def draw(shape: str, size: int, rng: random.Random) -> Image.Image:
    background = tuple(rng.randrange(0, 90) for _ in range(3))
    img = Image.effect_noise((size, size), 24).convert("RGB")
    img = Image.blend(img, Image.new("RGB", (size, size), background), 0.6)
    pen = ImageDraw.Draw(img)
    r = rng.uniform(0.18, 0.35) * size
    cx, cy = rng.uniform(r, size - r), rng.uniform(r, size - r)
    colour = tuple(rng.randrange(130, 256) for _ in range(3))
    if shape == "circle":
        pen.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    elif shape == "square":
        pen.rectangle((cx - r, cy - r, cx + r, cy + r), fill=colour)
    else:
        pen.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    return img


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-class", type=int, default=60, help="images per class (default 60)")
    parser.add_argument("--size", type=int, default=48, help="image side in pixels (default 48)")
    parser.add_argument("--splits", action="store_true", help="write train/, val/ and test/ folders")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    count = 0
    for shape in SHAPES:
        for i in range(args.per_class):
            split = ("train" if i < 0.7 * args.per_class else "val" if i < 0.85 * args.per_class else "test") if args.splits else ""
            folder = args.out / split / shape
            folder.mkdir(parents=True, exist_ok=True)
            suffix = ".jpg" if i % 4 == 3 else ".png"  # a mix of formats, as real folders have
            draw(shape, args.size, rng).save(folder / f"{i:04d}{suffix}")
            count += 1
    print(f"{args.out}: {count} images, {args.per_class} per class ({', '.join(SHAPES)})")


if __name__ == "__main__":
    main()
