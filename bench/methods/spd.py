"""SPD, selective projection decay (Tian, Huang & Kira, "Rethinking Weight Decay for Robust Fine-Tuning of
Foundation Models", NeurIPS 2024; official code GT-RIPL/Selective-Projection-Decay @ b377695, `adamSPD.py`, its
only source file).

Adam without weight decay proposes theta~ = theta - d for every tensor (bias-corrected moments, as AdamW). Then,
per tensor, with theta_0 its pretrained value and g its raw gradient of this step:
    c = -sum(g * (theta - theta_0))            (theta: the tensor before this step)
    if c < 0:   r = clamp((||theta~ - theta_0|| - ||theta - theta_0||) / ||theta~ - theta_0||, 0, 1)
                theta = theta~ - lam * r * (theta~ - theta_0)
    else:       theta = theta~
c < 0 means the descent direction -g points back toward theta_0 (the loss itself would shrink the displacement):
only such "inconsistent" tensors are decayed, by the share r of this step's growth of ||theta - theta_0||; with
lam = 1 their distance to theta_0 does not grow. lam is the official `weight_decay` argument and, as there, is not
multiplied by the learning rate. On the first step theta = theta_0, so c = 0 and nothing is decayed.

As the official README uses it, every trainable tensor is anchored to its initial value, the head included (here
the zero-shot head); the protocol's gradient clipping is kept (the optimiser sees the clipped gradient, as in any
training loop that clips). Deviation: where ||theta~ - theta_0|| = 0 the official ratio is 0/0 = NaN; here it is 0
(no decay of a tensor sitting exactly at its anchor). Default lam = 1 is ours: the paper's per-dataset values
could not be retrieved. The condition and ratio are computed on the device for all tensors at once, so the step
never waits for the host (the official code branches in Python on each tensor's c).
"""
from __future__ import annotations

import torch

from bench.config import NON_NEGATIVE, HParam
from bench.methods import register_method
from bench.methods.base import ALPHA_GRID, Method
from bench.methods.ftp import GroupwiseOptimizer, adam_updates


class AdamSPD(GroupwiseOptimizer):
    """Adam + selective projection decay toward each group's `anchors` (one tensor per parameter)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        for group in self.param_groups:
            anchors = group.pop("anchors")
            for p, anchor in zip(group["params"], anchors):
                self.state[p]["anchor"] = anchor.detach().clone()

    @torch.no_grad()
    def update_group(self, group, params):
        states = [self.state[p] for p in params]
        anchors = [st["anchor"] for st in states]
        before = torch._foreach_sub(params, anchors)  # theta - theta_0, before the step
        condition = torch.stack([-(p.grad * d).sum() for p, d in zip(params, before)])
        update = adam_updates(params, states, *group["betas"], group["lr"], group["eps"])
        torch._foreach_sub_(params, update)  # theta~
        after = torch._foreach_sub(params, anchors)  # theta~ - theta_0
        ratios = spd_ratio(torch.stack(torch._foreach_norm(after)), torch.stack(torch._foreach_norm(before)))
        scale = torch.where(condition < 0, ratios * group["weight_decay"], torch.zeros_like(ratios))
        torch._foreach_mul_(after, list(scale.unbind()))
        torch._foreach_sub_(params, after)


def spd_ratio(new_norm: torch.Tensor, old_norm: torch.Tensor) -> torch.Tensor:
    """clamp((||theta~ - theta_0|| - ||theta - theta_0||) / ||theta~ - theta_0||, 0, 1); 0 where the new norm is 0."""
    ratio = (new_norm - old_norm) / torch.where(new_norm > 0, new_norm, torch.ones_like(new_norm))
    return ratio.clamp(0.0, 1.0)


@register_method("spd")
class SPD(Method):
    description = "SPD: Adam + decay toward the pretrained weights only for tensors whose gradient points back there"
    ensemble_alphas = ALPHA_GRID
    hparams = {
        "lr": Method.hparams["lr"],
        "weight_decay": HParam(1.0, "SPD strength lam (the official weight_decay; not times lr): the share of a "
                               "decayed tensor's growth away from the pretrained weights that is removed",
                               ("uniform", 0.0, 2.0), NON_NEGATIVE),
    }

    def optimizer(self, model):
        params = [p for p in model.parameters() if p.requires_grad]
        return AdamSPD([{"params": params, "anchors": [p.detach() for p in params]}], lr=self.hp["lr"],
                       weight_decay=self.hp["weight_decay"])
