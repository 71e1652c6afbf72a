"""`bench data check`, `bench data download` and `bench data verify`: what is on disk, how to get it, which copy it is.
Nothing is ever downloaded implicitly."""
from __future__ import annotations

import os
from pathlib import Path

from bench.errors import BenchError


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


def _writable_root(root: Path | None) -> Path:
    """The data root, checked without creating it: it (or, if it does not exist yet, its nearest existing parent)
    must be a writable folder. It is made only when the first byte is written, so a refused download leaves none."""
    if root is None:
        raise BenchError("pass --data-root DIR (or set BENCH_DATA_ROOT): the folder the dataset goes into")
    if root.exists() and not root.is_dir():
        raise BenchError(f"--data-root {root} is a file, not a folder; pass the folder the datasets go into")
    existing = next(p for p in (root, *root.absolute().parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise BenchError(f"cannot create the data folder {root} ({existing} is not a writable folder); pass a "
                         "writable --data-root")
    return root


def download(name: str, root: Path | None, source: str | None = None, archive: Path | None = None,
             sources_file: Path | None = None, allow_unpinned: bool = False, keep_archive: bool = False,
             progress=None, say=print):
    """Install item `name` from its sources (or `archive`); every check that can fail is made before writing."""
    from bench.datasets import download as dl
    from bench.datasets import sources

    items = sources.load(sources_file)
    item = sources.item(name, items)
    if source is not None:
        item.source(source)  # an unknown source name fails before anything is written
        if archive is not None:
            raise BenchError("pass --source or --from-archive, not both")
    root = _writable_root(root)
    existed = root.exists()
    try:
        if archive is not None:
            return dl.from_archive(item, root, archive, progress, allow_unpinned)
        return dl.download(item, root, source, keep_archive, progress, say, allow_unpinned)
    except BaseException:
        if not existed and root.is_dir() and not any(root.iterdir()):
            root.rmdir()  # a data root this call made and left empty (a refused archive) goes again
        raise


def sources_of(sources_file: Path | None = None):
    from bench.datasets import sources

    return sources.load(sources_file)


def present(names: list[str], root: Path | None) -> list[str]:
    """The datasets among `names` that have files under the data root (the embedded testbed has none)."""
    from bench.errors import DataProblem

    out = []
    for name in names:
        adapter = _adapter(name, root)
        try:
            if adapter.needs_data_root and adapter.data_folders():
                out.append(name)
        except DataProblem:  # no data root, or the dataset's folder is absent
            continue
    return out


def verify(names: list[str], root: Path | None, checksums: bool = False, workers: int | None = None, progress=None):
    """One bench.datasets.cards.Verification per dataset (a card written for each that passed)."""
    from bench.datasets.cards import verify as verify_one

    if root is None and not os.environ.get("BENCH_DATA_ROOT") and any(_adapter(n, None).needs_data_root for n in names):
        raise BenchError("pass --data-root DIR (or set BENCH_DATA_ROOT): the folder that holds the datasets")
    return [verify_one(_adapter(name, root), checksums, workers, progress) for name in names]


def prepare(name: str, root: Path | None, model: str | None = None, size: int | None = None, workers: int = 0,
            force: bool = False, progress=None) -> list[tuple[str, Path, bool]]:
    """Write the prepared copy of every split a run of `name` reads: (split, folder, made) per split. All splits'
    files are checked first, so a missing image fails before anything is written."""
    from dataclasses import replace

    from bench.datasets import DATASETS
    from bench.datasets.base import PROVISIONAL_MODEL
    from bench.datasets.check import failures, run_splits
    from bench.datasets.folders import data_root
    from bench.datasets.prepared import prepare_split, working_size

    cls = DATASETS.get(name)
    if not cls.needs_data_root:
        raise BenchError(f"{name} is embedded (generated in memory); only on-disk datasets have a prepared copy")
    if size is not None and not 16 <= size <= 1024:
        raise BenchError(f"--size {size} is out of range; pass 16 to 1024 pixels (the model's input size)")
    if not 0 <= workers <= 256:
        raise BenchError(f"--workers {workers} is out of range; pass 0 to 256 decoding processes")
    size = size or working_size(model or cls.protocol.model)
    root = data_root(root, name)
    adapter = cls(replace(PROVISIONAL_MODEL, image_size=size), root)
    bad = failures(adapter.check())
    if bad:
        raise BenchError(f"{name} {bad[0].split} is {bad[0].status}: {bad[0].note}; fix it (`bench data check`) first")
    return [(split, *prepare_split(adapter.split(split), root, name, split, size, workers, force, progress))
            for split in dict.fromkeys(run_splits(cls.protocol))]
