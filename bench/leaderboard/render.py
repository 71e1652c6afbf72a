"""Markdown for the leaderboard: per dataset/protocol/model a results table (with effective robustness and the
reason for every empty cell), the selected hyperparameters, plots and a timing table. Deterministic: the same run
store always gives the same bytes (no dates, everything sorted)."""
from __future__ import annotations

from tabulate import tabulate

from bench.leaderboard.aggregate import Row, Section, mean_std
from bench.leaderboard.robustness import BASELINES, baseline_points, effective_robustness, fit_line
from bench.leaderboard.timing import step_benchmark_table, timing_table


def cell(values: list[float], digits: int = 1) -> str:
    if not values:
        return "–"
    mean, std, n = mean_std(values)
    if abs(mean) < 0.5 * 10**-digits:
        mean = 0.0  # no "-0.0"
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def er_values(row: Row, fit) -> list[float]:
    return [effective_robustness(fit, r["summary"]["id"], r["summary"]["ood_avg"]) for r in row.records] if fit else []


def results_table(section: Section, fit) -> str:
    m = section.metric
    headers = ["method", "n", f"ID {section.id_split} {m}", *[f"{s} {m}" for s in section.ood_splits],
               f"OOD avg {m}", "eff. robustness"]
    body = []
    for row in section.rows:
        body.append([row.label, str(len(row.records)), cell(row.values(section.id_split, m)),
                     *[cell(row.values(s, m)) for s in section.ood_splits], cell(row.ood_avg()),
                     cell(er_values(row, fit)) if fit else "– (no baseline fit)"])
    for method, reason in sorted(section.missing.items()):
        body.append([method, "0", *[reason.split(" (")[0]] * (len(headers) - 2)])
    return tabulate(body, headers=headers, tablefmt="github", disable_numparse=True,
                    colalign=["left"] + ["right"] * (len(headers) - 1))


def _fmt(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def hyperparameter_lines(section: Section) -> list[str]:
    body = []
    for row in section.rows:
        if row.method.endswith("+WE"):
            continue
        searched = [r for r in row.records if r.get("method_info", {}).get("autoft")]
        if searched:
            for r in sorted(searched, key=lambda r: r["seed"]):
                obj = r["method_info"]["autoft"]["objective"]
                weights = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(obj["weights"].items()))
                body.append([row.label, f"seed {r['seed']}", f"learned: {weights}; lr={_fmt(obj['lr'])}, "
                             f"wd={_fmt(obj['weight_decay'])}, data seed {obj['seed']}"])
        else:
            settings = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(row.hparams.items()) if not k.startswith("budget."))
            chosen = sorted({_fmt(r["method_info"]["linear_probe"]["C"]) for r in row.records
                             if (r.get("method_info") or {}).get("linear_probe")})
            if chosen:
                settings += f"; C chosen on ID val: {', '.join(chosen)}"
            body.append([row.label, "all seeds", settings or "none"])
    return [tabulate(body, headers=["method", "runs", "hyperparameters"], tablefmt="github", disable_numparse=True), ""]


def er_explanation(section: Section, fit, n_points: int) -> str:
    base = " and ".join(BASELINES)
    if fit is None:
        return (f"Effective robustness needs a baseline trend: the per-seed points of {base} with two distinct ID "
                "accuracies; this section has fewer, so that column is empty.")
    return (f"Effective robustness = OOD avg minus the OOD avg that the baseline trend predicts at the same ID "
            f"accuracy; the trend is logit(OOD avg) = a·logit(ID) + b, least squares through the {n_points} per-seed "
            f"points of {base} (here a = {fit[0]:.3f}, b = {fit[1]:.3f}); percentage points, mean ± std over seeds "
            "(Taori et al., 2020).")


