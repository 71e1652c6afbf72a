"""Shared helpers for datasets stored as image folders and file lists (ImageNet family, DomainNet)."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from bench.config import seed_hash
from bench.errors import MissingData

def data_root(root: Path | None, dataset: str = "this dataset") -> Path:
    """The data root from --data-root or BENCH_DATA_ROOT; an existing folder, or a one-line error."""
    root = root or os.environ.get("BENCH_DATA_ROOT")
    if not root:
        raise MissingData(f"{dataset} needs its files: pass --data-root DIR (or set BENCH_DATA_ROOT); "
                         f"`bench data check {dataset} --data-root DIR` lists what is expected")
    root = Path(root)
    if not root.is_dir():
        raise MissingData(f"data folder {root} does not exist; pass --data-root with the folder that holds the datasets")
    return root


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def require_dir(path: Path, what: str, hint: str) -> Path:
    if not path.is_dir():
        raise MissingData(f"{what} folder {path} is missing; {hint}")
    return path


def class_folders(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir())


def images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def scan(root: Path, class_index: dict[str, int]) -> tuple[list[Path], list[int]]:
    """Images under root/<class>/ for the classes in class_index (folders of other names are ignored)."""
    paths, labels = [], []
    for name in class_folders(root):
        if name in class_index:
            found = images_in(root / name)
            paths += found
            labels += [class_index[name]] * len(found)
    return paths, labels


def holdout(labels: list[int], per_class: int, seed: int = 0) -> tuple[list[int], list[int]]:
    """Deterministic split of indices into (kept, held out): `per_class` random examples of every class held out."""
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(y, []).append(i)
    held = []
    for y, idx in sorted(by_class.items()):
        order = torch.randperm(len(idx), generator=torch.Generator().manual_seed(seed_hash("holdout", seed, y)))
        held += [idx[i] for i in order[: min(per_class, max(0, len(idx) - 1))].tolist()]
    held_set = set(held)
    return [i for i in range(len(labels)) if i not in held_set], sorted(held)
