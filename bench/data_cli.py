"""`bench data check` and `bench data download`: what is on disk, what is missing, how to get it.
Nothing is ever downloaded implicitly; `download` uses the wilds package's own downloader."""
from __future__ import annotations

from pathlib import Path

from bench.errors import BenchError

DOWNLOADABLE = ("iwildcam", "fmow")


def _adapter(name: str, root: Path | None):
    from bench.datasets import DATASETS
    from bench.models import ModelInfo

    cls = DATASETS.get(name)
    info = ModelInfo("none", None, "gelu", 224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), None)  # checks read no pixels
    return cls(info, root)


def check(names: list[str], root: Path | None) -> list[dict]:
    rows = []
    for name in names:
        adapter = _adapter(name, root)
        rows.extend({"dataset": name, **row} for row in adapter.check())
    return rows


def download(name: str, root: Path | None) -> Path:
    if name not in DOWNLOADABLE:
        raise BenchError(f"bench can download {', '.join(DOWNLOADABLE)} (through the wilds package); get {name} by hand: `bench data check {name}` says where it goes")
    if root is None:
        raise BenchError("pass --data-root DIR: the folder the dataset is downloaded into")
    root.mkdir(parents=True, exist_ok=True)
    import wilds

    try:
        wilds.get_dataset(dataset=name, root_dir=str(root), download=True)
    except Exception as exc:  # network errors, disk full, interrupted extraction
        raise BenchError(f"downloading {name} into {root} failed ({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}); "
                         "check the network and free space, then run the command again")
    return root
