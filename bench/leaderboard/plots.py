"""Leaderboard figures (matplotlib, PNG): ID vs OOD avg per section with each method's weight-ensemble curve
(alpha from 0 = zero-shot to 1 = fine-tuned, means over seeds) and the baselines' logit-space trend; and a bar chart
of mean run time per method and phase."""
from __future__ import annotations

from pathlib import Path

from bench.leaderboard.aggregate import PHASES, Section
from bench.leaderboard.robustness import predicted_ood


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def id_ood_plot(section: Section, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 5), dpi=110)
    ids = [r.id_score for row in section.rows for r in row.records]
    fit = section.fit
    if fit and ids:
        lo, hi = min(ids) - 5, max(ids) + 5
        xs = [lo + (hi - lo) * i / 50 for i in range(51)]
        ax.plot(xs, [predicted_ood(fit, x) for x in xs], color="grey", linestyle="--", linewidth=1,
                label=f"baseline trend ({', '.join(section.roles.baselines)}; logit fit)")
    markers = "osD^v<>pPX*h"
    colours = plt.get_cmap("tab20").colors
    for i, row in enumerate(r for r in section.rows if not r.is_we):  # one colour and marker per row, in the legend
        colour, marker = colours[i % len(colours)], markers[i % len(markers)]
        curve = row.alpha_curve
        if len(curve) > 1:
            ax.plot([c[1] for c in curve], [c[2] for c in curve], linewidth=1, color=colour, alpha=0.7)
        x, y = row.columns[section.id_split].mean, row.columns["ood_avg"].mean
        ax.scatter([x], [y], s=40, color=colour, marker=marker, zorder=3, label=row.label)
    ax.set_xlabel(f"ID {section.id_split} {section.metric}")
    ax.set_ylabel(f"OOD avg {section.metric}")
    ax.set_title(f"{section.dataset} ({section.protocol}): lines = weight ensembles, alpha 0 to 1", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)  # beside, never on, points
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def timing_plot(section: Section, path: Path) -> None:
    plt = _plt()
    rows = [row for row in section.rows if not row.is_we]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2), dpi=110)
    left = [0.0] * len(rows)
    for key in PHASES:
        label = key[: -len("_s")]
        values = [row.phases[key] for row in rows]
        ax.barh([row.label for row in rows], values, left=left, label=label)
        left = [a + b for a, b in zip(left, values)]
    ax.set_xlabel("seconds per run (mean over seeds)")
    ax.legend(fontsize=7)
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
