"""Evaluation: logits per split, then the dataset's own metrics."""
from __future__ import annotations

import torch

from bench.engine import distributed
from bench.engine.batches import eval_batches


@torch.no_grad()
def predict(model, split, batch_size: int, device, autocast_dtype=None, num_workers: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (float, CPU) and labels of a split; under torchrun each rank predicts its shard and all get the whole."""
    (logits,), labels = predict_many([model], split, batch_size, device, autocast_dtype, num_workers)
    return logits, labels


@torch.no_grad()
def predict_many(models: list, split, batch_size: int, device, autocast_dtype=None,
                 num_workers: int = 0) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Every model's logits on a split that is read (decoded, transformed) once: each batch goes through all models
    as it arrives. Each model sees the same batches as it would alone, so its logits are the ones `predict` gives."""
    world = distributed.current()
    if world.size > 1:
        part = distributed.shard(len(split), world)
        mine = split.subset(torch.arange(part.start, part.stop)) if len(part) else None
        logits, labels = _predict(models, mine, batch_size, device, autocast_dtype, num_workers)
        *gathered, labels = distributed.gather_in_order(*logits, labels)
        return list(gathered), labels
    return _predict(models, split, batch_size, device, autocast_dtype, num_workers)


@torch.no_grad()
def _predict(models, split, batch_size, device, autocast_dtype, num_workers):
    if split is None:  # an empty shard (fewer examples than ranks)
        return [torch.empty(0) for _ in models], torch.empty(0, dtype=torch.long)
    modes = [m.training for m in models]
    for m in models:
        m.eval()
    logits, labels = [[] for _ in models], []
    for images, y in eval_batches(split, batch_size, device, num_workers):
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            for m, out in zip(models, logits):
                out.append(m(images).float().cpu())
        labels.append(y)
    for m, mode in zip(models, modes):
        m.train(mode)
    return [torch.cat(out) for out in logits], torch.cat(labels)


def models_at_once(model, count: int, device) -> int:
    """How many copies of `model` the decode-once evaluation holds at a time: all of them, unless the copies'
    weights would take over half of the accelerator's free memory (the activations need the rest);
    BENCH_EVAL_MODELS_AT_ONCE overrides (1: one model per pass over the data, the pre-decode-once behaviour)."""
    import os

    if os.environ.get("BENCH_EVAL_MODELS_AT_ONCE"):
        return max(1, min(count, int(os.environ["BENCH_EVAL_MODELS_AT_ONCE"])))
    if device.type != "cuda":
        return count
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, min(count, int(0.5 * free // max(weights, 1))))


def evaluate(model, ctx, splits, frozen: bool = False, probabilities: bool = False):
    """Metrics per split (`ctx`: the engine's context, whose guard logs every read). `frozen`: the image tower is
    the pretrained one, so its cached features are re-used and only the head runs (in the same batch sizes as a
    full forward, so the logits are bit-identical). Returns (metrics per split, top-1 class per example per split,
    and with `probabilities` per split (scored class probabilities, their classes or None); else {})."""
    return evaluate_many([model], ctx, splits, frozen, [probabilities])[0]


def evaluate_many(models: list, ctx, splits, frozen: bool = False, probabilities: list | None = None) -> list:
    """`evaluate` for several models (a run's variants) with each split read once for all of them; returns one
    (metrics, top-1, probabilities) triple per model, the same as `evaluate` gives each alone."""
    probabilities = probabilities or [False] * len(models)
    results = [({}, {}, {}) for _ in models]
    for name in splits:
        data = ctx.readable(name)  # OOD val: the protocol's subset, scored with that subset's metadata
        if frozen:
            features, labels = ctx.cached_features(name)
            size = ctx.protocol.eval_batch_size
            with torch.no_grad(), torch.autocast(ctx.device.type, dtype=ctx.autocast_dtype,
                                                 enabled=ctx.autocast_dtype is not None):
                per_model = [torch.cat([m.head(m.from_tower(features[i : i + size].to(ctx.device))).float().cpu()
                                        for i in range(0, len(features), size)]) for m in models]
        else:
            per_model, labels = predict_many(models, data, ctx.protocol.eval_batch_size, ctx.device,
                                             ctx.autocast_dtype, ctx.num_workers)
        for (out, top1, probs), logits, with_probs in zip(results, per_model, probabilities):
            out[name] = ctx.metrics(name, logits, labels, getattr(data, "metadata", None))
            top1[name] = ctx.top1(name, logits).to(torch.int32)  # in the label space the metric scores
            if with_probs:
                probs[name] = ctx.probabilities(name, logits)
    return results
