"""FTP, Fast Trainable Projection (Tian et al., NeurIPS 2023; official code GT-RIPL/FTP `util/FTP.py`).

AdamW plus a learned projection of every pretrained tensor W back toward its pretrained value W0 ("AdamP"):

1. The AdamW update d gives the tentative weight W - d and the displacement c_t = W - d - W0.
2. One radius gamma per tensor is learned from the *training* gradient of this step: its hyper-gradient is
   sum_rows <grad W, c_{t-1} / ||c_{t-1}||_row>; a positive one (the loss wants a tighter ball) is scaled by k;
   gamma takes an Adam step of size mu (1e-2) and is clipped to [1e-8, max_row ||c_t||]. On a tensor's first
   step gamma starts at 1e-8, i.e. at the anchor.
3. Projection: W = W0 + clamp(gamma / ||c_t||_row, 0, 1) * c_t, with ||.||_row the L1 norm of each output row
   (MARS); a 1-D tensor is a single row, so it gets one norm over the whole vector.

The head has no pretrained value in the paper's setting and is excluded (the README's `exclude_set`); weight decay
is 0 inside the optimiser, as FTP replaces it. No gradient clipping, as in the official training code. Deviation: k really is a hyperparameter here (the official script
parses --k but hard-codes k = 1); per-tensor step counters replace the official shared counter, which is the same
when every tensor gets a gradient every step and avoids the indexing bug the official code later fixed.

Relation to TPGM (Tian et al., CVPR 2023): TPGM also constrains ||W - W0|| per layer, but learns the radii in a
separate bi-level loop on a held-out validation split (extra forward/backward passes and a data split); FTP
replaces that loop by the one-step hyper-gradient above, computed from the training gradient already at hand.
"""
from __future__ import annotations

import math

import torch

from bench.config import FRACTION, POSITIVE, HParam
from bench.methods import register_method
from bench.methods.base import ALPHA_GRID, Method


def row_l1(t: torch.Tensor) -> torch.Tensor:
    """Per-output-row L1 norm (+1e-8), kept broadcastable to t; a 1-D tensor (bias, LayerNorm weight, class
    embedding) is one row, so it gets one norm over the whole vector, as in the official code."""
    if t.dim() <= 1:
        return t.abs().sum().reshape([1] * t.dim()) + 1e-8
    return t.abs().sum(dim=tuple(range(1, t.dim())), keepdim=True) + 1e-8


def row_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if a.dim() <= 1:
        return (a * b).sum().reshape([1] * a.dim())
    return (a * b).sum(dim=tuple(range(1, a.dim())), keepdim=True)


def adam_updates(params, states, beta1: float, beta2: float, lr: float, eps: float, weight_decay: float = 0.0):
    """AdamW's step d for every tensor (theta_new = theta - d) in fused `torch._foreach_*` ops: the moments in
    `states` (created on a tensor's first step) advance, bias-corrected; weight_decay adds lr * wd * theta."""
    for p, state in zip(params, states):
        if "step" not in state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        state["step"] += 1
    grads = [p.grad for p in params]
    exp_avg = [st["exp_avg"] for st in states]
    exp_avg_sq = [st["exp_avg_sq"] for st in states]
    torch._foreach_mul_(exp_avg, beta1)
    torch._foreach_add_(exp_avg, grads, alpha=1 - beta1)
    torch._foreach_mul_(exp_avg_sq, beta2)
    torch._foreach_addcmul_(exp_avg_sq, grads, grads, value=1 - beta2)
    denom = torch._foreach_sqrt(exp_avg_sq)
    torch._foreach_div_(denom, [math.sqrt(1 - beta2 ** st["step"]) for st in states])
    torch._foreach_add_(denom, eps)
    update = torch._foreach_div(exp_avg, denom)
    torch._foreach_mul_(update, [lr / (1 - beta1 ** st["step"]) for st in states])
    if weight_decay:
        torch._foreach_add_(update, params, alpha=lr * weight_decay)
    return update


