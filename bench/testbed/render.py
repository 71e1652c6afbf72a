"""Procedural rendering of the tinyshift testbed: real handwritten digits drawn in seven visual styles.

Everything is batched torch code driven by one `torch.Generator`, so a split is a pure function of its seed.
The styles are the distribution shift: the same digits look different, the label semantics do not change.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

STYLES = ("photo", "clipart", "sketch", "painting", "pixel", "halftone", "neon")
# How each style is named in captions and prompts.
STYLE_WORDS = {
    "photo": "photo",
    "clipart": "clipart",
    "sketch": "sketch",
    "painting": "painting",
    "pixel": "pixel art",
    "halftone": "halftone print",
    "neon": "neon sign",
}
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 8x8 handwritten digits shipped (as gzipped CSV, no pickle) inside scikit-learn. Read as
    sklearn.datasets.load_digits reads it, without importing sklearn.datasets (2 s of imports in every run)."""
    import importlib.util

    found = importlib.util.find_spec("sklearn")  # locates the package without importing it
    rows = np.loadtxt(Path(found.origin).parent / "datasets" / "data" / "digits.csv.gz", delimiter=",")
    return rows[:, :-1].reshape(-1, 8, 8).astype(np.float32) / 16.0, rows[:, -1].astype(np.int64)


def _uniform(gen, lo, hi, *shape):
    return lo + (hi - lo) * torch.rand(*shape, generator=gen)


