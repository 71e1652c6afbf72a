"""The leaderboard's paired bootstrap of each row's OOD avg against FT's (bench/leaderboard/bootstrap.py): hand-made
predictions where the answer is known, the WILDS metric recomputed exactly, and one small store of real runs."""
import csv
import hashlib
import io
import json

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from bench.leaderboard import collect, leaderboard_markdown, write_leaderboard
from bench.leaderboard.bootstrap import B, NO_LABELS, REFERENCE, example_weights, replicate_metrics, seed_weights
from bench.results.metrics import macro_f1
from bench.results.metrics import point as point_metric_of

point_metric = lambda labels, top1, metric: point_metric_of(metric, labels, top1)
from bench.protocols.tinyshift import TINYSHIFT
from bench.store import RunStore
from conftest import run_method
from test_leaderboard import fake_record, real_dataset_record

SPLITS = list(TINYSHIFT.ood_test_splits)
SECTIONS = {  # kind -> (dataset, protocol, OOD splits, metric of the record)
    "tinyshift": ("tinyshift", "tinyshift@1", SPLITS, "acc"),
    "iwildcam": ("iwildcam", "wilds-iwildcam@1", ["ood_test"], "F1-macro_all"),
    "fmow": ("fmow", "wilds-fmow@1", ["ood_test"], "acc_worst_region"),
}


def regions_of(labels):
    """FMoW-like regions for a hand-made split: 0..3 by position, every 7th example in 'Other' (-1)."""
    n = len(labels)
    return np.where(np.arange(n) % 7 == 0, -1, np.arange(n) % 4).astype(np.int32)


def split_metrics(kind, labels, top1) -> dict:
    """What the engine would have recorded for one split (independent of the code under test: sklearn for F1, a
    loop over regions for the worst region)."""
    acc = float(100 * np.mean(labels == top1))
    if kind == "iwildcam":
        return {"F1-macro_all": 100 * f1_score(labels, top1, average="macro", labels=np.unique(labels))}
    if kind == "fmow":
        regions = regions_of(labels)
        worst = min(100 * np.mean(labels[regions == g] == top1[regions == g]) for g in range(4))
        return {"acc_worst_region": float(worst), "acc_avg": acc}
    return {"acc": acc}


def add_run(root, method, seed, preds, labels, kind="tinyshift", ids=None, store_labels=True, tamper=False,
            layout=2):
    """A finished run: preds = {variant: {split: top-1}}, labels = {split: class}; its metrics follow the arrays."""
    dataset, protocol, splits, metric = SECTIONS[kind]
    record = (fake_record(method, seed, 50.0, [0.0] * 5) if kind == "tinyshift" else
              real_dataset_record(dataset, protocol, metric, splits, "bench-tinyclip", "tinyshift", seed))
    record["method"] = record["config"]["method"] = method
    variants = {}
    for variant, by_split in preds.items():
        metrics = {"id_test": {metric: 50.0}, **{s: split_metrics(kind, labels[s], by_split[s]) for s in splits}}
        ood = {s: metrics[s][metric] for s in splits}
        variants[variant] = {"alpha": 0.5 if variant == "alpha=0.5" else None, "metrics": metrics,
                             "summary": {"id": 50.0, "ood": ood, "ood_avg": sum(ood.values()) / len(ood)}}
    record.update(variants=variants, metrics=variants["final"]["metrics"], summary=variants["final"]["summary"])
    record["evaluation"]["variants"] = {name: v["alpha"] for name, v in variants.items()}
    arrays = {f"{v}|{s}": np.asarray(t, np.int32) for v, by_split in preds.items() for s, t in by_split.items()}
    arrays.update({f"ids|{s}": (ids or {}).get(s, np.arange(len(y), dtype=np.int32)) for s, y in labels.items()})
    if store_labels:
        arrays.update({f"labels|{s}": np.asarray(y, np.int32) for s, y in labels.items()})
    if kind == "fmow" and layout >= 2:
        arrays.update({f"groups|{s}": regions_of(y) for s, y in labels.items()})
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    blob = buffer.getvalue()
    record["predictions"] = {"file": "predictions.npz", "sha256": hashlib.sha256(blob + b"x" * tamper).hexdigest(),
                             "layout": layout}
    store = RunStore(root)
    folder = store.begin({"dataset": dataset, "method": method, "seed": seed}, force=False)
    store.finish(folder, record, {"predictions.npz": blob})


