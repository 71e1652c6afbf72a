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
import hashlib
from pathlib import Path
from types import MappingProxyType

import torch
import torch.nn.functional as F

from bench.engine.access import ProtocolViolation
from bench.engine.planning import INPUT_FIELDS, INPUT_WEIGHTS


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
            "inputs": tuple({k: v for k, v in run.items() if k in INPUT_FIELDS} for run in inputs),
        }
        for key, value in values.items():
            object.__setattr__(self, key, value)
        object.__setattr__(self, "_engine", engine)
        object.__setattr__(self, "_trial_reporter", trial_reporter)
        files = {run["run_id"]: (Path(run["path"]) / INPUT_WEIGHTS, run["weights_sha256"]) for run in inputs}
        object.__setattr__(self, "_input_files", MappingProxyType(files))

    def __setattr__(self, key, value):
        raise ProtocolViolation(f"the method view is read-only; {key!r} cannot be set")

    def split(self, role: str, augmented: bool = True) -> GuardedSplit:
        """A split by role: 'train', 'id_val', or 'ood_val' where the method declared it and the protocol grants it
        (OOD val: the protocol's fixed subset of `ood_val_size` examples). `augmented=False`: with the evaluation
        preprocessing (the training split's images as a test image is seen; VRF's feature bank)."""
        split = self._engine.readable(self._engine.guard.split_name(role))
        return GuardedSplit(split if augmented else self._engine.dataset.unaugmented(split))

    def metrics(self, role: str, logits: torch.Tensor, labels: torch.Tensor, metadata=None) -> dict[str, float]:
        """The dataset's official metrics for predictions on a readable split (or a subset, with its metadata)."""
        return self._engine.metrics(self._engine.guard.split_name(role), logits, labels, metadata)

    def zero_shot_weights(self) -> torch.Tensor:
        return self._engine.zero_shot_weights()

    def zero_shot_classifier(self):
        return self._engine.zero_shot_classifier()

    def frozen_features(self, role: str, normalized: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Features of a readable split under the pretrained image tower, L2-normalised (what a CLIP head reads)
        or raw (`normalized=False`: Kumar et al.'s linear probe), cached, extracted without augmentation."""
        features, labels = self._engine.cached_features(self._engine.guard.split_name(role))
        return (F.normalize(features, dim=-1) if normalized else features.clone()), labels.clone()

    def input_state(self, run_id: str) -> dict[str, torch.Tensor]:
        """The trained weights of one of this run's inputs (`inputs`), on the CPU: a state dict of the model the
        consumed run evaluated. Only its weights file is read (checked against its record's hash), never its
        record or predictions."""
        if run_id not in self._input_files:
            raise ProtocolViolation(f"run {run_id!r} is not an input of this run; its inputs: "
                                    f"{', '.join(self._input_files) or 'none'}")
        path, sha256 = self._input_files[run_id]
        blob = path.read_bytes()
        if hashlib.sha256(blob).hexdigest() != sha256:
            from bench.errors import BenchError

            raise BenchError(f"the weights of input run {run_id} ({path}) do not match its record; re-run it with --force")
        from safetensors.torch import load

        return load(blob)

    def fused_kwargs(self) -> dict:
        return self._engine.fused_kwargs()

    def report_trial(self, number: int, value: float) -> None:
        """Progress of a search (shown by the CLI); no effect on the run."""
        if self._trial_reporter is not None:
            self._trial_reporter(number, value)
