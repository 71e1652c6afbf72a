"""Are differences real? Each row's OOD avg against FT's, with a paired bootstrap over test examples and seeds.

The difference (row - FT) is recomputed from the per-example top-1 predictions and labels each run stores. Each
of B replicates draws the seeds both rows have with replacement and, within each OOD split, as many examples as the
split has with replacement (stratified: a split keeps its size and weight in the average); the same examples serve
the row, FT and every drawn seed (paired, so the noise both share cancels). The statistic is the mean over OOD splits
of (metric_row - metric_FT), averaged over the drawn seeds; the interval is its 2.5 and 97.5 percentiles. A fixed
numpy seed keeps the page byte-identical from one `bench leaderboard` to the next."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.results import metrics as M
from bench.results.predictions import StoredPredictions

B = 2000  # replicates: each bound's Monte Carlo error is ~0.06 bootstrap SE, ~1.5 % of the interval's width
SEED = 0
PERCENTILES = (2.5, 97.5)
CELLS = 4_000_000  # replicates x examples per block: ~16 MB of float32 weights, whatever the split's size
TOLERANCE = 1e-3  # percentage points: above float32 rounding of the records' metrics, below one example in 100k
RECOMPUTABLE = M.RECOMPUTABLE  # metrics the stored predictions (with group ids where needed) determine
REFERENCE = "reference"
NO_LABELS = "predictions file without labels (runs made before labels were stored)"


@dataclass(frozen=True)
class VsFt:
    """A row's OOD avg minus FT's (percentage points, on `metric`) and its 95 % interval; or, in `note`, why none."""
    diff: float | None = None
    low: float | None = None
    high: float | None = None
    metric: str | None = None
    seeds: tuple[int, ...] = ()
    note: str = ""

    @property
    def excludes_zero(self) -> bool:
        return self.low is not None and (self.low > 0 or self.high < 0)


def example_weights(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """(size, n): how often each of a split's n examples is drawn in n draws with replacement; every row sums to n.
    float32: sums of counts stay exact below 2**24 at half the memory; a bincount per replicate stays in cache."""
    out = np.empty((size, n), np.float32)
    for i, draws in enumerate(rng.integers(0, n, size=(size, n), dtype=np.int32)):
        out[i] = np.bincount(draws, minlength=n)
    return out


def seed_weights(rng: np.random.Generator, k: int, size: int) -> np.ndarray:
    """(size, k): how often each of k paired seeds is drawn in k draws with replacement."""
    draws = rng.integers(0, k, size=(size, k)) + np.arange(size)[:, None] * k
    return np.bincount(draws.ravel(), minlength=size * k).reshape(size, k).astype(np.float64)


def replicate_metrics(tops: dict, labels: np.ndarray, metric: str, rng: np.random.Generator,
                      replicates: int = B, groups: np.ndarray | None = None) -> dict:
    """One split: metric per replicate (replicates,) of every unit's top-1 `tops[key]`, on shared example draws."""
    n = labels.size
    block, out = max(1, CELLS // n), {key: [] for key in tops}
    size = int(max(labels.max(), *(t.max() for t in tops.values()))) + 1
    if metric in ("acc", "acc_avg"):  # linear in the weights: one matrix product for every unit at once
        hits = np.stack([labels == t for t in tops.values()]).astype(np.float32)
    elif metric == "F1-macro_all":  # group-bys prepared once per unit, not per block
        by_label, parts = M.grouping(labels), {key: M.f1_parts(labels, t) for key, t in tops.items()}
    for start in range(0, replicates, block):
        w = example_weights(rng, n, min(block, replicates - start))
        if metric in ("acc", "acc_avg"):
            # (block, units); the other order, hits @ w.T, takes a very slow path of 2-thread OpenBLAS
            values = (w @ hits.T).astype(np.float64) / n * 100.0  # M.accuracy of every unit at once
            for i, key in enumerate(tops):
                out[key].append(values[:, i])
        elif metric == "F1-macro_all":
            wt = np.ascontiguousarray(w.T)  # (n, block): gathering examples then reads contiguous rows
            true = M.class_sums(wt, by_label, size)
            for key in tops:
                out[key].append(M.macro_f1_from_parts(wt, true, parts[key], size))
        else:  # grouped metrics (FMoW's worst region): the shared implementation on each block
            for key, top1 in tops.items():
                out[key].append(M.score(metric, w, labels, top1, groups))
    return {key: np.concatenate(chunks) for key, chunks in out.items()}


def load_unit(cache: dict, root: Path, record, variant: str, splits, metric: str) -> dict | str:
    """split -> (ids, labels, top-1, groups) of one record's variant, checked to reproduce the record's own metric
    (a metric whose stored predictions are not what it scored is never bootstrapped); or why not."""
    if record.path not in cache:  # each run's file once, whichever rows share it
        cache[record.path] = StoredPredictions(root, record.path, record.predictions)
    preds = cache[record.path]
    if preds.problem:
        return preds.problem
    metrics = record.variants.get(variant, {}).get("metrics", record.metrics)
    out = {}
    for split in splits:
        top1, ids, labels = preds.top1(variant, split), preds.ids(split), preds.labels(split)
        if labels is None:
            return NO_LABELS
        if top1 is None or ids is None or not labels.size or not (labels.size == top1.size == ids.size):
            return f"predictions file lacks {variant}|{split} or its ids"
        groups = preds.groups(split)
        if M.NEEDS_GROUPS.get(metric) and groups is None:
            return preds.missing(f"group ids for {metric}")
        ours = M.point(metric, labels, top1, groups)
        theirs = next((metrics.get(split, {}).get(k) for k in ((metric, "acc_avg") if metric == "acc" else (metric,))
                       if metrics.get(split, {}).get(k) is not None), None)
        if theirs is None or abs(ours - theirs) > TOLERANCE:
            return (f"stored top-1 predictions do not reproduce the record's {split} {metric} "
                    f"({ours:.3f} vs {theirs if theirs is None else round(theirs, 3)})")
        out[split] = (ids, labels, top1, groups)
    return out


def reference_row(section):
    """FT's row (variant final); with several hyperparameter settings, the one with most seeds (then the first)."""
    rows = [row for row in section.rows if row.method == section.roles.reference and row.variant == "final"]
    return max(rows, key=lambda row: len(row.records)) if rows else None


def _pairs(section, ft, root, cache, metric):
    """row -> [(seed, row unit, FT unit)] for rows whose every paired seed is usable; the others get a VsFt note."""
    ft_records = {r.seed: r for r in ft.records}
    splits, reference, pairs = section.ood_splits, None, {}
    for row in section.rows:
        if row is ft:
            row.vs_ft = VsFt(metric=metric, seeds=tuple(sorted(ft_records)), note=REFERENCE)
            continue
        mine = {r.seed: r for r in row.records}
        seeds = sorted(set(mine) & set(ft_records))
        found, note = [], "no seed in common with FT" if not seeds else ""
        for seed in seeds:
            unit = load_unit(cache, root, mine[seed], row.variant, splits, metric)
            base = load_unit(cache, root, ft_records[seed], "final", splits, metric)
            note = unit if isinstance(unit, str) else f"FT's run: {base}" if isinstance(base, str) else ""
            if note:
                break
            reference = reference or base
            if not all(np.array_equal(u[s][i], reference[s][i]) for u in (unit, base) for s in splits for i in (0, 1)):
                note = "example ids or labels differ from FT's"
                break
            found.append((seed, (mine[seed].path, row.variant), (ft_records[seed].path, "final")))
        if note:
            row.vs_ft = VsFt(metric=metric, seeds=tuple(seeds), note=note)
        else:
            pairs[id(row)] = found
    return pairs, reference


def compare_section(section, root: Path, cache: dict) -> None:
    """Set `row.vs_ft` on every row of one section."""
    ft = reference_row(section)
    metric = section.metric if section.metric in RECOMPUTABLE else "acc"
    if ft is None:
        for row in section.rows:
            row.vs_ft = VsFt(metric=metric, note="this section has no FT row")
        return
    pairs, reference = _pairs(section, ft, root, cache, metric)
    if not pairs:
        return
    values, points = {}, {}
    keys = sorted({key for found in pairs.values() for _, *units in found for key in units})  # (run path, variant)
    for index, split in enumerate(section.ood_splits):
        tops = {key: cache[key[0]].top1(key[1], split) for key in keys}
        labels, groups = reference[split][1], reference[split][3]
        values[split] = replicate_metrics(tops, labels, metric, np.random.default_rng([SEED, 0, index]), groups=groups)
        points[split] = {key: M.point(metric, labels, top1, groups) for key, top1 in tops.items()}
    for row in section.rows:
        if id(row) not in pairs:
            continue
        found = pairs[id(row)]
        per_seed = np.stack([np.mean([values[s][mine] - values[s][base] for s in section.ood_splits], axis=0)
                             for _, mine, base in found], axis=1)  # (B, seeds)
        counts = seed_weights(np.random.default_rng([SEED, 1, len(found)]), len(found), B)
        stat = (per_seed * counts).sum(axis=1) / len(found)
        diff = float(np.mean([np.mean([points[s][mine] - points[s][base] for s in section.ood_splits])
                              for _, mine, base in found]))
        low, high = np.percentile(stat, PERCENTILES)
        row.vs_ft = VsFt(diff, float(low), float(high), metric, tuple(seed for seed, *_ in found))


def attach(sections: list, root: Path) -> None:
    """Set `row.vs_ft` (a VsFt) on every row of every section; each run's predictions file is read at most once."""
    cache: dict = {}
    for section in sections:
        compare_section(section, Path(root), cache)