def digit_masks(images8: torch.Tensor, gen: torch.Generator, size: int = 32) -> torch.Tensor:
    """Upsample 8x8 digits to size x size with a random affine jitter: (N, 8, 8) -> (N, 1, size, size) in [0, 1]."""
    n = images8.shape[0]
    angle = _uniform(gen, -0.3, 0.3, n)
    scale = _uniform(gen, 1.1, 1.45, n)  # >1 zooms out: the digit fills 70-90 % of the frame
    shear = _uniform(gen, -0.2, 0.2, n)
    shift = _uniform(gen, -0.12, 0.12, n, 2)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack(
        [torch.stack([cos, -sin + shear, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, (n, 1, size, size), align_corners=False)
    m = F.grid_sample(images8[:, None].float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return (m * 1.6 - 0.15).clamp(0, 1)


def _dilate(m, k=3):
    return F.max_pool2d(m, k, 1, k // 2)


def _erode(m, k=3):
    return -F.max_pool2d(-m, k, 1, k // 2)


def _blur(x, k):
    return F.avg_pool2d(x, k, 1, k // 2, count_include_pad=False)


def _lowfreq(gen, n, c, cells, size):
    return F.interpolate(torch.rand(n, c, cells, cells, generator=gen), size=size, mode="bilinear", align_corners=False)


def _contrasting_colours(gen, n):
    """A dark and a light colour, randomly assigned to foreground and background."""
    dark = _uniform(gen, 0.0, 0.45, n, 3, 1, 1)
    light = _uniform(gen, 0.55, 1.0, n, 3, 1, 1)
    swap = (torch.rand(n, 1, 1, 1, generator=gen) < 0.5).float()
    return dark * swap + light * (1 - swap), light * swap + dark * (1 - swap)


def _photo(m, gen):
    n, _, h, w = m.shape
    fg, bg = _contrasting_colours(gen, n)
    bg2 = (bg + _uniform(gen, -0.25, 0.25, n, 3, 1, 1)).clamp(0, 1)
    ang = _uniform(gen, 0, 2 * math.pi, n, 1, 1, 1)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    ramp = ((torch.cos(ang) * xs + torch.sin(ang) * ys) * 0.5 + 0.5).clamp(0, 1)
    back = bg * (1 - ramp) + bg2 * ramp + 0.08 * torch.randn(n, 3, h, w, generator=gen)
    texture = 0.75 + 0.5 * _lowfreq(gen, n, 1, 8, (h, w))
    front = fg * texture + 0.05 * torch.randn(n, 3, h, w, generator=gen)
    return back * (1 - m) + front * m


def _clipart(m, gen):
    n = m.shape[0]
    mb = (m > 0.45).float()
    fg = _uniform(gen, 0.0, 1.0, n, 3, 1, 1)
    fg = fg / fg.amax(1, keepdim=True).clamp_min(1e-3)  # saturated
    bg = _uniform(gen, 0.75, 1.0, n, 3, 1, 1)  # pastel
    outline = (_dilate(mb) - mb).clamp(0, 1)
    return (bg * (1 - mb) + fg * mb) * (1 - outline)


def _sketch(m, gen):
    n, _, h, w = m.shape
    mb = (m > 0.45).float()
    edges = (_dilate(mb) - _erode(mb)).clamp(0, 1) * _uniform(gen, 0.5, 1.0, n, 1, h, w)
    paper = _uniform(gen, 0.85, 1.0, n, 1, 1, 1) - 0.04 * torch.rand(n, 1, h, w, generator=gen)
    ink = _uniform(gen, 0.55, 0.9, n, 1, 1, 1)
    return (paper - ink * edges).expand(n, 3, h, w)


def _painting(m, gen):
    n, _, h, w = m.shape
    ms = _blur(_blur(m, 3), 3)
    fg_field = _lowfreq(gen, n, 3, 3, (h, w))
    bg_field = _lowfreq(gen, n, 3, 3, (h, w))
    # keep the digit readable: push fg and bg apart in brightness
    sign = torch.where(torch.rand(n, 1, 1, 1, generator=gen) < 0.5, 1.0, -1.0)
    fg_field = (fg_field * 0.6 + 0.2 + 0.25 * sign).clamp(0, 1)
    bg_field = (bg_field * 0.6 + 0.2 - 0.25 * sign).clamp(0, 1)
    strokes = _blur(torch.randn(n, 1, h, w, generator=gen), 3) * 0.15
    return bg_field * (1 - ms) + fg_field * ms + strokes


def _pixel(m, gen):
    n, _, h, w = m.shape
    block = 4
    coarse = (F.avg_pool2d(m, block) > 0.3).float()
    mb = F.interpolate(coarse, size=(h, w), mode="nearest")
    fg, bg = _contrasting_colours(gen, n)
    return bg * (1 - mb) + fg * mb


def _halftone(m, gen):
    n, _, h, w = m.shape
    cell = 3
    level = F.interpolate(F.avg_pool2d(m, cell, ceil_mode=True), size=(h, w), mode="nearest")
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    centre = (cell - 1) / 2
    dist = torch.sqrt((ys % cell - centre) ** 2 + (xs % cell - centre) ** 2).float()
    dots = (dist < level * cell * 0.75 + 0.05).float()
    ink = _uniform(gen, 0.0, 0.5, n, 3, 1, 1)
    paper = _uniform(gen, 0.8, 1.0, n, 3, 1, 1)
    return paper * (1 - dots) + ink * dots


def _neon(m, gen):
    n, _, h, w = m.shape
    edges = (_dilate(m) - _erode(m)).clamp(0, 1)
    glow = _blur(_blur(edges, 5), 5)
    colour = torch.rand(n, 3, 1, 1, generator=gen)
    colour = (colour / colour.amax(1, keepdim=True).clamp_min(1e-3)).clamp(0.15, 1)
    return colour * (edges + 1.2 * glow) + 0.03 * torch.rand(n, 3, h, w, generator=gen)


_RENDERERS = {
    "photo": _photo,
    "clipart": _clipart,
    "sketch": _sketch,
    "painting": _painting,
    "pixel": _pixel,
    "halftone": _halftone,
    "neon": _neon,
}


def render(images8: torch.Tensor, styles: list[str] | str, gen: torch.Generator, size: int = 32) -> torch.Tensor:
    """Render digits (N, 8, 8) in one style or one style per image; returns (N, 3, size, size) in [0, 1]."""
    masks = digit_masks(images8, gen, size)
    n = images8.shape[0]
    if isinstance(styles, str):
        return _RENDERERS[styles](masks, gen).clamp(0, 1)
    out = torch.empty(n, 3, size, size)
    for style in sorted(set(styles)):
        idx = torch.tensor([i for i, s in enumerate(styles) if s == style])
        out[idx] = _RENDERERS[style](masks[idx], gen).clamp(0, 1)
    return out