def reported_table(section: Section) -> list[str]:
    from bench.leaderboard.reported import reported_for

    if section.dataset == "tinyshift":
        return []
    rows = reported_for(section.protocol)
    if not rows:
        return ["Reported by the papers: no row yet; only numbers verified against the papers are shown "
                "(see bench/leaderboard/reported.py).", ""]
    m = section.metric
    headers = ["reported (not measured here)", "model", f"ID {section.id_split} {m}",
               *[f"{s} {m}" for s in section.ood_splits], "source"]
    body = [[f"reported: {r.method}", r.model, f"{r.id_metric:.1f}",
             *[f"{dict(r.ood_metrics)[s]:.1f}" if s in dict(r.ood_metrics) else "–" for s in section.ood_splits],
             r.source] for r in rows]
    return ["Reported by the papers (their code, data copies and budgets; not comparable run for run):", "",
            tabulate(body, headers=headers, tablefmt="github", disable_numparse=True), ""]


def notes(section: Section, protocol) -> list[str]:
    out = [f"- {method}: {reason[len('incomplete ('):-len(' unfinished)')]} unfinished run(s), no result yet "
           "(re-running the same `bench run` resumes them)."
           for method, reason in sorted(section.missing.items()) if reason.startswith("incomplete")]
    wanted = len(protocol.seeds) if protocol else None
    for row in section.rows:
        if wanted and len(row.records) < wanted:
            out.append(f"- {row.label}: {len(row.records)} of {wanted} protocol seeds finished (seeds {row.seeds()}); "
                       "its mean is over those only.")
    return out


def section_slug(section: Section) -> str:
    raw = f"{section.dataset}-{section.protocol}-{section.arch}-{section.pretrained}-{'official' if section.official else 'unofficial'}"
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in raw)


def render(sections: list[Section], protocols: dict, n_runs: int, incomplete: int, assets: str | None = None,
           step_benchmarks: list[dict] | None = None) -> str:
    lines = ["# Leaderboard", "",
             f"Generated by `bench leaderboard` from {n_runs} finished runs in the run store"
             + (f" ({incomplete} unfinished runs ignored)" if incomplete else "") + ". Do not edit by hand."
             + (f" Tables as CSV and JSON: [{assets}/results.csv]({assets}/results.csv), "
                f"[{assets}/results.json]({assets}/results.json)." if assets else ""), ""]
    if not sections:
        lines += ["No finished runs yet: `bench run --method ft` adds one.", ""]
    for s in sections:
        p = protocols.get(s.protocol)
        points = baseline_points(s.rows)
        fit = fit_line(points)
        title = f"## {s.dataset} — protocol {s.protocol}, model {s.arch} ({s.pretrained})"
        lines += [title + ("" if s.official else " — UNOFFICIAL (protocol settings overridden)"), ""]
        label = p.metric_label if p else s.metric
        lines += [f"Metric: {s.metric} = {label}; mean ± sample std over seeds, n = number of seeds. "
                  f"ID = {s.id_split}; OOD avg = unweighted mean of the {len(s.ood_splits)} OOD test columns. "
                  f"Model selection: {p.selection if p else 'see records'}; OOD test data is never used for "
                  "training, search or selection. Rows sorted by OOD avg; \"+WE\" rows are the weight ensemble with "
                  "the zero-shot model at alpha = 0.5; \"not run\" / \"incomplete\" rows name built-in methods "
                  "without a finished run here.", ""]
        lines += [results_table(s, fit), ""]
        lines += notes(s, p) + ([""] if notes(s, p) else [])
        lines += [er_explanation(s, fit, len(points)), ""]
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
                  "on the testbed model at batch 64, from `python -m pytest benchmarks/bench_steps.py "
                  "--benchmark-only --benchmark-json runs/benchmarks/steps-cpu.json`; ratios are to FT in the same "
                  "file. WiSE-FT's training step is FT's own, so the gap between those two rows shows the measurement "
                  "noise of the machine.", "", step_benchmark_table(step_benchmarks), ""]
    return "\n".join(lines)
