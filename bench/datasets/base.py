"""Dataset adapters: class names, prompt templates, split loading and the dataset's official metrics."""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import torch

from bench.models import ModelInfo


class TensorSplit(torch.utils.data.Dataset):
    """A split held in memory as normalised image tensors (the testbed); real datasets stream from disk."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], self.labels[i]


class DatasetAdapter(ABC):
    name: str = ""
    description: str = ""
    classnames: tuple[str, ...] = ()
    templates: tuple[str, ...] = ()
    protocol = None  # the dataset's default Protocol

    def __init__(self, model_info: ModelInfo, data_root: Path | None = None):
        self.model_info = model_info
        self.data_root = data_root
        self._cache: dict[str, torch.utils.data.Dataset] = {}

    def split(self, name: str) -> torch.utils.data.Dataset:
        if name not in self._cache:
            self._cache[name] = self.load_split(name)
        return self._cache[name]

    @abstractmethod
    def load_split(self, name: str) -> torch.utils.data.Dataset:
        """Read one split (by the protocol's split name), preprocessed for the model."""

    def metrics(self, split: str, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """Official metrics of one split from its logits; subclasses add their own (e.g. WILDS evaluators)."""
        return {"acc": accuracy(logits, labels)}


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(1) == labels).float().mean()) * 100.0
