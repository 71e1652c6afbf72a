"""Effective robustness (Taori et al., 2020): how far a model's OOD accuracy lies above what baseline models of
the same ID accuracy reach. The baseline trend is a line in logit space, logit(OOD) = a * logit(ID) + b, fitted by
least squares through the per-seed (ID, OOD avg) points of the standard ID-trained baselines (the methods that
declare `trend_baseline`: FT and LP)."""
from __future__ import annotations

import math

EPS = 1e-4


def logit(percent: float) -> float:
    p = min(max(percent / 100.0, EPS), 1 - EPS)
    return math.log(p / (1 - p))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def fit_line(points: list[tuple[float, float]]) -> tuple[float, float] | None:
    """Least-squares (slope, intercept) of logit(OOD) on logit(ID); None without two distinct ID values."""
    xs = [logit(i) for i, _ in points]
    ys = [logit(o) for _, o in points]
    if len(set(round(x, 12) for x in xs)) < 2:
        return None
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return slope, my - slope * mx


def predicted_ood(fit: tuple[float, float], id_percent: float) -> float:
    slope, intercept = fit
    return 100.0 * sigmoid(slope * logit(id_percent) + intercept)


def effective_robustness(fit: tuple[float, float], id_percent: float, ood_percent: float) -> float:
    """OOD accuracy above the baseline trend at the same ID accuracy, in percentage points."""
    return ood_percent - predicted_ood(fit, id_percent)


def baseline_points(rows, baselines) -> list[tuple[float, float]]:
    return [(r.id_score, r.ood_avg) for row in rows if row.method in baselines for r in row.records]
