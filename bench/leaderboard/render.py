"""Markdown for the leaderboard: per dataset/protocol/model a results table (with effective robustness and the
reason for every empty cell), the selected hyperparameters, plots and a timing table. Deterministic: the same run
store always gives the same bytes (no dates, everything sorted)."""
from __future__ import annotations

from collections import defaultdict

from tabulate import tabulate

from bench.leaderboard.aggregate import ECE_PREFIX, Section, Stat, Roles
from bench.leaderboard.bootstrap import B, REFERENCE
from bench.leaderboard.timing import step_benchmark_table, timing_table


def cell(stat: Stat | None, digits: int = 1) -> str:
    if stat is None or not stat.n:
        return "–"
    mean, std = stat.mean, stat.std
    if abs(mean) < 0.5 * 10**-digits:
        mean = 0.0  # no "-0.0"
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


VS_FT = "OOD avg − FT [95 % CI]"


def _signed(value: float) -> str:
    return f"{0.0 if abs(value) < 0.05 else value:+.1f}"  # no "-0.0"


def vs_ft_cell(vs) -> str:
    """'+1.8 [+0.9, +2.7]*': difference to FT, its 95 % interval, * where the interval excludes 0."""
    if vs is None or vs.low is None:
        return REFERENCE if vs is not None and vs.note == REFERENCE else "–"
    return f"{_signed(vs.diff)} [{_signed(vs.low)}, {_signed(vs.high)}]" + ("*" if vs.excludes_zero else "")


def results_table(section: Section) -> str:
    m = section.metric
    headers = ["method", "n", f"ID {section.id_split} {m}", *[f"{s} {m}" for s in section.ood_splits],
               f"OOD avg {m}", VS_FT, "eff. robustness"]
    body = []
    for row in section.rows:
        body.append([row.label, str(len(row.records)), cell(row.columns[section.id_split]),
                     *[cell(row.columns[s]) for s in section.ood_splits], cell(row.columns["ood_avg"]),
                     vs_ft_cell(row.vs_ft),
                     cell(row.columns["effective_robustness"]) if section.fit else "– (no baseline fit)"])
    for missing in section.missing:
        body.append([missing.method, "0", *[missing.status] * (len(headers) - 2)])
    return tabulate(body, headers=headers, tablefmt="github", disable_numparse=True,
                    colalign=["left"] + ["right"] * (len(headers) - 1))


def calibration_table(section: Section) -> list[str]:
    splits = [section.id_split, *section.ood_splits]
    rows = [row for row in section.rows if any(f"{ECE_PREFIX}{s}" in row.columns for s in splits)]
    if not rows:
        return ["Calibration: no record of this section has ECE (runs before bench 0.2).", ""]
    body = [[row.label, str(len(row.records)), *[cell(row.columns.get(f"{ECE_PREFIX}{s}")) for s in splits]]
            for row in rows]
    headers = ["method", "n", *[f"ECE {s} (%)" for s in splits]]
    return ["Calibration: expected calibration error (15 equal-width confidence bins; lower is better), mean ± std "
            "over seeds:", "", tabulate(body, headers=headers, tablefmt="github", disable_numparse=True,
                                        colalign=["left"] + ["right"] * (len(headers) - 1)), ""]


def hyperparameter_lines(section: Section) -> list[str]:
    body = [[row.label, runs, text] for row in section.rows if not row.is_we for runs, text in row.selected]
    return [tabulate(body, headers=["method", "runs", "hyperparameters"], tablefmt="github", disable_numparse=True), ""]


