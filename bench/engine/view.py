"""What a method sees of a run: a read-only view, not the dataset adapter.

The view exposes the protocol, the class names and templates, the pretrained CLIP and its tokenizer, the device,
the seed, the method's run options, cached heads, and the splits (and their cached features) the method may read
now, by role. It holds no dataset adapter, no data root, no store or cache folder and no access log: every public
name of the view, and of what it returns, leads only to data the method may read (tests walk them all). Reads go
through the engine's guard, which logs them; the method cannot write to that log.
"""
from __future__ import annotations

import copy
import dataclasses
from types import MappingProxyType

import torch

from bench.engine.access import ProtocolViolation


class GuardedSplit(torch.utils.data.Dataset):
    """A split as a method sees it: examples, labels, WILDS metadata; no file paths, no way back to the dataset."""

    def __init__(self, inner):
        # The method gets its own copies of in-memory tensors: editing them in place cannot touch the engine's.
        self._inner = inner
        self._images = _copy(getattr(inner, "images", None))
        self._labels = _copy(inner.labels)
        self._metadata = _copy(getattr(inner, "metadata", None))

    def __len__(self) -> int:
        return len(self._inner)

    def __getitem__(self, i):
        if self._images is not None:
            return self._images[i], self._labels[i]
        return self._inner[i]

    @property
    def labels(self) -> torch.Tensor:
        return self._labels

    @property
    def images(self) -> torch.Tensor | None:
        """The preprocessed images when the split is held in memory (the testbed); None for on-disk splits."""
        return self._images

    @property
    def metadata(self):
        return self._metadata

    def subset(self, idx: torch.Tensor) -> "GuardedSplit":
        return GuardedSplit(self._inner.subset(idx))


def _copy(value):
    return value.clone() if isinstance(value, torch.Tensor) else value


class MethodView:
    """Built once per run by the engine; its attributes cannot be replaced."""

    def __init__(self, engine, options: dict | None = None, trial_reporter=None, inputs: tuple = ()):
        values = {
            "protocol": dataclasses.replace(engine.protocol),  # a copy: the engine's own cannot be changed from here
            "classnames": tuple(engine.dataset.classnames),
            "templates": engine.templates,
            "dataset_name": engine.dataset.name,
            "model_info": engine.model_info,
            "clip": copy.deepcopy(engine.clip),  # the engine keeps its own pretrained model for heads and features
            "tokenizer": engine.tokenizer,
            "device": engine.device,
            "seed": engine.seed,
            "num_workers": engine.num_workers,
            "autocast_dtype": engine.autocast_dtype,
            "options": MappingProxyType(dict(options or {})),
            "inputs": tuple(inputs),
        }
        for key, value in values.items():
            object.__setattr__(self, key, value)
        object.__setattr__(self, "_engine", engine)
        object.__setattr__(self, "_trial_reporter", trial_reporter)

    def __setattr__(self, key, value):
        raise ProtocolViolation(f"the method view is read-only; {key!r} cannot be set")

    def split(self, role: str) -> GuardedSplit:
        """A split by role: 'train', 'id_val', or 'ood_val' where the method declared it and the protocol grants it
        (OOD val: the protocol's fixed subset of `ood_val_size` examples)."""
        return GuardedSplit(self._engine.readable(self._engine.guard.split_name(role)))

    def metrics(self, role: str, logits: torch.Tensor, labels: torch.Tensor, metadata=None) -> dict[str, float]:
        """The dataset's official metrics for predictions on a readable split (or a subset, with its metadata)."""
        return self._engine.metrics(self._engine.guard.split_name(role), logits, labels, metadata)

    def zero_shot_weights(self) -> torch.Tensor:
        return self._engine.zero_shot_weights()

    def zero_shot_classifier(self):
        return self._engine.zero_shot_classifier()

    def frozen_features(self, role: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised features of a readable split under the pretrained image tower (linear probes), cached,
        extracted without augmentation."""
        features, labels = self._engine.cached_features(self._engine.guard.split_name(role))
        return features.clone(), labels.clone()

    def fused_kwargs(self) -> dict:
        return self._engine.fused_kwargs()

    def report_trial(self, number: int, value: float) -> None:
        """Progress of a search (shown by the CLI); no effect on the run."""
        if self._trial_reporter is not None:
            self._trial_reporter(number, value)