def random_case(rng, n=200, classes=5, splits=SPLITS):
    labels = {s: rng.integers(0, classes, n) for s in splits}
    guess = lambda p: {s: np.where(rng.random(n) < p, y, rng.integers(0, classes, n)) for s, y in labels.items()}
    return labels, guess


def rows_of(root):
    return {row.label: row for section in collect(root).sections for row in section.rows}


def test_identical_predictions_give_a_zero_interval(tmp_path):
    labels, guess = random_case(np.random.default_rng(0))
    for seed in (0, 1):
        same = guess(0.6)
        add_run(tmp_path, "ft", seed, {"final": same}, labels)
        add_run(tmp_path, "lp", seed, {"final": same}, labels)
    rows = rows_of(tmp_path)
    vs = rows["lp"].vs_ft
    assert (vs.diff, vs.low, vs.high, vs.metric, vs.seeds) == (0.0, 0.0, 0.0, "acc", (0, 1))
    assert rows["ft"].vs_ft.note == REFERENCE and not vs.excludes_zero


def test_always_right_against_half_wrong_is_plus_50_and_excludes_zero(tmp_path):
    labels = {s: np.arange(100) % 4 for s in SPLITS}
    half = {s: np.where(np.arange(100) % 2 == 0, y, (y + 1) % 4) for s, y in labels.items()}
    add_run(tmp_path, "ft", 0, {"final": half}, labels)
    add_run(tmp_path, "flyp", 0, {"final": labels}, labels)
    vs = rows_of(tmp_path)["flyp"].vs_ft
    assert vs.diff == pytest.approx(50.0) and vs.excludes_zero and 0 < vs.low <= 50.0 <= vs.high < 100
    text, _ = leaderboard_markdown(tmp_path)
    line = next(l for l in text.splitlines() if l.startswith("| flyp "))
    assert "+50.0 [+" in line and "]*" in line and "OOD avg − FT [95 % CI]" in text and f"B = {B} replicates" in text


def test_point_is_the_difference_of_the_summary_means_and_inside_the_interval(tmp_path):
    rng = np.random.default_rng(1)
    labels, guess = random_case(rng)
    for seed in (0, 1, 2):
        add_run(tmp_path, "ft", seed, {"final": guess(0.5)}, labels)
        add_run(tmp_path, "kd", seed, {"final": guess(0.6), "alpha=0.5": guess(0.7)}, labels)  # also a +WE row
    rows = rows_of(tmp_path)
    mean = lambda row: np.mean([r.ood_avg for r in row.records])
    for label in ("kd", "kd+WE (alpha=0.5)"):
        vs = rows[label].vs_ft
        assert vs.diff == pytest.approx(mean(rows[label]) - mean(rows["ft"]), abs=1e-9)
        assert vs.low <= vs.diff <= vs.high and vs.seeds == (0, 1, 2)
    assert rows["kd+WE (alpha=0.5)"].vs_ft.diff != rows["kd"].vs_ft.diff  # the +WE row reads its own variant


def test_macro_f1_equals_the_wilds_metric_on_the_same_and_on_resampled_arrays(tmp_path):
    from bench.datasets.wilds_data import IWildCam
    from bench.models import load_clip
    from fixtures import make_iwildcam

    make_iwildcam(tmp_path)
    ds = IWildCam(load_clip("bench-tinyclip", "tinyshift")[1], tmp_path)
    rng = np.random.default_rng(2)
    labels = rng.choice([0, 2, 3, 7], 300)  # classes 1, 4-6 absent: predicted but never true
    top1 = np.where(rng.random(300) < 0.5, labels, rng.integers(0, 8, 300))

    def wilds(y, p):
        return ds.metrics("ood_test", torch.nn.functional.one_hot(torch.as_tensor(p), 8).float(), torch.as_tensor(y),
                          metadata=torch.zeros(len(y), 2))["F1-macro_all"]

    def same(ours, theirs):  # WILDS hands sklearn's float64 score through a float32 tensor: equal after that rounding
        return np.float32(ours / 100) == np.float32(theirs / 100) and ours == pytest.approx(theirs, abs=1e-5)

    assert same(point_metric(labels, top1, "F1-macro_all"), wilds(labels, top1))
    assert point_metric(labels, top1, "F1-macro_all") == pytest.approx(
        100 * f1_score(labels, top1, average="macro", labels=np.unique(labels)), abs=1e-9)
    w = example_weights(np.random.default_rng(3), 300, 3)
    values = macro_f1(w, labels, top1)
    for i in range(3):
        pick = np.repeat(np.arange(300), w[i].astype(int))
        assert same(values[i], wilds(labels[pick], top1[pick]))


