"""Evaluation: logits per split, then the dataset's own metrics."""
from __future__ import annotations

import torch

from bench.protocols.batches import eval_batches


@torch.no_grad()
def predict(model, split, batch_size: int, device, autocast_dtype=None) -> tuple[torch.Tensor, torch.Tensor]:
    was_training = model.training
    model.eval()
    logits, labels = [], []
    for images, y in eval_batches(split, batch_size, device):
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            logits.append(model(images).float().cpu())
        labels.append(y)
    model.train(was_training)
    return torch.cat(logits), torch.cat(labels)


def evaluate(model, ctx, splits) -> dict[str, dict[str, float]]:
    out = {}
    for name in splits:
        logits, labels = predict(model, ctx.data.get(name), ctx.protocol.eval_batch_size, ctx.device, ctx.autocast_dtype)
        out[name] = ctx.dataset.metrics(name, logits, labels)
    return out
