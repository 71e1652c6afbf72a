"""AutoFT's nine loss terms (official `autoft/src/losses/learnedloss.py`), each a function of one batch.

The weighted sum sum_i w_i * l_i is the learned fine-tuning objective. The four norm terms are per-parameter means
(divided by the total parameter count N, as officially) over every trained tensor: both towers, the temperature and
the head.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.weights import summed_norms

LOSS_NAMES = ("ce", "dcm", "entropy", "flyp", "hinge", "l1init", "l1zero", "l2init", "l2zero")


def entropy_per_example(logits: torch.Tensor) -> torch.Tensor:
    return -(F.softmax(logits, dim=1) * F.log_softmax(logits, dim=1)).sum(dim=1)


def dcm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Entropy of misclassified examples only (mask detached), averaged over the whole batch."""
    wrong = (logits.argmax(dim=1) != labels).float().detach()
    return (wrong * entropy_per_example(logits)).mean()


def hinge_loss(logits: torch.Tensor, labels: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Multi-class hinge: sum over j != y of max(0, z_j - z_y + margin), averaged over the batch."""
    correct = logits.gather(1, labels[:, None])
    margins = (logits - correct + margin).scatter(1, labels[:, None], 0.0)
    return margins.clamp_min(0).sum(dim=1).mean()


def norm_terms(params, anchors) -> dict[str, torch.Tensor]:
    """l1/l2 to zero and to the initial weights, each divided by the total number of parameters (fused per-list
    ops: one kernel per list instead of four Python loops over the tensors)."""
    n = sum(p.numel() for p in params)
    drift = torch._foreach_sub(params, anchors)
    return {"l1zero": summed_norms(params, 1) / n, "l2zero": summed_norms(params, 2, power=2) / n,
            "l1init": summed_norms(drift, 1) / n, "l2init": summed_norms(drift, 2, power=2) / n}


def learned_loss(weights: dict[str, float], logits, labels, image_features, text_features, scale, params, anchors):
    """sum_i weights[i] * term_i; terms whose weight is 0 are not computed."""
    terms = {}
    if weights.get("ce"):
        terms["ce"] = F.cross_entropy(logits, labels)
    if weights.get("dcm"):
        terms["dcm"] = dcm_loss(logits, labels)
    if weights.get("entropy"):
        terms["entropy"] = entropy_per_example(logits).mean()
    if weights.get("hinge"):
        terms["hinge"] = hinge_loss(logits, labels)
    if weights.get("flyp"):
        from bench.methods.flyp import contrastive_loss

        terms["flyp"] = contrastive_loss(image_features, text_features, scale)
    if any(weights.get(k) for k in ("l1init", "l1zero", "l2init", "l2zero")):
        terms.update(norm_terms(params, anchors))
    return sum(weights[k] * v for k, v in terms.items() if weights.get(k))