class GroupwiseOptimizer(torch.optim.Optimizer):
    """An optimiser whose step is `update_group(group, params)` on each group's tensors that have a gradient;
    a subclass defines `update_group`."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                self.update_group(group, params)
        return loss


class AdamP(GroupwiseOptimizer):
    """AdamW with FTP projection. Param groups carry `anchors`: the pretrained tensor, or None to exclude."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, k=1.0, mu=1e-2,
                 project=True):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, k=k, mu=mu,
                                      project=project))
        for group in self.param_groups:
            anchors = group.pop("anchors", None) or [None] * len(group["params"])
            for p, anchor in zip(group["params"], anchors):
                if anchor is not None:
                    self.state[p]["anchor"] = anchor.detach().clone()

    @torch.no_grad()
    def update_group(self, group, params):
        """AdamW moments for all tensors of a group in fused `torch._foreach_*` ops, then the projection per
        tensor; nothing here waits for the device (no Python branch on a tensor's value)."""
        beta1, beta2 = group["betas"]
        states = [self.state[p] for p in params]
        update = adam_updates(params, states, beta1, beta2, group["lr"], group["eps"], group["weight_decay"])
        projected = []
        for p, state, step in zip(params, states, update):
            if state.get("anchor") is None or not group["project"]:
                p.sub_(step)
            else:
                projected.append((p, state, step))
        if projected:
            self._project(projected, group)

    @staticmethod
    def _project(items, group):
        """Project every anchored tensor of a group; the radii's Adam runs on all tensors' scalars at once."""
        params = [p for p, _, _ in items]
        c_t = torch._foreach_sub(params, [u for _, _, u in items])
        torch._foreach_sub_(c_t, [st["anchor"] for _, st, _ in items])
        norms = [row_l1(c) for c in c_t]
        gammas = [st.get("gamma") for _, st, _ in items]
        old = [i for i, g in enumerate(gammas) if g is not None]
        if old:
            states = [items[i][1] for i in old]
            hyper_grad = torch.stack([(row_dot(items[i][0].grad, st["prev_c"]) * st["prev_scale"]).sum()
                                      for i, st in zip(old, states)])
            hyper_grad = torch.where(hyper_grad > 0, hyper_grad * group["k"], hyper_grad)  # annealed, on the device
            m = torch.stack([st["gamma_m"] for st in states]).mul_(0.9).add_(0.1 * hyper_grad)
            v = torch.stack([st["gamma_v"] for st in states]).mul_(0.999).add_(0.001 * hyper_grad**2)
            m_hat = m / torch.tensor([1 - 0.9 ** st["step"] for st in states], device=m.device)
            v_hat = v / torch.tensor([1 - 0.999 ** st["step"] for st in states], device=m.device)
            gamma = torch.stack([gammas[i] for i in old]) - group["mu"] * m_hat / (v_hat.sqrt() + 1e-8)
            gamma = torch.minimum(gamma.clamp_min(1e-8), torch.stack([norms[i].max() for i in old]))
            for j, (i, st) in enumerate(zip(old, states)):
                st["gamma_m"], st["gamma_v"], gammas[i] = m[j], v[j], gamma[j]
        for i, (p, st, _) in enumerate(items):
            if gammas[i] is None:  # a tensor's first step: the radius starts at the anchor
                gammas[i] = torch.full((), 1e-8, device=p.device)
                st["gamma_m"] = torch.zeros((), device=p.device)
                st["gamma_v"] = torch.zeros((), device=p.device)
            st["gamma"], st["prev_c"], st["prev_scale"] = gammas[i], c_t[i], 1.0 / norms[i]
            p.copy_(st["anchor"] + (gammas[i] / norms[i]).clamp(0, 1) * c_t[i])


@register_method("ftp")
class FTP(Method):
    description = "FTP: AdamW + learned per-tensor projection toward the pretrained weights (AdamP), head excluded"
    ensemble_alphas = ALPHA_GRID
    clip_gradients = False  # the official FTP training code does not clip
    hparams = {
        "lr": Method.hparams["lr"],
        "k": HParam(1.0, "gradient annealing of positive radius hyper-gradients (1 = strongest)", ("uniform", 0.0, 1.0),
                    FRACTION),
        "mu": HParam(1e-2, "Adam step size of the radii", valid=POSITIVE),
    }

    def optimizer(self, model):
        encoder = [p for p in model.visual.parameters() if p.requires_grad]
        head = [p for p in model.head.parameters() if p.requires_grad]
        groups = [{"params": encoder, "anchors": [p.detach() for p in encoder]},
                  {"params": head, "anchors": None}]
        return AdamP(groups, lr=self.hp["lr"], weight_decay=0.0, k=self.hp["k"], mu=self.hp["mu"])
