"""The engine's side of a run: the dataset adapter, the data guard, the model and device, cached heads and features.

Only the engine holds this object; a method gets a `MethodView` of it (bench/engine/view.py).
"""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import torch

from bench.config import seed_hash
from bench.engine import distributed
from bench.engine.access import DataGuard
from bench.engine.evaluation import predict
from bench.errors import BenchError
from bench.models.classifier import ImageClassifier, linear_head, zero_shot_weights
from bench.results.io import atomic_torch_save


def prompt_templates(dataset, prompts: str) -> tuple[str, ...]:
    """The templates of the protocol's prompt set ("default", or a smaller set some datasets offer)."""
    sets = {"default": dataset.templates, **getattr(dataset, "template_sets", {})}
    if prompts not in sets:
        raise BenchError(f"{dataset.name} has no prompt set {prompts!r}; sets: {', '.join(sets)}")
    return tuple(sets[prompts])


class EngineContext:
    def __init__(self, protocol, dataset, guard: DataGuard, clip, tokenizer, model_info, device: torch.device,
                 seed: int, cache_dir: Path | None = None, num_workers: int = 0):
        self.protocol = protocol
        self.dataset = dataset
        self.guard = guard
        self.clip = clip
        self.tokenizer = tokenizer
        self.model_info = model_info
        self.device = device
        self.seed = seed
        self.cache_dir = cache_dir
        self.num_workers = num_workers
        self.decode = "loader"  # or "device": training JPEGs decoded on the device (bench run --decode)
        self.decoded_on_device = False  # set by the trainer: whether they were (on disk, no prepared copy)
        self.autocast_dtype = torch.bfloat16 if device.type == "cuda" else None
        self._zs_weights: torch.Tensor | None = None
        self._features: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self._subsets: dict[str, object] = {}
        self.templates = prompt_templates(dataset, protocol.prompts)

    def read(self, split: str):
        """A split by the protocol's name, through the guard (refused or logged)."""
        with self.guard.engine_access():
            self.guard.record_read(split)
            return self.dataset.split(split)

    def readable(self, split: str):
        """What a method may read of a split, and what the final evaluation scores it on: all of it, except OOD
        val, of which a fixed random subset of `protocol.ood_val_size` examples (seeded by the size alone, so every
        method, run and worker reads the same examples; ImageNet-C's 750k images are never all decoded), and in the final
        evaluation of a protocol that reports OOD val (WILDS) the whole split, for every method."""
        data = self.read(split)
        size = self.protocol.ood_val_size
        whole = self.protocol.report_ood_val and self.guard.phase == "final_eval"  # the engine's record of it
        if split != self.protocol.ood_val_split or size >= len(data) or whole:
            return data
        if split not in self._subsets:
            gen = torch.Generator().manual_seed(seed_hash("ood_val_subset", size))
            self._subsets[split] = data.subset(torch.randperm(len(data), generator=gen)[:size])
        return self._subsets[split]

    def metrics(self, split: str, logits, labels, metadata=None) -> dict[str, float]:
        with self.guard.engine_access():
            self.guard.check(split)
            return self.dataset.metrics(split, logits, labels, metadata)

    def top1(self, split: str, logits):
        with self.guard.engine_access():  # the dataset looks its split's class subset up
            self.guard.check(split)
            return self.dataset.top1(split, logits)

    def probabilities(self, split: str, logits):
        """(softmax of the logits the split's metric scores, the class of each column or None): what is stored."""
        with self.guard.engine_access():
            self.guard.check(split)
            scored, columns = self.dataset.scored(split, logits)
            return scored.float().softmax(dim=1).to(torch.float16), columns  # stored at this precision

    def groups(self, split: str):
        """The group ids the split's metric groups by (None where it does not), for the predictions file."""
        data = self.readable(split)
        with self.guard.engine_access():
            self.guard.check(split)
            return self.dataset.groups(split, getattr(data, "metadata", None))

    def fused_kwargs(self) -> dict:
        return {"fused": True} if self.device.type == "cuda" else {}

    def _head_cache_file(self) -> Path | None:
        if self.cache_dir is None:
            return None
        key = json.dumps([self.model_info.as_dict(), list(self.dataset.classnames), list(self.templates)])
        return self.cache_dir / "heads" / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"

    def zero_shot_weights(self) -> torch.Tensor:
        """Template head weights, cached on disk: building them is slow for 1000 classes x 80 templates."""
        if self._zs_weights is None:
            cache = self._head_cache_file()
            if cache is not None and cache.is_file():
                try:
                    self._zs_weights = torch.load(cache, map_location="cpu", weights_only=True)
                except Exception:
                    cache.unlink(missing_ok=True)  # a broken cache entry is rebuilt, never trusted
            if self._zs_weights is None:
                self.clip.to(self.device)
                self._zs_weights = zero_shot_weights(self.clip, self.tokenizer, self.dataset.classnames,
                                                     self.templates, self.device)
                if cache is not None and distributed.launched().main:
                    cache.parent.mkdir(parents=True, exist_ok=True)
                    atomic_torch_save(self._zs_weights, cache)
        return self._zs_weights.clone()  # callers own their copy

    def zero_shot_classifier(self) -> ImageClassifier:
        model = ImageClassifier(copy.deepcopy(self.clip.visual), linear_head(self.zero_shot_weights()))
        return model.to(self.device)

    def cached_features(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw features (the tower's output, not normalised) of split `name` under the pretrained image tower, computed once and cached on disk
        (keyed by the weights, preprocessing and the split's contents), so zero-shot, LP and LP-FT over several
        seeds pay for one feature pass per split. Read through the guard like any other access, and without
        augmentation (the evaluation preprocessing, also for the training split)."""
        split = self.readable(name)  # every access goes through the guard, memoised or not
        key = (name, len(split))  # OOD val: a subset while the method runs, the whole of it in the final evaluation
        if key in self._features:
            return self._features[key]
        split = self.dataset.unaugmented(split)
        file = self._feature_cache_file(name, split)
        if file is not None and file.is_file():
            try:
                features = torch.load(file, map_location="cpu", weights_only=True)
                if isinstance(features, torch.Tensor) and len(features) == len(split):
                    self._features[key] = (features, split.labels.clone())
                    return self._features[key]
            except Exception:
                pass
            file.unlink(missing_ok=True)  # a broken or old-format entry is recomputed, never trusted
        # Always the engine's own pretrained tower (never a method's copy, which method code could have changed),
        # so the cache shared by later runs holds only what its key says.
        self.clip.to(self.device)
        tower = ImageClassifier(self.clip.visual, torch.nn.Identity(), normalize=False)  # raw: heads normalise as they need
        self._features[key] = predict(tower, split, self.protocol.eval_batch_size, self.device,
                                       self.autocast_dtype, self.num_workers)
        if file is not None and distributed.launched().main:  # features only: labels come from the split, so the cache holds none
            file.parent.mkdir(parents=True, exist_ok=True)
            atomic_torch_save(self._features[key][0], file)
        return self._features[key]

    def _feature_cache_file(self, name: str, split) -> Path | None:
        if self.cache_dir is None or self.model_info.weights_sha256 is None:
            return None  # random or unhashed weights: nothing stable to key on
        digest = hashlib.sha256()
        if hasattr(split, "images"):  # in memory: key on the pixels themselves
            digest.update(split.images.numpy().tobytes())
        else:
            digest.update("\n".join(map(str, split.paths)).encode())
            digest.update(repr(split.transform).encode())
        digest.update(split.labels.numpy().tobytes())
        key = json.dumps([self.model_info.as_dict(), self.dataset.name, name, digest.hexdigest(), str(self.autocast_dtype),
                          "raw"])  # raw tower outputs (older cache entries held normalised ones)
        return self.cache_dir / "features" / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.pt"
