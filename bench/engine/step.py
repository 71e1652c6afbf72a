"""One training step, the same everywhere: the protocol's trainer, AutoFT's inner loop and the step-cost
benchmarks (autocast on the device's dtype, loss, backward, gradient clipping where asked, optimiser step)."""
from __future__ import annotations

import torch


def training_step(model, loss_fn, optimizer, images, labels, device: torch.device, autocast_dtype=None,
                  grad_clip: float | None = None) -> torch.Tensor:
    """Run `loss_fn(model, images, labels)` and one optimiser step; returns the (detached) loss."""
    with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        loss = loss_fn(model, images, labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.detach()
