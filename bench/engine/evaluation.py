"""Evaluation: logits per split, then the dataset's own metrics."""
from __future__ import annotations

import torch

from bench.engine import distributed
from bench.engine.batches import eval_batches


@torch.no_grad()
def predict(model, split, batch_size: int, device, autocast_dtype=None, num_workers: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (float, CPU) and labels of a split; under torchrun each rank predicts its shard and all get the whole."""
    world = distributed.current()
    if world.size > 1:
        part = distributed.shard(len(split), world)
        mine = split.subset(torch.arange(part.start, part.stop)) if len(part) else None
        logits, labels = _predict(model, mine, batch_size, device, autocast_dtype, num_workers)
        return distributed.gather_in_order(logits, labels)
    return _predict(model, split, batch_size, device, autocast_dtype, num_workers)


@torch.no_grad()
def _predict(model, split, batch_size, device, autocast_dtype, num_workers):
    if split is None:  # an empty shard (fewer examples than ranks)
        return torch.empty(0), torch.empty(0, dtype=torch.long)
    was_training = model.training
    model.eval()
    logits, labels = [], []
    for images, y in eval_batches(split, batch_size, device, num_workers):
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            logits.append(model(images).float().cpu())
        labels.append(y)
    model.train(was_training)
    return torch.cat(logits), torch.cat(labels)


def evaluate(model, ctx, splits, frozen: bool = False, probabilities: bool = False):
    """Metrics per split (`ctx`: the engine's context, whose guard logs every read). `frozen`: the image tower is
    the pretrained one, so its cached features are re-used and only the head runs (in the same batch sizes as a
    full forward, so the logits are bit-identical). Returns (metrics per split, top-1 class per example per split,
    and with `probabilities` per split (scored class probabilities, their classes or None); else {})."""
    out, top1, probs = {}, {}, {}
    for name in splits:
        data = ctx.readable(name)  # OOD val: the protocol's subset, scored with that subset's metadata
        if frozen:
            features, labels = ctx.cached_features(name)
            size = ctx.protocol.eval_batch_size
            with torch.no_grad(), torch.autocast(ctx.device.type, dtype=ctx.autocast_dtype,
                                                 enabled=ctx.autocast_dtype is not None):
                logits = torch.cat([model.head(model.from_tower(features[i : i + size].to(ctx.device))).float().cpu()
                                    for i in range(0, len(features), size)])
        else:
            logits, labels = predict(model, data, ctx.protocol.eval_batch_size, ctx.device, ctx.autocast_dtype,
                                     ctx.num_workers)
        out[name] = ctx.metrics(name, logits, labels, getattr(data, "metadata", None))
        top1[name] = ctx.top1(name, logits).to(torch.int32)  # in the label space the metric scores
        if probabilities:
            probs[name] = ctx.probabilities(name, logits)
    return out, top1, probs
