"""`bench data check` and `bench data download`: what is on disk, what is missing, how to get it.
Nothing is ever downloaded implicitly; `download` uses the wilds package's own downloader."""
from __future__ import annotations

import shutil
from pathlib import Path

from bench.errors import BenchError

DOWNLOADABLE = ("iwildcam", "fmow")


def _adapter(name: str, root: Path | None):
    from bench.datasets import DATASETS
    from bench.datasets.base import PROVISIONAL_MODEL

    return DATASETS.get(name)(PROVISIONAL_MODEL, root)  # checks read no pixels


def check(names: list[str], root: Path | None, deep: bool = False, progress=None) -> list:
    """Findings (bench.datasets.check.Finding) of every named dataset."""
    findings = []
    for name in names:
        findings.extend(_adapter(name, root).check(deep, progress))
    return findings


def download(name: str, root: Path | None) -> Path:
    if name not in DOWNLOADABLE:
        raise BenchError(f"bench can download {', '.join(DOWNLOADABLE)} (through the wilds package); get {name} by hand: `bench data check {name}` says where it goes")
    if root is None:
        raise BenchError("pass --data-root DIR: the folder the dataset is downloaded into")
    if root.exists() and not root.is_dir():
        raise BenchError(f"--data-root {root} is a file, not a folder; pass the folder the datasets go into")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchError(f"cannot create the data folder {root} ({exc.strerror or exc}); pass a writable --data-root")
    import wilds

    before = {p.name for p in root.iterdir()}
    try:
        wilds.get_dataset(dataset=name, root_dir=str(root), download=True)
    except Exception as exc:  # network errors, disk full, interrupted extraction
        for created in {p.name for p in root.iterdir()} - before:  # nothing half-made stays behind
            target = root / created
            shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
        raise BenchError(f"downloading {name} into {root} failed ({type(exc).__name__}); check the network (the "
                         "WILDS servers must be reachable) and free space, then run the command again")
    return root