def test_wilds_sections_get_intervals_on_their_own_metric(tmp_path):
    rng = np.random.default_rng(4)
    labels, guess = random_case(rng, n=300, classes=6, splits=["ood_test"])
    for kind in ("iwildcam", "fmow"):
        add_run(tmp_path, "ft", 0, {"final": guess(0.4)}, labels, kind)
        add_run(tmp_path, "lpft", 0, {"final": guess(0.7)}, labels, kind)
    board = collect(tmp_path)
    got = {s.dataset: next(r for r in s.rows if r.method == "lpft").vs_ft for s in board.sections}
    summary = {s.dataset: [next(r for r in s.rows if r.method == m).records[0] for m in ("lpft", "ft")]
               for s in board.sections}
    for dataset, metric in (("iwildcam", "F1-macro_all"), ("fmow", "acc_worst_region")):
        mine, ft = summary[dataset]
        assert got[dataset].metric == metric and got[dataset].low < got[dataset].diff < got[dataset].high
        assert got[dataset].diff == pytest.approx(mine.ood_avg - ft.ood_avg, abs=1e-9)  # the hand-computed values
    assert "interval_metric = acc" not in board.markdown(tmp_path, None)


def test_fmow_run_from_before_group_ids_has_no_interval_and_says_why(tmp_path):
    labels, guess = random_case(np.random.default_rng(14), n=300, classes=6, splits=["ood_test"])
    add_run(tmp_path, "ft", 0, {"final": guess(0.4)}, labels, "fmow")
    add_run(tmp_path, "lpft", 0, {"final": guess(0.7)}, labels, "fmow", layout=1)  # no groups|<split>
    vs = next(r for r in collect(tmp_path).sections[0].rows if r.method == "lpft").vs_ft
    assert vs.low is None and "layout 1 keeps no group ids for acc_worst_region" in vs.note


def test_worst_region_replicates_equal_resampled_arrays():
    rng = np.random.default_rng(15)
    labels = rng.integers(0, 5, 400)
    top1 = np.where(rng.random(400) < 0.6, labels, rng.integers(0, 5, 400))
    groups = regions_of(labels)
    values = replicate_metrics({"a": top1}, labels, "acc_worst_region", np.random.default_rng(3), replicates=6,
                               groups=groups)["a"]
    weights = example_weights(np.random.default_rng(3), 400, 6)
    for i in range(6):
        pick = np.repeat(np.arange(400), weights[i].astype(int))  # the drawn examples, each as often as drawn
        by_hand = min(100 * np.mean(labels[pick][groups[pick] == g] == top1[pick][groups[pick] == g])
                      for g in range(4) if (groups[pick] == g).any())
        assert values[i] == pytest.approx(by_hand, abs=1e-9)


def test_same_result_twice(tmp_path):
    labels, guess = random_case(np.random.default_rng(5))
    for seed in (0, 1):
        add_run(tmp_path, "ft", seed, {"final": guess(0.5)}, labels)
        add_run(tmp_path, "lp", seed, {"final": guess(0.55)}, labels)
    first, second = rows_of(tmp_path)["lp"].vs_ft, rows_of(tmp_path)["lp"].vs_ft
    assert first == second and first.low < first.high
    assert leaderboard_markdown(tmp_path)[0] == leaderboard_markdown(tmp_path)[0]


