"""Exports of the aggregated tables: results.csv (long format: one line per row, split and statistic; the ood_avg
line also carries the row's difference to FT and its 95 % paired-bootstrap interval, bench/leaderboard/bootstrap.py)
and results.json for machines (RESULTS_SCHEMA, documented in docs/records.md): rows named by method id, variant and
hyperparameters, per-seed values, means, standard deviations and errors, the interval, and each row's provenance."""
from __future__ import annotations

import csv
import io
import json
import math

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


RESULTS_SCHEMA = "bench-results/2"
_NUMBER = {"type": ["number", "null"]}
_STAT = {"type": "object", "required": ["n", "mean", "std", "se"],
         "properties": {"n": {"type": "integer", "minimum": 1}, "mean": {"type": "number"}, "std": _NUMBER, "se": _NUMBER}}
_STRINGS = {"type": "array", "items": {"type": "string"}}
RESULTS_JSON_SCHEMA = {  # docs/records.md explains each field
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object", "required": ["schema", "rows"], "additionalProperties": False,
    "properties": {
        "schema": {"const": RESULTS_SCHEMA},
        "rows": {"type": "array", "items": {
            "type": "object", "additionalProperties": False,
            "required": ["dataset", "protocol", "model", "official", "metric", "id_split", "ood_splits", "method",
                         "weight_ensemble", "variant", "hyperparameters", "label", "seeds", "per_seed", "summary",
                         "vs_reference", "provenance"],
            "properties": {
                "dataset": {"type": "string"}, "protocol": {"type": "string", "pattern": "^.+@[0-9]+$"},
                "model": {"type": "object", "required": ["arch", "pretrained"]},
                "official": {"type": "boolean"}, "metric": {"type": "string"}, "id_split": {"type": "string"},
                "ood_splits": _STRINGS, "method": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]*$"},
                "weight_ensemble": {"type": "boolean"}, "variant": {"type": "string"},
                "hyperparameters": {"type": "object"}, "label": {"type": "string"},
                "seeds": {"type": "array", "items": {"type": "integer"}},
                "per_seed": {"type": "object", "additionalProperties": {
                    "type": "object", "required": ["ood_avg"], "additionalProperties": {"type": "number"}}},
                "summary": {"type": "object", "required": ["ood_avg"], "additionalProperties": _STAT},
                "vs_reference": {"type": ["object", "null"], "required": ["diff", "low", "high", "metric", "note"]},
                "provenance": {"type": "object", "required": ["run_ids", "bench_versions", "git_shas", "data_cards",
                                                              "weights_sha256", "packages"],
                               "properties": {"run_ids": {"type": "array", "minItems": 1,
                                                          "items": {"type": "string", "pattern": "^[0-9a-f]+$"}}}},
            }}},
    },
}


def _summary(stat) -> dict:
    se = stat.std / math.sqrt(stat.n) if stat.std is not None and stat.n > 1 else None
    return {"n": stat.n, "mean": round(stat.mean, 6), "std": None if stat.std is None else round(stat.std, 6),
            "se": None if se is None else round(se, 6)}


def _per_seed(row, section) -> dict:
    """seed -> the headline metric on the ID split, each OOD split and their average (the row's own runs)."""
    out = {}
    for r in sorted(row.records, key=lambda r: r.seed):
        values = {split: round(r.metrics[split][section.metric], 6) for split in (section.id_split, *section.ood_splits)
                  if split in r.metrics}
        out[str(r.seed)] = {**values, "ood_avg": round(r.ood_avg, 6)}
    return out


def _provenance(records) -> dict:
    sorted_set = lambda values: sorted({v for v in values if v is not None})
    return {"run_ids": sorted(r.run_id for r in records),
            "bench_versions": sorted_set(r.bench_version for r in records),
            "git_shas": sorted_set((r.env.get("git") or {}).get("sha") for r in records),
            "data_cards": sorted_set((r.data or {}).get("card") for r in records),
            "weights_sha256": sorted_set(r.model.get("weights_sha256") for r in records),
            "packages": {name: sorted_set((r.env.get("packages") or {}).get(name) for r in records)
                         for name in ("torch", "open_clip_torch")}}


def results_document(sections: list[Section]) -> dict:
    """results.json: the same aggregation as the tables, one entry per row (no generation date, so the file
    regenerates byte-identically from the same runs)."""
    rows = []
    for s in sections:
        for row in s.rows:
            rows.append({
                "dataset": s.dataset, "protocol": s.protocol, "model": {"arch": s.arch, "pretrained": s.pretrained},
                "official": s.official, "metric": s.metric, "id_split": s.id_split, "ood_splits": list(s.ood_splits),
                "method": row.method.removesuffix("+WE"), "weight_ensemble": row.is_we, "variant": row.variant,
                "hyperparameters": row.hparams, "label": row.label, "seeds": row.seeds(),
                "per_seed": _per_seed(row, s),
                "summary": {column.replace(ECE_PREFIX, "ece:"): _summary(stat) for column, stat in row.columns.items()
                            if stat.n},
                "vs_reference": dict(zip(["diff", "low", "high", "metric", "note"],
                                         [_interval(row)[k] for k in INTERVAL])) if row.vs_ft is not None else None,
                "provenance": _provenance(row.records)})
    return {"schema": RESULTS_SCHEMA, "rows": rows}


def results_json(sections: list[Section]) -> str:
    return json.dumps(results_document(sections), indent=1, sort_keys=True) + "\n"
