"""Weight-space operations shared by methods: interpolation (WiSE-FT, "+WE" rows), state copies and fused norms."""
from __future__ import annotations

import torch

from bench.errors import BenchError


def clone_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def interpolate(theta0: dict[str, torch.Tensor], theta1: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """theta_alpha = (1 - alpha) * theta0 + alpha * theta1 for every floating tensor (head included).

    Written as a weighted sum, not lerp, so alpha = 0 and alpha = 1 give exactly theta0 and theta1.
    Non-floating tensors (integer buffers) must agree and are copied.
    """
    if theta0.keys() != theta1.keys():
        missing = sorted(set(theta0) ^ set(theta1))[:3]
        raise BenchError(f"cannot interpolate weights with different tensors: {missing}")
    out = {}
    for key, a in theta0.items():
        b = theta1[key]
        if a.shape != b.shape:
            raise BenchError(f"cannot interpolate {key}: shapes {tuple(a.shape)} and {tuple(b.shape)} differ")
        if a.device != b.device:
            raise ValueError(f"cannot interpolate {key}: tensors on {a.device} and {b.device}")
        if a.is_floating_point():
            out[key] = (1.0 - alpha) * a + alpha * b
        else:
            if not torch.equal(a, b):
                raise BenchError(f"cannot interpolate non-float tensor {key}: the two models disagree")
            out[key] = a.clone()
    return out


def summed_norms(tensors, order: int, power: int = 1) -> torch.Tensor:
    """sum over tensors of ||t||_order ** power, one fused kernel per list (0 for an empty list)."""
    if not tensors:
        return torch.zeros(())
    return torch.stack(torch._foreach_norm(tensors, order)).pow(power).sum()
