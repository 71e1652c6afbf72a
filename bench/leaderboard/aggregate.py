"""The leaderboard's one aggregation: records -> sections of rows with every statistic the page, the CSV/JSON
exports and the plots show (means, sample std and n per column, the baseline fit and effective robustness, the
weight-ensemble curves, timings per device, what each method selected) and the status of methods without a
result. Formatting modules only read these; none of them computes a statistic of its own."""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from bench.config import canonical_json
from bench.leaderboard.reported import reported_for
from bench.leaderboard.robustness import baseline_points, effective_robustness, fit_line

from bench.results.record import WEIGHT_ENSEMBLE_VARIANT as WE_VARIANT, RunRecord

ECE_PREFIX = "ece:"  # row columns of the expected calibration error per split
TIMING_KEYS = ("train_s", "search_s", "eval_s", "total_s", "train_images_per_s")
PHASES = ("setup_s", "search_s", "train_s", "eval_s")


def mean_std(values: list[float]) -> tuple[float, float | None, int]:
    """Mean, sample standard deviation (ddof=1; None for one value) and count."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None, n
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)), n


@dataclass(frozen=True)
class Stat:
    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return mean_std(list(self.values))[0] if self.values else None

    @property
    def std(self) -> float | None:
        return mean_std(list(self.values))[1] if self.values else None


@dataclass
class Row:
    method: str
    variant: str
    hparams: dict
    records: list = field(default_factory=list)
    label: str = ""
    columns: dict[str, Stat] = field(default_factory=dict)  # id split, each OOD split, "ood_avg", "effective_robustness"
    alpha_curve: list[tuple[float, float, float]] = field(default_factory=list)  # (alpha, mean ID, mean OOD avg)
    phases: dict[str, float] = field(default_factory=dict)  # mean seconds per phase (timing plot)
    selected: list[tuple[str, str]] = field(default_factory=list)  # (which runs, settings and what they selected)
    vs_ft: object = None  # bench.leaderboard.bootstrap.VsFt: OOD avg minus FT's with its interval (set by collect)

    @property
    def is_we(self) -> bool:
        return self.method.endswith("+WE")

    def seeds(self) -> list[int]:
        return sorted(r.seed for r in self.records)

    def ood_avg(self) -> list[float]:
        return [r.ood_avg for r in self.records]


@dataclass(frozen=True)
class Roles:
    """Which methods the leaderboard measures others against, as the method classes declare it: the reference
    row of the paired interval and the timing ratios (`leaderboard_reference`) and the effective-robustness trend's
    baselines (`trend_baseline`)."""
    reference: str | None = None
    baselines: tuple[str, ...] = ()

    @classmethod
    def declared(cls) -> "Roles":
        from bench.methods import METHODS

        classes = {name: METHODS.get(name) for name in METHODS.names()}
        declared = lambda c, attr: bool(c.__dict__.get(attr, False))  # a subclass of FT does not inherit the role
        reference = sorted(n for n, c in classes.items() if declared(c, "leaderboard_reference"))
        return cls(reference[0] if reference else None,
                   tuple(sorted(n for n, c in classes.items() if declared(c, "trend_baseline"))))


@dataclass(frozen=True)
class Missing:
    method: str
    status: str  # "not run" | "incomplete"
    unfinished: int = 0


@dataclass
class TimingEntry:
    label: str
    method: str
    device: str
    n: int
    device_hours: float  # the row's own runs plus every run they consumed, each counted once
    input_hours: float  # of which: the consumed runs (soups, Model Stock, post-hoc methods)
    peak_mb: float | None
    means: dict[str, float | None]


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
    missing: list[Missing] = field(default_factory=list)
    fit: tuple[float, float] | None = None
    baseline_points: int = 0
    timing: list[TimingEntry] = field(default_factory=list)
    seeds_wanted: int | None = None
    reported: list = field(default_factory=list)  # bench.leaderboard.reported.Reported rows of this section
    data_copies: dict[str, int] = field(default_factory=dict)  # which copy of the data -> number of runs
    roles: "Roles" = None
    papers_report: bool = True  # the protocol is one papers report numbers on (not the embedded testbed)


def data_copy(data: dict | None) -> str:
    """The copy of the data a run used (its record's `data`), in words: its data card (sha256, sources) or why it
    has none."""
    if data is None:
        return "not recorded (a run from before data cards)"
    if data.get("embedded"):
        return "the embedded testbed (generated by bench's own code)"
    if not data.get("card"):
        return "an unverified copy (no data card: `bench data verify` writes one)"
    sources = data.get("sources")
    origin = ", ".join(f"{k} from {v}" for k, v in sorted(sources.items())) if isinstance(sources, dict) else sources
    return f"data card {data['card'][:12]} ({origin}; verified {str(data.get('verified'))[:10]})"


def views(record: RunRecord) -> list[RunRecord]:
    """The rows a record contributes: its reported variant, plus a "+WE" row (weight ensemble with the initial
    model at alpha = 0.5, WiSE-FT's fixed choice) where the method evaluated one and does not report it already."""
    out = [record]
    if WE_VARIANT in record.variants and record.reported_variant != WE_VARIANT:
        we = record.variants[WE_VARIANT]
        out.append(record.replace(method=f"{record.method}+WE", reported_variant=WE_VARIANT, metrics=we["metrics"],
                                  summary=we["summary"]))
    return out


def build_sections(records: list[RunRecord], protocols: dict, unfinished: list[dict] = (), expected=(),
                   describe=None, roles: "Roles | None" = None) -> list[Section]:
    """`protocols` maps protocol id -> Protocol (split roles, metric, seeds); `unfinished` are the configs of runs
    without a result; `expected` the built-in methods an official section lists even when not run; `describe(method,
    method_info)` says what a run selected (the method's `selected` hook), or None; `roles` which methods are the
    reference row and the trend's baselines (as the methods declare them)."""
    roles = roles or Roles.declared()
    groups: dict[tuple, dict[tuple, Row]] = defaultdict(dict)
    for r in (view for record in records for view in views(record)):
        key = (r.dataset, r.protocol_id, r.arch, str(r.model["pretrained"]), bool(r.official))
        settings = {**r.hparams, **{f"budget.{k}": v for k, v in r.config.get("budget", {}).items()}}
        row_key = (r.method, r.reported_variant, canonical_json(settings))
        rows = groups[key]
        if row_key not in rows:
            rows[row_key] = Row(r.method, r.reported_variant, settings)
        rows[row_key].records.append(r)
    sections = []
    for key in sorted(groups, key=lambda k: (k[0], k[1], k[2], k[3], not k[4])):
        dataset, pid, arch, pretrained, official = key
        protocol = protocols.get(pid)
        first = next(iter(groups[key].values())).records[0]
        ood = list(protocol.ood_test_splits) if protocol else sorted(first.summary["ood"])
        id_split = protocol.id_test_split if protocol else "id_test"
        section = Section(dataset, pid, arch, pretrained, official, first.metric, id_split, ood,
                          seeds_wanted=len(protocol.seeds) if protocol else None, roles=roles,
                          papers_report=getattr(protocol, "papers_report", True))
        rows = list(groups[key].values())
        _label_rows(rows)
        points = baseline_points(rows, roles.baselines)
        section.fit, section.baseline_points = fit_line(points), len(points)
        for row in rows:
            _row_statistics(row, section, describe)
        rows.sort(key=lambda row: (-row.columns["ood_avg"].mean, row.label))
        section.rows = rows
        section.timing = _timing(rows)
        runs = {r.run_id: r for row in rows for r in row.records}  # +WE views share their run
        for record in runs.values():
            copy = data_copy(record.data)
            section.data_copies[copy] = section.data_copies.get(copy, 0) + 1
        if official:
            section.missing = _missing(rows, expected, unfinished, dataset, pid, arch)
            section.reported = reported_for(pid, arch, pretrained)
        sections.append(section)
    return sections


def _row_statistics(row: Row, section: Section, describe) -> None:
    m, fit = section.metric, section.fit
    for split in (section.id_split, *section.ood_splits):
        row.columns[split] = Stat(tuple(r.metrics[split][m] for r in row.records if split in r.metrics))
    row.columns["ood_avg"] = Stat(tuple(row.ood_avg()))
    if fit:
        row.columns["effective_robustness"] = Stat(tuple(
            effective_robustness(fit, r.id_score, r.ood_avg) for r in row.records))
    for split in (section.id_split, *section.ood_splits):  # calibration, where the records have it
        values = tuple(r.metrics[split]["ece"] for r in row.records if "ece" in r.metrics.get(split, {}))
        if values:
            row.columns[f"{ECE_PREFIX}{split}"] = Stat(values)
    row.alpha_curve = _alpha_curve(row)
    row.phases = {key: (Stat(tuple(_timings(row.records, key))).mean or 0.0) for key in PHASES}
    if not row.is_we:
        row.selected = _selected(row, describe)


def _timings(records, key) -> list[float]:
    return [r.timing[key] for r in records if r.timing.get(key) is not None]


def _alpha_curve(row: Row) -> list[tuple[float, float, float]]:
    """(alpha, mean ID, mean OOD avg) for every alpha all of a row's runs evaluated."""
    alphas = None
    for r in row.records:
        have = {v["alpha"] for v in r.variants.values() if v.get("alpha") is not None}
        alphas = have if alphas is None else alphas & have
    out = []
    for alpha in sorted(alphas or ()):
        chosen = [next(v for v in r.variants.values() if v.get("alpha") == alpha) for r in row.records]
        out.append((alpha, mean_std([v["summary"]["id"] for v in chosen])[0],
                    mean_std([v["summary"]["ood_avg"] for v in chosen])[0]))
    return out


def _selected(row: Row, describe) -> list[tuple[str, str]]:
    """One "all seeds" line (settings, and what the runs selected when they agree), else one line per seed."""
    from bench.config import short_value

    settings = ", ".join(f"{k}={short_value(v)}" for k, v in sorted(row.hparams.items()) if not k.startswith("budget."))
    chosen = {r.seed: describe(row.method, r.method_info or {}) if describe else None for r in row.records}
    texts = set(chosen.values())
    if len(texts) == 1:
        text = next(iter(texts))
        return [("all seeds", settings + (f"; {text}" if text else "") if settings else text or "none")]
    return [(f"seed {seed}", chosen[seed] or settings or "none") for seed in sorted(chosen)]


def _timing(rows: list[Row]) -> list[TimingEntry]:
    """One entry per (row, device): means of each timing over that device's runs."""
    device = lambda r: r.env.get("device", "unknown device")
    out = []
    for row in rows:
        for name in sorted({device(r) for r in row.records}):
            runs = [r for r in row.records if device(r) == name]
            peaks = [r.timing["peak_memory"]["mb"] for r in runs if r.timing.get("peak_memory", {}).get("mb") is not None]
            consumed = {k: v for r in runs for k, v in r.timing.get("inputs_total_s", {}).items()}
            own = sum(r.timing.get("total_s", 0.0) for r in runs)
            out.append(TimingEntry(row.label, row.method, name, len(runs),
                                   (own + sum(consumed.values())) / 3600.0, sum(consumed.values()) / 3600.0,
                                   Stat(tuple(peaks)).mean,
                                   {key: Stat(tuple(_timings(runs, key))).mean for key in TIMING_KEYS}))
    return out


def _missing(rows, expected, unfinished, dataset, pid, arch) -> list[Missing]:
    present = {row.method for row in rows}
    out = []
    for method in sorted(expected):
        if method in present:
            continue
        stuck = [c for c in unfinished if c.get("method") == method and c.get("dataset") == dataset
                 and c.get("protocol") == pid and c.get("model", {}).get("arch") == arch]
        out.append(Missing(method, "incomplete", len(stuck)) if stuck else Missing(method, "not run"))
    return out


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
