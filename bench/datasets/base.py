"""Dataset adapters: class names, prompt templates, split loading and the dataset's official metrics."""
from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import contextmanager
from pathlib import Path

import torch

from bench.models import ModelInfo
from bench.results.metrics import classification_metrics


def _warn(message: str) -> None:
    import sys

    print(f"bench: warning: {message}", file=sys.stderr)


class TensorSplit(torch.utils.data.Dataset):
    """A split held in memory as normalised image tensors (the testbed); real datasets stream from disk."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], self.labels[i]

    def subset(self, idx: torch.Tensor) -> "TensorSplit":
        part = TensorSplit(self.images[idx], self.labels[idx])
        part.positions = self.positions[idx] if getattr(self, "positions", None) is not None else idx  # stable ids
        return part


# Preprocessing for checks that read no pixels (file lists, metadata, existence), before a model is loaded.
PROVISIONAL_MODEL = ModelInfo("none", None, "gelu", 224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), None)


class DatasetAdapter(ABC):
    name: str = ""
    description: str = ""
    classnames: tuple[str, ...] = ()
    classname_source: str = ""  # where the class names come from (recorded with every head)
    templates: tuple[str, ...] = ()
    protocol = None  # the dataset's default Protocol
    needs_data_root = True  # False only for the embedded testbed
    cpu_threads: int | None = None  # a fixed intra-op thread count for CPU runs (the testbed's), or the machine's

    def __init__(self, model_info: ModelInfo, data_root: Path | None = None):
        self.model_info = model_info
        self.data_root = data_root
        self._cache: dict[str, torch.utils.data.Dataset] = {}

    # During a run: the engine's data guard, asked before any adapter (any instance, of any dataset) hands out a split.
    _gate = None

    def use_model(self, model_info: ModelInfo) -> None:
        """Preprocess for this model from now on (splits read before, e.g. by the data check, are read again)."""
        if model_info != self.model_info:
            self.model_info = model_info
            self._cache.clear()

    def split(self, name: str) -> torch.utils.data.Dataset:
        if DatasetAdapter._gate is not None:
            DatasetAdapter._gate(name)
        if name not in self._cache:
            self._cache[name] = self._with_prepared_copy(name, self.load_split(name))
        return self._cache[name]

    def _with_prepared_copy(self, name: str, split):
        """A file split reads its prepared copy (`bench data prepare`) where one at this model's size matches it."""
        if not hasattr(split, "paths") or not self.needs_data_root:
            return split
        from bench.datasets.folders import data_root
        from bench.datasets.prepared import attach

        attach(split, data_root(self.data_root, self.name), self.name, name, self.model_info.image_size, _warn)
        return split

    def prepared_splits(self) -> dict[str, str]:
        """split -> '<size>px' for every split read so far from its prepared copy (what a run records)."""
        return {name: f"{self.model_info.image_size}px" for name, split in self._cache.items()
                if getattr(split, "prepared", None) is not None}

    @contextmanager
    def gated(self, check):
        """While a run is under way every split request, to this or any other adapter instance, passes
        `check(name)` first (it raises to refuse). Datasets whose data can also be produced by calling code directly
        (the testbed) gate that code too."""
        previous, DatasetAdapter._gate = DatasetAdapter._gate, check
        try:
            yield self
        finally:
            DatasetAdapter._gate = previous

    @abstractmethod
    def load_split(self, name: str) -> torch.utils.data.Dataset:
        """Read one split (by the protocol's split name), preprocessed for the model."""

    expected_sizes: dict[str, int] = {}  # split -> size of the official release, where known

    def check_files(self) -> list[str]:
        """Check the files the adapter needs besides the splits' own (metadata, class tables, release files);
        raise MissingData / MalformedData, or return notes (e.g. which version was found)."""
        return []

    size_variants: dict[str, str] = {}  # split -> known copies whose size differs from the release's (said, not hidden)

    def data_folders(self) -> list[Path]:
        """The folders under the data root that hold this dataset's files (what `bench data verify --checksums`
        hashes); the embedded testbed has none."""
        return []

    def duplicate_classnames(self) -> dict[str, list[int]]:
        """Class names given to more than one label (their zero-shot text embeddings, hence logits, tie)."""
        seen: dict[str, list[int]] = {}
        for index, name in enumerate(self.classnames):
            seen.setdefault(name, []).append(index)
        return {name: idx for name, idx in seen.items() if len(idx) > 1}

    def check(self, deep: bool = False, progress=None) -> list:
        """What `bench data check` reports: bench.datasets.check.Finding per split (problems shared by several
        splits once)."""
        from bench.datasets.check import check_dataset

        return check_dataset(self, deep, progress)

    def unaugmented(self, split):
        """`split` with the evaluation preprocessing: frozen features (linear probes, zero-shot) are extracted
        without augmentation, as in the official LP code. In-memory splits are already preprocessed."""
        if hasattr(split, "with_transform"):
            from bench.datasets.transforms import clip_transform

            return split.with_transform(clip_transform(self.model_info, train=False))
        return split

    def scored(self, split: str, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The logits a split's metric scores and, where they are a subset of the classes, the class each column
        stands for (None: column j is class j). Their softmax is what the predictions file stores."""
        return logits, None

    def groups(self, split: str, metadata=None):
        """Per example, the group the split's metric groups by (int array, -1 for an example in no scored group),
        or None where the metric does not group."""
        return None

    def metrics(self, split: str, logits: torch.Tensor, labels: torch.Tensor, metadata=None) -> dict[str, float]:
        """Official metrics of one split (or, with its metadata, a subset of it) from its logits, and the ECE."""
        scored, columns = self.scored(split, logits)
        if columns is not None:  # labels are classes of the whole head: their positions among the columns
            position = {int(c): i for i, c in enumerate(columns)}
            labels = torch.tensor([position[int(y)] for y in labels])
        return classification_metrics(scored, labels)

    def top1(self, split: str, logits: torch.Tensor) -> torch.Tensor:
        """The predicted class per example in the label space the split's metrics score (stored per example, so
        the metrics and the paired bootstrap can be recomputed from predictions and labels alone)."""
        scored, columns = self.scored(split, logits)
        best = scored.argmax(dim=1)
        return best if columns is None else columns[best]
