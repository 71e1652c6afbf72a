"""The one implementation of the metrics a run is ranked by: the dataset adapters score a run with it, and the
leaderboard's bootstrap recomputes the same numbers from the stored predictions with it.

Every function takes example weights `w` of shape (replicates, n): ones for the point value, draw counts for a
bootstrap replicate (how often each example was drawn). Labels, top-1 classes and group ids are integer arrays of
length n; a group id of -1 puts an example in no scored group (FMoW's region "Other", which WILDS leaves out of
the worst region). All values are percentages.
"""
from __future__ import annotations

import numpy as np
import torch

#: metric name -> whether it needs per-example group ids (stored as `groups|<split>` in the predictions file)
NEEDS_GROUPS = {"acc": False, "acc_avg": False, "F1-macro_all": False, "acc_worst_region": True}
RECOMPUTABLE = tuple(NEEDS_GROUPS)
AGREEMENT = 1e-4  # percentage points: WILDS' float32 values against these float64 ones


def ones(n: int) -> np.ndarray:
    return np.ones((1, n), np.float32)


def accuracy(w: np.ndarray, labels: np.ndarray, top1: np.ndarray, ratio=np.float64) -> np.ndarray:
    """Top-1 accuracy (%) per replicate: counts summed exactly, their ratio in `ratio` precision. Records take it in
    float32 (bit for bit what torch's `(top1 == labels).float().mean()` gave every record so far); the bootstrap in
    float64. The two differ by at most 1e-5 pp, far inside the bootstrap's check (TOLERANCE)."""
    correct = (w * (labels == top1)).sum(axis=1, dtype=np.float64)
    return (correct.astype(ratio) / w.sum(axis=1, dtype=np.float64).astype(ratio)).astype(np.float64) * 100.0


def worst_group_accuracy(w: np.ndarray, labels: np.ndarray, top1: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """The lowest accuracy (%) over the groups (ids >= 0) that hold drawn examples, per replicate: WILDS' worst
    region (its Accuracy.worst over the regions with a non-zero count, 'Other' excluded)."""
    scored = groups >= 0
    ids, inverse = np.unique(groups[scored], return_inverse=True)
    member = np.zeros((int(scored.sum()), ids.size), np.float32)
    member[np.arange(inverse.size), inverse] = 1.0
    ws = np.asarray(w)[:, scored]
    hits = (labels[scored] == top1[scored]).astype(np.float32)
    count = ws.astype(np.float64) @ member
    correct = (ws * hits).astype(np.float64) @ member
    acc = np.divide(correct, count, out=np.full_like(count, np.inf), where=count > 0) * 100.0
    return acc.min(axis=1)


def grouping(keys: np.ndarray, rows: np.ndarray | None = None) -> tuple:
    """A reusable group-by of `rows` (default: all) by key: (rows in key order, segment starts, each segment's key)."""
    rows = np.arange(keys.size) if rows is None else rows
    order = rows[np.argsort(keys[rows], kind="stable")]
    ordered = keys[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]]) if order.size else order
    return order, starts, ordered[starts]


def class_sums(wt: np.ndarray, groups: tuple, size: int) -> np.ndarray:
    """(size, replicates): per class, the summed weights of its examples; wt: (n, replicates)."""
    order, starts, classes = groups
    out = np.zeros((size, wt.shape[1]))
    if order.size:
        out[classes] = np.add.reduceat(wt[order], starts, axis=0)
    return out


def f1_parts(labels: np.ndarray, top1: np.ndarray) -> tuple:
    """Group-bys of the misses by true and by predicted class: only misses enter FN and FP."""
    miss = np.flatnonzero(labels != top1)
    return grouping(labels, miss), grouping(top1, miss)


def macro_f1_from_parts(wt: np.ndarray, true: np.ndarray, parts: tuple, size: int) -> np.ndarray:
    fn, fp = (class_sums(wt, g, size) for g in parts)
    present = true > 0
    tp = true - fn
    f1 = np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros_like(tp), where=present)
    return f1.sum(axis=0) / present.sum(axis=0) * 100.0


def macro_f1(w: np.ndarray, labels: np.ndarray, top1: np.ndarray) -> np.ndarray:
    """WILDS' F1-macro_all (%) per replicate: sklearn's f1_score(average="macro", labels=the classes present), i.e.
    per present class 2·TP / (2·TP + FP + FN), where a prediction of an absent class still misses its true class."""
    size, wt = int(max(labels.max(), top1.max())) + 1, np.asarray(w).T
    return macro_f1_from_parts(wt, class_sums(wt, grouping(labels), size), f1_parts(labels, top1), size)


def score(metric: str, w: np.ndarray, labels: np.ndarray, top1: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """`metric` per replicate; a grouped metric without group ids is a ValueError (callers say why none)."""
    if metric in ("acc", "acc_avg"):
        return accuracy(w, labels, top1)
    if metric == "F1-macro_all":
        return macro_f1(w, labels, top1)
    if metric == "acc_worst_region":
        if groups is None:
            raise ValueError("acc_worst_region needs group ids")
        return worst_group_accuracy(w, labels, top1, groups)
    raise ValueError(f"no implementation of metric {metric!r}; known: {', '.join(RECOMPUTABLE)}")


def point(metric: str, labels, top1, groups=None) -> float:
    labels, top1 = np.asarray(labels), np.asarray(top1)
    return float(score(metric, ones(labels.size), labels, top1, None if groups is None else np.asarray(groups))[0])


def expected_calibration_error(logits: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """ECE in % (Guo et al. 2017, the standard form): confidence = the largest softmax probability; 15 equal-width
    bins over (0, 1]; the sum over bins of (share of examples in the bin) x |accuracy - mean confidence|."""
    probs = logits.float().softmax(dim=1)
    return calibration_error(probs, labels, bins)


def calibration_error(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """ECE (%) of class probabilities (see expected_calibration_error)."""
    confidence, predicted = probs.float().max(dim=1)
    correct = (predicted == labels).float()
    edges = torch.linspace(0.0, 1.0, bins + 1)
    total = torch.zeros(())
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            total += inside.float().mean() * (correct[inside].mean() - confidence[inside].mean()).abs()
    return float(total) * 100.0


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Accuracy and ECE of one split: the metrics of a dataset without an official evaluator."""
    top1 = logits.argmax(1).numpy()
    acc = float(accuracy(ones(top1.size), labels.numpy(), top1, ratio=np.float32)[0])
    return {"acc": acc, "ece": expected_calibration_error(logits, labels)}