def vs_ft_explanation(section: Section) -> list[str]:
    """How the interval column is computed, and why a row has none."""
    ft = next((row for row in section.rows if row.vs_ft is not None and row.vs_ft.note == REFERENCE), None)
    if ft is None:
        notes = sorted({row.vs_ft.note for row in section.rows if row.vs_ft is not None}) or ["not computed"]
        return [f"{VS_FT}: – throughout ({'; '.join(notes)}).", ""]
    metric = ft.vs_ft.metric
    text = (f"{VS_FT}: the row's OOD avg minus that of `{ft.label}` on the seeds both have, recomputed from each run's "
            f"stored per-example top-1 predictions and labels ({metric}, percentage points); in brackets the 95 % "
            f"percentile interval of a paired bootstrap with B = {B} replicates and a fixed numpy seed: each replicate "
            "draws those seeds with replacement and, within each OOD split, as many test examples as the split has, "
            "with replacement (the same examples for the row, FT and every drawn seed); the statistic is the mean over "
            "OOD splits of the metric difference, averaged over the drawn seeds. * = the interval excludes 0. It "
            "covers the sampling of test examples and seeds, not the choice of hyperparameters.")
    if metric != section.metric:
        text += (f" {section.metric} has no implementation in bench/results/metrics.py, so this column compares "
                 f"top-1 accuracy instead (interval_metric = {metric} in the CSV/JSON).")
    by_note = defaultdict(list)
    for row in section.rows:
        vs = row.vs_ft
        if vs is not None and vs.note and vs.note != REFERENCE:
            by_note[vs.note].append(row.label)
        elif vs is not None and vs.low is not None and len(vs.seeds) < len(row.records):
            by_note[f"interval on seeds {list(vs.seeds)} only (those FT also has)"].append(row.label)
    lines = [f"- {', '.join(labels)}: {note}." for note, labels in by_note.items()]
    return [text, ""] + (["No interval (–) or a partial one:", ""] + lines + [""] if lines else [])


def er_explanation(section: Section) -> str:
    base = " and ".join(section.roles.baselines)
    fit, n_points = section.fit, section.baseline_points
    if fit is None:
        return (f"Effective robustness needs a baseline trend: the per-seed points of {base} with two distinct ID "
                "accuracies; this section has fewer, so that column is empty.")
    return (f"Effective robustness = OOD avg minus the OOD avg that the baseline trend predicts at the same ID "
            f"accuracy; the trend is logit(OOD avg) = a·logit(ID) + b, least squares through the {n_points} per-seed "
            f"points of {base} (here a = {fit[0]:.3f}, b = {fit[1]:.3f}); percentage points, mean ± std over seeds "
            "(Taori et al., 2020).")


def reported_table(section: Section) -> list[str]:
    if not section.papers_report or not section.official:
        return []
    if not section.reported:
        return ["Reported by the official repositories: no row for this model; only values read in an official "
                "repository file are shown (bench/leaderboard/reported.py).", ""]
    m = section.metric
    headers = ["reported (not measured here)", f"ID {section.id_split} {m}", *[f"{s} {m}" for s in section.ood_splits],
               "source", "note", "their protocol", "differs from this section's"]
    body = []
    for r in section.reported:
        ood = dict(r.ood_metrics)
        body.append([f"reported: {r.method}" + (" ≠" if r.differs else ""),
                     "–" if r.id_metric is None else f"{r.id_metric:.2f}",
                     *[f"{ood[s]:.2f}" if s in ood else "–" for s in section.ood_splits], r.source, r.note,
                     r.protocol_facts or "not stated", r.differs or "no known difference"])
    return ["Reported by the official repositories (their code, data copies and budgets; not comparable run for run; "
            "never part of our means; \"–\": not reported under this metric; \"≠\": a row whose protocol differs "
            "from this section's, as its last column says):", "",
            tabulate(body, headers=headers, tablefmt="github", disable_numparse=True), ""]


def notes(section: Section) -> list[str]:
    out = [f"- {m.method}: {m.unfinished} unfinished run(s), no result yet "
           "(re-running the same `bench run` resumes them)." for m in section.missing if m.status == "incomplete"]
    wanted = section.seeds_wanted
    for row in section.rows:
        if wanted and len(row.records) < wanted:
            out.append(f"- {row.label}: {len(row.records)} of {wanted} protocol seeds finished (seeds {row.seeds()}); "
                       "its mean is over those only.")
    return out


