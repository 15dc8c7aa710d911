"""`source: shapes`: a synthetic segmentation data set made in memory, the same bytes for a seed on every machine.

Each image has the spec's input size (C x H x W, any C) and shows 1 to 3 filled shapes, circle (class 1), square
(class 2) and triangle (class 3, pointing up), on a dark background (class 0), with uniform noise of +-10 grey
levels everywhere. Shapes are drawn largest first, so a smaller one may cover part of a larger one, never the
reverse; their colours are bright (every channel 0.5 .. 0.93, the background 0.04 .. 0.35) and differ from each
other's in every channel by 0.05 at least, so a shape's outline can always be seen. Radii are 15% to 35% of the
shorter side (a square's half side is 0.85 r, a triangle's circumradius 1.3 r: about the circle's area).

Random numbers come from torch's CPU generator (Mersenne Twister) through its serial uniform and integer draws,
every value is computed elementwise (IEEE-rounded adds and multiplies; the only sums count pixels) and images are
rounded to uint8, so vector units and thread counts cannot change a byte. Every sample's parameters are drawn at
once, then shapes are rasterized a chunk of samples at a time on one thread: 2,000 samples of 64 x 64 take about
0.3 s of CPU time.
"""

from __future__ import annotations

import math

import torch

SHAPE_CLASSES = ["background", "circle", "square", "triangle"]
MAX_SHAPES = 3
CHUNK = 1 << 18  # pixels rasterized at a time
NOISE = 10  # uniform pixel noise of -10 .. 10 grey levels (of 255)


def inside(kind: int, dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Pixels inside a shape of class `kind` and size r, at offsets (dx, dy) from its centre (y grows downwards)."""
    if kind == 1:
        return dx * dx + dy * dy <= r * r
    if kind == 2:
        half = 0.85 * r
        return (dx.abs() <= half) & (dy.abs() <= half)
    # an equilateral triangle of circumradius R = 1.3 r: inside its three edges, each at R / 2 from the centre
    big = 1.3 * r
    dy = dy - 0.25 * big  # centre its box (-R .. R / 2 about its centroid) on the shape's centre
    s = math.sqrt(3) / 2
    return (dy <= 0.5 * big) & (-s * dx - 0.5 * dy <= 0.5 * big) & (s * dx - 0.5 * dy <= 0.5 * big)


def make_shapes(shape: tuple[int, ...], samples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images uint8 N x C x H x W, masks uint8 N x H x W of classes 0..3, class 1..3 of each image's largest visible shape)."""
    c, h, w = shape
    n, k = samples, MAX_SHAPES
    g = torch.Generator().manual_seed(seed)
    count = torch.randint(1, k + 1, (n,), generator=g)
    kinds = torch.randint(1, 4, (n, k), generator=g)
    side = min(h, w)
    radius = (0.15 + 0.20 * torch.rand(n, k, generator=g)).sort(dim=1, descending=True).values * side
    cy = radius + torch.rand(n, k, generator=g) * (h - 2 * radius)
    cx = radius + torch.rand(n, k, generator=g) * (w - 2 * radius)
    background = 0.04 + 0.31 * torch.rand(n, 1, c, generator=g)
    # one of three colour bands per shape and channel (a random order per image): outlines stay visible between shapes
    bands = torch.rand(n, k, c, generator=g).argsort(dim=1).float()
    colours = 0.5 + 0.16 * bands + 0.11 * torch.rand(n, k, c, generator=g)
    palette = (torch.cat([background, colours], 1) * 255).round().to(torch.uint8)  # N x (1 + shapes) x C, 10 .. 237
    # the noise: one of 64 noise images per sample (drawing N x C x H x W numbers would take most of the time)
    bank = torch.randint(0, 2 * NOISE + 1, (min(n, 64), c, h, w), generator=g, dtype=torch.uint8)
    noise = bank[torch.randint(0, len(bank), (n,), generator=g)]

    images = torch.empty(n, c, h, w, dtype=torch.uint8)
    masks = torch.empty(n, h, w, dtype=torch.uint8)
    largest = torch.empty(n, dtype=torch.int64)
    step = max(1, CHUNK // (h * w))  # samples drawn at a time: temporaries small enough to stay in cache
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on chunks this small, handing work to other threads costs more than it saves (3x on a busy machine)
    try:
        for a in range(0, n, step):
            b = min(n, a + step)
            shapes = (count[a:b], kinds[a:b], radius[a:b], cy[a:b], cx[a:b])
            images[a:b], masks[a:b], largest[a:b] = rasterize(shapes, palette[a:b], noise[a:b])
    finally:
        torch.set_num_threads(threads)
    return images, masks, largest


def rasterize(shapes: tuple[torch.Tensor, ...], palette: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images, masks and the largest visible shape's class of some samples, from their drawn parameters."""
    count, kinds, radius, cy, cx = shapes
    (n, k), (c, h, w) = kinds.shape, noise.shape[1:]
    ys = (torch.arange(h, dtype=torch.float32) + 0.5).view(1, h, 1)
    xs = (torch.arange(w, dtype=torch.float32) + 0.5).view(1, 1, w)
    owner = torch.zeros(n, h, w, dtype=torch.uint8)  # 0: the background, j + 1: shape j
    for j in range(k):
        covered = torch.zeros(n, h, w, dtype=torch.bool)
        for kind in (1, 2, 3):
            sel = ((kinds[:, j] == kind) & (count > j)).nonzero()[:, 0]
            if len(sel):
                dy, dx = ys - cy[sel, j].view(-1, 1, 1), xs - cx[sel, j].view(-1, 1, 1)
                covered[sel] = inside(kind, dx, dy, radius[sel, j].view(-1, 1, 1))
        owner.masked_fill_(covered, j + 1)
    # colours and classes looked up from each pixel's owner; the noise added in uint8 (palette values are 10 .. 237)
    index = owner.view(n, 1, h * w).long()
    images = palette.transpose(1, 2).gather(2, index.expand(n, c, h * w)).view(n, c, h, w).add_(noise).sub_(NOISE)
    classes = torch.cat([torch.zeros(n, 1, dtype=torch.uint8), kinds.to(torch.uint8)], 1)
    masks = classes.gather(1, index[:, 0]).view(n, h, w)
    areas = torch.stack([(owner == j + 1).view(torch.uint8).view(n, -1).sum(1, dtype=torch.int32) for j in range(k)], 1)
    return images, masks, kinds.gather(1, areas.argmax(1, keepdim=True))[:, 0]
