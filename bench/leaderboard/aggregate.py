"""Group finished run records into leaderboard rows: mean, sample std and n over seeds."""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from bench.config import canonical_json


def mean_std(values: list[float]) -> tuple[float, float | None, int]:
    """Mean, sample standard deviation (ddof=1; None for one value) and count."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None, n
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)), n


@dataclass
class Row:
    method: str
    variant: str
    hparams: dict
    records: list = field(default_factory=list)
    label: str = ""

    def values(self, split: str, metric: str) -> list[float]:
        return [r["metrics"][split][metric] for r in self.records if split in r.get("metrics", {})]

    def ood_avg(self) -> list[float]:
        return [r["summary"]["ood_avg"] for r in self.records]

    def seeds(self) -> list[int]:
        return sorted(r["seed"] for r in self.records)

    def timing(self, key: str) -> list[float]:
        return [r["timing"][key] for r in self.records if r.get("timing", {}).get(key) is not None]


@dataclass
class Section:
    dataset: str
    protocol: str
    arch: str
    pretrained: str | None
    official: bool
    metric: str
    id_split: str
    ood_splits: list[str]
    rows: list[Row] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)  # built-in method -> "not run" / "incomplete (k)"


WE_VARIANT = "alpha=0.5"


def views(record: dict) -> list[dict]:
    """The rows a record contributes: its reported variant, plus a "+WE" row (weight ensemble with the initial
    model at alpha = 0.5, WiSE-FT's fixed choice) where the method evaluated one and does not report it already."""
    out = [record]
    variants = record.get("variants", {})
    if WE_VARIANT in variants and record.get("reported_variant") != WE_VARIANT:
        we = variants[WE_VARIANT]
        out.append({**record, "method": f"{record['method']}+WE", "reported_variant": WE_VARIANT,
                    "metrics": we["metrics"], "summary": we["summary"]})
    return out


def build_sections(records: list[dict], protocols: dict, unfinished: list[dict] = (), expected=()) -> list[Section]:
    """`protocols` maps protocol id -> Protocol (for split roles and metric names); `unfinished` are the configs of
    runs without a result; `expected` the built-in methods an official section should list even when not run."""
    groups: dict[tuple, dict[tuple, Row]] = defaultdict(dict)
    for r in (view for record in records for view in views(record)):
        key = (r["dataset"], r["protocol"]["id"], r["model"]["arch"], str(r["model"]["pretrained"]), bool(r["official"]))
        settings = {**r["hparams"], **{f"budget.{k}": v for k, v in r.get("config", {}).get("budget", {}).items()}}
        row_key = (r["method"], r["reported_variant"], canonical_json(settings))
        rows = groups[key]
        if row_key not in rows:
            rows[row_key] = Row(r["method"], r["reported_variant"], settings)
        rows[row_key].records.append(r)
    sections = []
    for key in sorted(groups, key=lambda k: (k[0], k[1], k[2], k[3], not k[4])):
        dataset, pid, arch, pretrained, official = key
        protocol = protocols.get(pid)
        first = next(iter(groups[key].values())).records[0]
        ood = list(protocol.ood_test_splits) if protocol else sorted(first["summary"]["ood"])
        id_split = protocol.id_test_split if protocol else "id_test"
        section = Section(dataset, pid, arch, pretrained, official, first["metric"], id_split, ood)
        rows = list(groups[key].values())
        _label_rows(rows)
        rows.sort(key=lambda row: (-mean_std(row.ood_avg())[0], row.label))
        section.rows = rows
        if official:
            present = {row.method for row in rows}
            for method in expected:
                if method in present:
                    continue
                stuck = [c for c in unfinished if c.get("method") == method and c.get("dataset") == dataset
                         and c.get("protocol") == pid and c.get("model", {}).get("arch") == arch]
                section.missing[method] = f"incomplete ({len(stuck)} unfinished)" if stuck else "not run"
        sections.append(section)
    return sections


def _label_rows(rows: list[Row]) -> None:
    """Name rows by method; where one method has several hyperparameter settings, name the differing ones."""
    by_method = defaultdict(list)
    for row in rows:
        by_method[row.method].append(row)
    for method, same in by_method.items():
        for row in same:
            label = method if row.variant == "final" else f"{method} ({row.variant})"
            if len(same) > 1:
                differing = sorted(k for k in row.hparams if len({canonical_json(o.hparams.get(k)) for o in same}) > 1)
                label += " [" + ", ".join(f"{k}={row.hparams[k]:g}" if isinstance(row.hparams[k], float)
                                          else f"{k}={row.hparams[k]}" for k in differing) + "]"
            row.label = label
