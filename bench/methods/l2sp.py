"""L2-SP (Li et al., 2018): cross-entropy + alpha/2 ||w_S - w_S^0||^2 over the pretrained image tower
+ beta/2 ||w_head||^2 over the head. The penalty replaces decoupled weight decay (AdamW with weight_decay=0),
as the paper advises, so the two regularisers do not mix."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.config import NON_NEGATIVE, HParam
from bench.methods import register_method
from bench.methods.base import Method
from bench.weights import summed_norms


def l2sp_penalty(encoder_params, anchor, head_params, alpha: float, beta: float) -> torch.Tensor:
    """alpha/2 * sum ||w - w0||^2 over encoder tensors + beta/2 * sum ||h||^2 over head tensors, in fused
    per-list ops (one kernel per list instead of a Python loop of small ones)."""
    drift = summed_norms(torch._foreach_sub(encoder_params, anchor) if encoder_params else [], 2, power=2)
    norm = summed_norms(head_params, 2, power=2)
    return 0.5 * alpha * drift + 0.5 * beta * norm


@register_method("l2sp")
class L2SP(Method):
    description = "L2-SP: cross-entropy + alpha/2 ||w - w0||^2 on the image tower + beta/2 ||head||^2"
    hparams = {
        "lr": Method.hparams["lr"],
        "alpha": HParam(0.1, "pull of the image tower toward its pretrained weights", ("log", 1e-3, 1.0), NON_NEGATIVE),
        "beta": HParam(0.01, "L2 decay of the head", ("log", 1e-4, 1e-1), NON_NEGATIVE),
    }

    def build(self):
        model = super().build()
        self._encoder = [p for p in model.visual.parameters() if p.requires_grad]
        self._anchor = [p.detach().clone() for p in self._encoder]
        self._head = list(model.head.parameters())
        return model

    def optimizer(self, model):
        return torch.optim.AdamW(model.parameters(), lr=self.hp["lr"], weight_decay=0.0, **self.ctx.fused_kwargs())

    def loss(self, model, images, labels):
        penalty = l2sp_penalty(self._encoder, self._anchor, self._head, self.hp["alpha"], self.hp["beta"])
        return F.cross_entropy(model(images), labels) + penalty
