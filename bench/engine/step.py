"""One training step, the same everywhere: the protocol's trainer, AutoFT's inner loop and the step-cost
benchmarks (autocast on the device's dtype, loss, backward, gradient clipping where asked, optimiser step)."""
from __future__ import annotations

import torch

from bench.engine import distributed


def training_step(model, loss_fn, optimizer, images, labels, device: torch.device, autocast_dtype=None,
                  grad_clip: float | None = None) -> torch.Tensor:
    """Run `loss_fn(model, images, labels)` and one optimiser step; returns the (detached) loss of this rank's
    part of the batch."""
    with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        loss = loss_fn(model, images, labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    distributed.average_gradients(model.parameters())  # under torchrun: the global batch's gradient on every rank
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.detach()