def test_replicates_keep_each_split_size_and_match_resampled_arrays():
    rng = np.random.default_rng(6)
    for n in (1, 7, 300):  # stratified: every replicate draws exactly n examples of an n-example split
        w = example_weights(rng, n, 50)
        assert w.shape == (50, n) and np.all(w.sum(axis=1) == n) and np.all(w == np.round(w)) and w.min() >= 0
    counts = seed_weights(rng, 3, 40)
    assert counts.shape == (40, 3) and np.all(counts.sum(axis=1) == 3)
    labels = rng.integers(0, 4, 120)
    tops = {"a": rng.integers(0, 4, 120), "b": labels.copy()}
    values = replicate_metrics(tops, labels, "acc", np.random.default_rng(7), replicates=5)
    w = example_weights(np.random.default_rng(7), 120, 5)  # the same draws, one block
    for i in range(5):
        pick = np.repeat(np.arange(120), w[i].astype(int))
        assert values["a"][i] == pytest.approx(100 * np.mean(labels[pick] == tops["a"][pick]))
    assert np.all(values["b"] == 100.0)


def test_no_interval_without_labels_with_other_ids_or_a_changed_file(tmp_path):
    labels, guess = random_case(np.random.default_rng(8))
    add_run(tmp_path, "ft", 0, {"final": guess(0.5)}, labels)
    add_run(tmp_path, "lp", 0, {"final": guess(0.5)}, labels, store_labels=False)
    add_run(tmp_path, "kd", 0, {"final": guess(0.5)}, labels, ids={SPLITS[2]: np.arange(200)[::-1].astype(np.int32)})
    add_run(tmp_path, "l2sp", 0, {"final": guess(0.5)}, labels, tamper=True)
    wrong = guess(0.5)
    add_run(tmp_path, "lpft", 0, {"final": wrong}, labels)
    (next(tmp_path.glob("tinyshift/lpft/*")) / "predictions.npz").unlink()
    rows = rows_of(tmp_path)
    assert rows["lp"].vs_ft.note == NO_LABELS
    assert rows["kd"].vs_ft.note == "example ids or labels differ from FT's"
    assert "does not match the record's sha256" in rows["l2sp"].vs_ft.note
    assert "predictions.npz is missing" in rows["lpft"].vs_ft.note
    assert all(rows[m].vs_ft.low is None for m in ("lp", "kd", "l2sp", "lpft"))
    text, _ = leaderboard_markdown(tmp_path)
    assert next(l for l in text.splitlines() if l.startswith("| lp ")).split("|")[-3].strip() == "–"
    assert f"- lp: {NO_LABELS}." in text


def test_predictions_that_do_not_reproduce_the_record_give_no_interval(tmp_path):
    """E.g. ImageNet-R/-A score an argmax over a class subset, but the stored top-1 is over all classes."""
    labels, guess = random_case(np.random.default_rng(9))
    add_run(tmp_path, "ft", 0, {"final": guess(0.5)}, labels)
    add_run(tmp_path, "lp", 0, {"final": guess(0.5)}, labels)
    path = next(tmp_path.glob("tinyshift/lp/*")) / "record.json"
    record = json.loads(path.read_text())
    record["variants"]["final"]["metrics"]["sketch"]["acc"] += 1.0
    path.write_text(json.dumps(record))
    note = rows_of(tmp_path)["lp"].vs_ft.note
    assert note.startswith("stored top-1 predictions do not reproduce the record's sketch acc")


def test_page_and_csv_of_a_store_of_real_runs(tmp_path):
    store = tmp_path / "runs"
    ft, _ = run_method("ft", store, settings=["steps=2", "eval_every=2", "warmup=1"])
    zs, _ = run_method("zeroshot", store)
    write_leaderboard(store, tmp_path / "LB.md", plots=False)
    diff = zs["summary"]["ood_avg"] - ft["summary"]["ood_avg"]
    line = next(l for l in (tmp_path / "LB.md").read_text().splitlines() if l.startswith("| zeroshot "))
    assert line.split("|")[-3].strip().startswith(f"{diff:+.1f} [")
    rows = list(csv.DictReader(open(tmp_path / "leaderboard" / "results.csv")))
    ood = next(r for r in rows if r["method"] == "zeroshot" and r["column"] == "ood_avg")
    assert float(ood["diff_vs_ft"]) == pytest.approx(diff, abs=1e-3)  # float32 metrics in the records
    assert float(ood["ci_low"]) <= float(ood["diff_vs_ft"]) <= float(ood["ci_high"])
    assert (ood["interval_metric"], ood["interval_note"]) == ("acc", "paired seeds 0")
    assert all(r["diff_vs_ft"] == "" for r in rows if r["column"] != "ood_avg")
