"""A prepared copy of a dataset's images (`bench data prepare`): every image decoded once, given its fixed
pre-step (ObjectNet's border crop) and resized, shorter side, to the working resolution (bicubic, as the evaluation
transform does), then stored as raw RGB bytes.

Layout, per split, under <data root>/prepared/<dataset>/<size>px/<split>/:
    images.u8      every image's H*W*3 bytes, one after another, in the split's order
    index.npy      int64 (n, 3): byte offset, height, width of each image
    manifest.json  layout, size, pre-step, count and a digest of the split's files (relative paths and byte sizes)

Why a flat uint8 file and not WebDataset/litdata shards: training samples by index (the StepSampler's seeded
permutation), which a memory-mapped file serves at any position with no decode and no dependency, while tar shards
are read in order and would change the sample order; raw pixels are lossless, so evaluation reads exactly the
pixels it would have computed (Resize to the size an image already has is a no-op). The cost is disk: about
3 * size^2 * aspect bytes per image (~150 KB at 224 px; ImageNet's train split ~190 GB against 140 GB of JPEG).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

from bench.errors import BenchError

LAYOUT = 1


def prepared_folder(data_root: Path, dataset: str, size: int, split: str) -> Path:
    return Path(data_root) / "prepared" / dataset / f"{size}px" / split


def files_digest(paths: list, data_root: Path) -> str:
    """What the copy was made from: each file's path under the data root and its byte size, in order (a re-downloaded
    file of the same size is not noticed; `bench data prepare --force` remakes the copy)."""
    h = hashlib.sha256()
    root = Path(data_root).absolute()
    for p in paths:
        path = Path(p).absolute()
        rel = path.relative_to(root) if path.is_relative_to(root) else path
        h.update(f"{rel.as_posix()}\t{os.path.getsize(path)}\n".encode())
    return h.hexdigest()


def _manifest(split, data_root: Path, size: int) -> dict:
    return {"layout": LAYOUT, "size": size, "pre": split.pre, "count": len(split.paths),
            "files": files_digest(split.paths, data_root)}


class PreparedImages:
    """The stored images of one split, memory-mapped when first read (so a DataLoader worker opens its own map)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.index = np.load(self.folder / "index.npy")
        self._bytes = None

    def __getstate__(self):
        return {**self.__dict__, "_bytes": None}

    def __len__(self) -> int:
        return len(self.index)

    def array(self, row: int) -> np.ndarray:
        if self._bytes is None:
            self._bytes = np.memmap(self.folder / "images.u8", dtype=np.uint8, mode="r")
        offset, h, w = (int(v) for v in self.index[row])
        return self._bytes[offset:offset + h * w * 3].reshape(h, w, 3)

    def image(self, row: int):
        from PIL import Image

        return Image.fromarray(np.array(self.array(row)), "RGB")


def attach(split, data_root: Path | None, dataset: str, name: str, size: int, warn=None) -> str | None:
    """Give a file split its prepared copy where one matches its files; returns '<size>px' when attached. A copy made
    from other files (or by another layout) is not used: `warn` says so and the images are decoded as usual."""
    if data_root is None or not hasattr(split, "paths") or os.environ.get("BENCH_PREPARED", "1") == "0":
        return None
    folder = prepared_folder(data_root, dataset, size, name)
    try:
        found = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if found != _manifest(split, data_root, size):
        if warn is not None:
            warn(f"the prepared copy {folder} was made from other files; decoding the originals (remake it with "
                 f"`bench data prepare {dataset} --force`)")
        return None
    split.prepared = PreparedImages(folder)
    return f"{size}px"


def _same(item):
    return item


class _Resized:
    """Pool-side work of `prepare`: one image decoded, pre-step, resized; returned as (H, W, 3) uint8."""

    def __init__(self, split, size: int):
        from torchvision import transforms as T

        self.split, self.resize = split, T.Resize(size, interpolation=T.InterpolationMode.BICUBIC)

    def __len__(self) -> int:
        return len(self.split.paths)

    def __getitem__(self, i):
        return np.asarray(self.resize(self.split.original(i)), dtype=np.uint8)


def prepare_split(split, data_root: Path, dataset: str, name: str, size: int, workers: int = 0,
                  force: bool = False, progress=None) -> tuple[Path, bool]:
    """Write the prepared copy of one split; (folder, made). Written into a temporary folder that is renamed when
    complete, so an interrupted prepare leaves nothing that looks like a copy."""
    import torch

    folder = prepared_folder(data_root, dataset, size, name)
    want = _manifest(split, data_root, size)
    if not force and (folder / "manifest.json").is_file():
        try:
            if json.loads((folder / "manifest.json").read_text()) == want:
                return folder, False
        except ValueError:
            pass
    partial = folder.with_name(f".{name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    loader = torch.utils.data.DataLoader(_Resized(split, size), batch_size=None, shuffle=False, num_workers=workers,
                                         collate_fn=_same)
    task = progress.add_task(f"{dataset} {name}", total=len(split.paths)) if progress is not None else None
    try:
        _write(loader, partial, len(split.paths), lambda: progress.advance(task) if task is not None else None)
        (partial / "manifest.json").write_text(json.dumps(want, indent=1) + "\n")
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # an unreadable image or an interrupt leaves no partial copy
        raise
    if folder.exists():
        shutil.rmtree(folder)
    partial.rename(folder)
    return folder, True


def _write(loader, folder: Path, count: int, advance) -> None:
    index = np.zeros((count, 3), dtype=np.int64)
    offset = 0
    with open(folder / "images.u8", "wb") as out:
        for i, array in enumerate(loader):
            out.write(np.ascontiguousarray(array).tobytes())
            index[i] = (offset, array.shape[0], array.shape[1])
            offset += array.size
            advance()
    np.save(folder / "index.npy", index)


def working_size(arch: str) -> int:
    """The image size of an open_clip architecture, from its config (no weights needed)."""
    from bench.models import open_clip_module

    cfg = open_clip_module().get_model_config(arch)
    if cfg is None:
        raise BenchError(f"unknown model {arch!r}; `bench list models` shows all")
    size = cfg["vision_cfg"]["image_size"]
    return int(size[0] if isinstance(size, (tuple, list)) else size)