def data_line(section: Section) -> str:
    copies = sorted(section.data_copies.items())
    if len(copies) == 1:
        n = copies[0][1]
        return f"Data: {copies[0][0]}, for {'its 1 run' if n == 1 else f'all {n} runs'}."
    return ("Data: MIXED copies — " + "; ".join(f"{copy}: {n} runs" for copy, n in copies)
            + ". Rows may not be comparable.")


def section_slug(section: Section) -> str:
    raw = f"{section.dataset}-{section.protocol}-{section.arch}-{section.pretrained}-{'official' if section.official else 'unofficial'}"
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in raw)


def render(sections: list[Section], protocols: dict, n_runs: int, incomplete: int, assets: str | None = None,
           step_benchmarks: list[dict] | None = None, problems: list[tuple[str, str]] = (),
           calibration: bool = False) -> str:
    lines = ["# Leaderboard", "",
             f"Generated by `bench leaderboard` from {n_runs} finished runs in the run store"
             + (f" ({incomplete} unfinished runs ignored)" if incomplete else "") + ". Do not edit by hand."
             + (f" Tables as CSV and JSON: [{assets}/results.csv]({assets}/results.csv), "
                f"[{assets}/results.json]({assets}/results.json)." if assets else ""), ""]
    if problems:
        lines += [f"{len(problems)} finished run(s) left out because their record fails the schema "
                  "(bench/results/schema.py; fix or delete the folder):", ""]
        lines += [f"- `{where}`: {reason}" for where, reason in problems] + [""]
    if not sections:
        lines += ["No finished runs yet: `bench run --method ft` adds one.", ""]
    for s in sections:
        p = protocols.get(s.protocol)
        title = f"## {s.dataset} — protocol {s.protocol}, model {s.arch} ({s.pretrained})"
        lines += [title + ("" if s.official else " — UNOFFICIAL (protocol settings overridden)"), ""]
        label = p.metric_label if p else s.metric
        lines += [f"Metric: {s.metric} = {label}; mean ± sample std over seeds, n = number of seeds. "
                  f"ID = {s.id_split}; OOD avg = unweighted mean of the {len(s.ood_splits)} OOD test columns. "
                  f"Model selection: {p.selection if p else 'see records'}; OOD test data is never used for "
                  "training, search or selection. Rows sorted by OOD avg; \"+WE\" rows are the weight ensemble with "
                  "the zero-shot model at alpha = 0.5; \"not run\" / \"incomplete\" rows name built-in methods "
                  "without a finished run here.", ""]
        lines += [results_table(s), ""]
        lines += [data_line(s), ""]
        lines += notes(s) + ([""] if notes(s) else [])
        lines += vs_ft_explanation(s)
        lines += [er_explanation(s), ""]
        if calibration:
            lines += calibration_table(s)
        lines += reported_table(s)
        if assets:
            slug = section_slug(s)
            lines += [f"![ID vs OOD]({assets}/{slug}-id-ood.png) ![timing]({assets}/{slug}-timing.png)", ""]
        lines += ["Selected hyperparameters:", ""] + hyperparameter_lines(s)
        lines += ["Timing (mean over seeds per device; in brackets the ratio to FT on the same device — timings of "
                  "different devices are never divided; search is AutoFT's outer loop, apart from its final "
                  "fine-tune; +WE rows share their method's runs):", ""]
        lines += [timing_table(s), ""]
    if step_benchmarks:
        lines += ["## Per-step cost (pytest-benchmark)", "",
                  "One training step (loss, backward, clipping where the method clips, optimiser step) of each method "
                  "on the testbed model at batch 64, from `python -m pytest -o addopts= benchmarks/bench_steps.py "
                  "--benchmark-only --benchmark-json runs/benchmarks/steps-cpu.json`; ratios are to FT in the same "
                  "file. WiSE-FT's training step is FT's own, so the gap between those two rows shows the measurement "
                  "noise of the machine.", "", step_benchmark_table(step_benchmarks, Roles.declared().reference), ""]
    return "\n".join(lines)
