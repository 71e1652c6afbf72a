"""CSV and JSON export of the aggregated tables (long format: one line per row, split and statistic; the ood_avg
line also carries the row's difference to FT and its 95 % paired-bootstrap interval, bench/leaderboard/bootstrap.py)."""
from __future__ import annotations

import csv
import io
import json

from bench.leaderboard.aggregate import ECE_PREFIX, Section

FIELDS = ["dataset", "protocol", "model", "pretrained", "official", "method", "variant", "n", "seeds", "column",
          "metric", "mean", "std", "diff_vs_ft", "ci_low", "ci_high", "interval_metric", "interval_note"]
INTERVAL = FIELDS[-5:]


def _interval(row) -> dict:
    """The ood_avg line's interval fields: empty with a note (why none, or "reference" on FT's row)."""
    vs = row.vs_ft
    if vs is None:
        return dict.fromkeys(INTERVAL)
    rounded = [None if v is None else round(v, 6) for v in (vs.diff, vs.low, vs.high)]
    note = vs.note or "paired seeds " + " ".join(map(str, vs.seeds))
    return dict(zip(INTERVAL, [*rounded, vs.metric, note]))


def table_rows(sections: list[Section]) -> list[dict]:
    out = []
    for s in sections:
        for row in s.rows:
            for column, stat in row.columns.items():
                if not stat.n:
                    continue
                mean, std, n = stat.mean, stat.std, stat.n
                out.append({"dataset": s.dataset, "protocol": s.protocol, "model": s.arch, "pretrained": s.pretrained,
                            "official": s.official, "method": row.label, "variant": row.variant, "n": n,
                            "seeds": " ".join(map(str, row.seeds())), "column": column.removeprefix(ECE_PREFIX),
                            "metric": "ece" if column.startswith(ECE_PREFIX) else s.metric,
                            "mean": round(mean, 6), "std": None if std is None else round(std, 6),
                            **(_interval(row) if column == "ood_avg" else dict.fromkeys(INTERVAL))})
    return out


def to_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def to_json(rows: list[dict]) -> str:
    return json.dumps(rows, indent=1, sort_keys=True) + "\n"
