"""L1-SP: the L1 penalty toward the pretrained weights, as in the feature-protection study (Tan et al. 2024,
arXiv 2405.16027, "L1 penalty"; from its predecessor Lin et al. 2023, arXiv 2309.06256, which took it from
continual learning). Loss = cross-entropy + lambda * sum |w_S - w_S^0| over every pretrained image-tower tensor
+ beta/2 ||w_head||^2 over the new head: the same coverage and head handling as `l2sp`, AdamW with weight decay 0
so the two regularisers do not mix.

Scaling: a plain sum over elements (not a mean), so each weight's pull is lambda * sign(w - w0) whatever the model's
size, the L1 analogue of L2-SP's alpha * (w - w0). At w = w0 (the first step) the subgradient is 0. The default
lambda (1e-4) is ours: the study's strength could not be retrieved (its text and code are not available here).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.config import NON_NEGATIVE, HParam
from bench.methods import register_method
from bench.methods.l2sp import L2SP
from bench.weights import summed_norms


def l1sp_penalty(encoder_params, anchor, head_params, lam: float, beta: float) -> torch.Tensor:
    """lam * sum |w - w0| over encoder tensors + beta/2 * sum ||h||^2 over head tensors, in fused per-list ops."""
    drift = summed_norms(torch._foreach_sub(encoder_params, anchor) if encoder_params else [], 1)
    norm = summed_norms(head_params, 2, power=2)
    return lam * drift + 0.5 * beta * norm


@register_method("l1sp")
class L1SP(L2SP):
    description = "L1-SP: cross-entropy + lambda sum |w - w0| on the image tower + beta/2 ||head||^2"
    hparams = {
        "lr": L2SP.hparams["lr"],
        "lam": HParam(1e-4, "L1 pull of each image-tower weight toward its pretrained value", ("log", 1e-6, 1e-2),
                      NON_NEGATIVE),
        "beta": L2SP.hparams["beta"],
    }

    def loss(self, model, images, labels):
        penalty = l1sp_penalty(self._encoder, self._anchor, self._head, self.hp["lam"], self.hp["beta"])
        return F.cross_entropy(model(images), labels) + penalty
