"""The per-example predictions file of a run (`predictions.npz`): the only code that knows its layout.

Layout 2 (runs from record schema 3 on), numpy .npz, every array in split order:
    <variant>|<split>        int32  top-1 class per example, in the label space the split's metric scores
    ids|<split>              example ids: position in the split, or the file path relative to its common folder
    labels|<split>           int32  true class
    groups|<split>           int32  the group the split's metric groups by (FMoW: region), -1 for none scored
                                    (region "Other"); only for datasets whose metric groups
    probs|<variant>|<split>  float16 (n, scored classes) class probabilities: softmax of the logits the metric
                                    scores, for the reported variant and the leaderboard's weight-ensemble one
    columns|<split>          int32  the class each probability column stands for, where a split scores a subset
                                    (ImageNet-R/-A); absent: column j is class j
Layout 1 (older records): the first three kinds only. A reader asks for what it needs and gets None where the
file does not have it, with `missing(...)` saying why.
"""
from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np

FILE = "predictions.npz"
LAYOUT = 2
PROBABILITY_DTYPE = np.float16  # ~3 significant digits: ECE from them is within ~0.01 pp of the record's
DESCRIPTION = {1: "numpy .npz: '<variant>|<split>' = top-1 class (int32) per example in split order; 'ids|<split>' = "
                  "example ids; 'labels|<split>' = true class (int32)",
               2: "numpy .npz: '<variant>|<split>' top-1 (int32), 'ids|<split>', 'labels|<split>' (int32), "
                  "'groups|<split>' (int32, -1 = no scored group), 'probs|<variant>|<split>' (float16, for the "
                  "reported and weight-ensemble variants), 'columns|<split>' (int32): see bench/results/predictions.py"}


def example_ids(split) -> np.ndarray:
    """Stable ids of a split's examples: file paths relative to the split's common folder, else positions."""
    paths = getattr(split, "paths", None)
    if not paths:
        positions = getattr(split, "positions", None)  # a subset of an in-memory split: positions in the whole
        return np.arange(len(split), dtype=np.int32) if positions is None else positions.numpy().astype(np.int32)
    root = os.path.commonpath([str(p) for p in paths]) if len(paths) > 1 else os.path.dirname(str(paths[0]))
    return np.array([os.path.relpath(str(p), root) for p in paths])


class PredictionsWriter:
    """Collects one run's arrays as its evaluation produces them, then encodes the file once."""

    def __init__(self):
        self.arrays: dict[str, np.ndarray] = {}

    def split(self, name: str, ids, labels, groups=None, columns=None) -> None:
        self.arrays[f"ids|{name}"] = np.asarray(ids)
        self.arrays[f"labels|{name}"] = np.asarray(labels).astype(np.int32)
        if groups is not None:
            self.arrays[f"groups|{name}"] = np.asarray(groups).astype(np.int32)
        if columns is not None:
            self.arrays[f"columns|{name}"] = np.asarray(columns).astype(np.int32)

    def top1(self, variant: str, split: str, top1) -> None:
        self.arrays[f"{variant}|{split}"] = np.asarray(top1).astype(np.int32)

    def probabilities(self, variant: str, split: str, probs) -> None:
        self.arrays[f"probs|{variant}|{split}"] = np.asarray(probs, dtype=np.float32).astype(PROBABILITY_DTYPE)

    def encode(self) -> tuple[bytes, dict]:
        """(file bytes, the record's `predictions` entry)."""
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **self.arrays)
        blob = buffer.getvalue()
        return blob, {"file": FILE, "sha256": hashlib.sha256(blob).hexdigest(), "layout": LAYOUT,
                      "description": DESCRIPTION[LAYOUT]}


class StoredPredictions:
    """One run's predictions file: read and checked against its record's sha256 once; arrays decoded on first use."""

    def __init__(self, root: Path, path: str, info: dict | None):
        self.problem, self._npz, self._arrays = None, None, {}
        self.layout = (info or {}).get("layout", 1)
        if not info:
            self.problem = "no predictions file named in the record (its run predates per-example predictions)"
            return
        try:
            data = (Path(root) / path / info["file"]).read_bytes()
        except OSError:
            self.problem = f"predictions file {path}/{info['file']} is missing"
            return
        if hashlib.sha256(data).hexdigest() != info["sha256"]:
            self.problem = f"predictions file {path}/{info['file']} does not match the record's sha256"
            return
        self._npz = np.load(io.BytesIO(data), allow_pickle=False)

    def _get(self, key: str):
        if key not in self._arrays:
            self._arrays[key] = self._npz[key] if self._npz is not None and key in self._npz.files else None
        return self._arrays[key]

    def top1(self, variant: str, split: str):
        return self._get(f"{variant}|{split}")

    def ids(self, split: str):
        return self._get(f"ids|{split}")

    def labels(self, split: str):
        return self._get(f"labels|{split}")

    def groups(self, split: str):
        return self._get(f"groups|{split}")

    def columns(self, split: str):
        return self._get(f"columns|{split}")

    def probabilities(self, variant: str, split: str):
        return self._get(f"probs|{variant}|{split}")

    def missing(self, what: str) -> str:
        if self.layout < LAYOUT:
            return f"predictions file of layout {self.layout} keeps no {what} (runs before record schema 3)"
        return f"predictions file lacks {what}"
