"""The tinyshift testbed's data: scikit-learn's real handwritten digits, partitioned once, rendered per domain.

Digits are split (by a fixed seed) into disjoint sets so that the pretraining corpus never contains an image the
benchmark evaluates on. Domains are rendering styles: photo is in-distribution, clipart the OOD validation domain
(reserved for methods that may search on OOD data, e.g. AutoFT) and the other five are OOD test domains.
"""
from __future__ import annotations

import functools
from contextlib import contextmanager

import numpy as np
import torch

from bench.testbed.render import DIGIT_NAMES, STYLE_WORDS, load_digits, render

DATA_SEED = 0
PARTITION = {"pretrain": 897, "train": 400, "val": 200, "test": 300}
ID_STYLE = "photo"
OOD_VAL_STYLE = "clipart"
OOD_TEST_STYLES = ("sketch", "painting", "pixel", "halftone", "neon")
TRAIN_RENDERINGS = 4

# Zero-shot prompts: style-free ones plus one per style word, like ImageNet's templates that name renditions.
TEMPLATES = (
    "the number {}.",
    "a picture of the digit {}.",
    *(f"a {word} of the number {{}}." for word in STYLE_WORDS.values()),
)

# split name -> (digit subset, style, rendering seed, renderings per digit). The training digits are drawn several
# times with fresh jitter, colours and texture, as augmentation would; evaluation splits once per digit.
SPLITS = {
    "train": ("train", ID_STYLE, 1, TRAIN_RENDERINGS),
    "id_val": ("val", ID_STYLE, 2, 1),
    "id_test": ("test", ID_STYLE, 3, 1),
    "ood_val": ("val", OOD_VAL_STYLE, 4, 1),
    **{style: ("test", style, 10 + i, 1) for i, style in enumerate(OOD_TEST_STYLES)},
}


def partition(seed: int = DATA_SEED) -> dict[str, np.ndarray]:
    """Disjoint index sets into the 1,797 digits, fixed by the seed. It names the test digits, so during a run it
    answers only once the test splits are open to the caller."""
    if _gate is not None:
        _gate("id_test")
    return _partition(seed)


def _partition(seed: int = DATA_SEED) -> dict[str, np.ndarray]:
    order = np.random.default_rng(seed).permutation(sum(PARTITION.values()))
    out, start = {}, 0
    for name, size in PARTITION.items():
        out[name] = np.sort(order[start : start + size])
        start += size
    return out


_gate = None  # during a benchmark run: the engine's data guard, asked before a split is rendered


@contextmanager
def gated(check):
    """Make `render_split` ask `check(name)` first (it raises to refuse): the renderer is code any method could
    call, so during a run it answers only for the splits the protocol lets the run read at that moment."""
    global _gate
    previous, _gate = _gate, check
    try:
        yield
    finally:
        _gate = previous


def render_split(name: str, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 3, size, size) in [0, 1] and labels (N,) of one benchmark split; deterministic."""
    if _gate is not None:
        _gate(name)
    images, labels = _rendered(name, size)
    return images.clone(), labels.clone()  # callers own their copies


@functools.lru_cache(maxsize=32)
def _rendered(name: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rendered once per process (several runs or benchmark steppers in one process share it)."""
    subset, style, seed, copies = SPLITS[name]
    images8, labels = load_digits()
    idx = np.tile(_partition()[subset], copies)
    gen = torch.Generator().manual_seed(seed)
    return render(torch.from_numpy(images8[idx]), style, gen, size), torch.from_numpy(labels[idx])


CLASSNAMES = DIGIT_NAMES
