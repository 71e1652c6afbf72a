"""Numbers the papers report, shown beside our measured rows and labelled "reported" with their source.

Only numbers verified against the paper itself belong here (shared/reference/methods.md tags them); numbers
recalled from memory never do. So far the reference verifies only relative claims from abstracts (e.g. FLYP:
+2.3 ID / +2.7 OOD macro-F1 over the iWildCam leaderboard top; AutoFT: +6.0 iWildCam, +1.5 FMoW OOD), which are not
table rows; the absolute rows of FLYP Table 1 and AutoFT Tables 1-3 still have to be checked against the PDFs
(arXiv 2212.00638, 2401.10220v2) before they are added.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reported:
    dataset: str
    protocol: str  # protocol id whose splits and metric the numbers use
    method: str
    model: str  # "ViT-B-16 (openai)"
    id_metric: float
    ood_metrics: tuple[tuple[str, float], ...]  # (split, value)
    source: str  # paper, arXiv id, table


REPORTED: tuple[Reported, ...] = ()


def reported_for(protocol_id: str) -> list[Reported]:
    return [r for r in REPORTED if r.protocol == protocol_id]
