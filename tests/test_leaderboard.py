import json
import math
from pathlib import Path

import pytest

from jsonschema import Draft202012Validator

from bench.leaderboard import leaderboard_markdown, write_leaderboard
from bench.leaderboard.export import RESULTS_JSON_SCHEMA
from bench.leaderboard.aggregate import Stat, mean_std
from bench.leaderboard.render import cell
from bench.config import config_hash
from bench.protocols.tinyshift import TINYSHIFT
from bench.results.schema import SCHEMA_VERSION
from bench.store import RunStore

ROOT = Path(__file__).resolve().parent.parent


def fake_record(method, seed, id_acc, ood_accs, hparams=None, variant="final", official=True):
    """A hand-written record that satisfies the record schema (bench/results/schema.py)."""
    ood = dict(zip(TINYSHIFT.ood_test_splits, ood_accs))
    metrics = {"id_test": {"acc": id_acc}, **{s: {"acc": v} for s, v in ood.items()}}
    summary = {"id": id_acc, "ood": ood, "ood_avg": sum(ood_accs) / len(ood_accs)}
    hparams = hparams or {"lr": 0.1}
    model = {"arch": "bench-tinyclip", "pretrained": "tinyshift"}
    config = {"method": method, "dataset": "tinyshift", "protocol": "tinyshift@1", "model": model, "seed": seed,
              "hparams": hparams, "budget": {"steps": 500}}
    return {
        "schema": SCHEMA_VERSION, "run_id": config_hash(config), "bench_version": "0.1.0", "method": method,
        "dataset": "tinyshift", "seed": seed, "official": official,
        "protocol": {"name": "tinyshift", "version": 1, "id": "tinyshift@1"},
        "model": {**model, "activation": "gelu", "image_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3,
                  "weights_sha256": None},
        "hparams": hparams, "config": config, "selection": {"rule": "id_val"},
        "evaluation": {"variants": {variant: None}, "reported": variant},
        "reported_variant": variant, "metric": "acc", "metrics": metrics, "summary": summary,
        "variants": {variant: {"alpha": None, "metrics": metrics, "summary": summary}},
        "method_info": {}, "history": [], "data_access": {},
        "timing": {"setup_s": 1.0, "train_s": 2.0 + seed, "eval_s": 0.5, "total_s": 3.5 + seed, "train_images_per_s": 100.0},
        "env": {"python": "3.11", "packages": {}, "git": {"sha": None, "dirty": None},
                "device": "cpu (x86_64, 2 threads)", "device_kind": "cpu"},
    }


def fill(root, records):
    store = RunStore(root)
    for i, r in enumerate(records):
        folder = store.begin({"dataset": r["dataset"], "method": r["method"], "i": i}, force=False)
        store.finish(folder, r)


def test_mean_std_by_hand():
    mean, std, n = mean_std([1.0, 2.0, 4.0])
    assert (mean, n) == (7 / 3, 3)
    assert std == pytest.approx(math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2))
    assert mean_std([5.0]) == (5.0, None, 1)
    assert cell(Stat((1.0, 2.0, 4.0))) == "2.3 ± 1.5" and cell(Stat((5.0,))) == "5.0" and cell(Stat(())) == "–"


def test_table_values_order_and_missing_seeds(tmp_path):
    fill(tmp_path, [
        fake_record("ft", 0, 80.0, [40, 40, 40, 40, 40]),
        fake_record("ft", 1, 90.0, [50, 50, 50, 50, 50]),
        fake_record("ft", 2, 70.0, [30, 30, 30, 30, 30]),
        fake_record("zeroshot", 0, 50.0, [60, 60, 60, 60, 60]),
    ])
    text, count = leaderboard_markdown(tmp_path)
    assert count == 4
    lines = [l for l in text.splitlines() if l.startswith("| ")]
    assert lines[0].startswith("| method") and "OOD avg acc" in lines[0] and "ID id_test acc" in lines[0]
    zs, ft = lines[1], lines[2]  # sorted by OOD avg: zero-shot (60) above FT (40)
    assert zs.split("|")[1].strip() == "zeroshot" and zs.split("|")[2].strip() == "1"
    assert [c.strip() for c in ft.split("|")[1:4]] == ["ft", "3", "80.0 ± 10.0"]
    assert ft.split("|")[-4].strip() == "40.0 ± 10.0"
    assert ft.split("|")[-3].strip() == "reference"  # FT is what the interval column compares with
    assert "zeroshot: 1 of 3 protocol seeds finished (seeds [0]); its mean is over those only." in text
    not_run = [l for l in lines if "not run" in l]
    assert {l.split("|")[1].strip() for l in not_run} == {"lp", "lpft", "l2sp", "l1sp", "kd", "lora", "wiseft", "flyp",
                                                          "ftp", "autoft", "lipsum", "tpgm", "lines", "soup-uniform",
                                                          "soup-greedy", "modelstock", "vrf", "spd", "carot",
                                                          "r-adapter"}


def test_different_hyperparameters_are_separate_rows(tmp_path):
    fill(tmp_path, [fake_record("ft", 0, 80.0, [40] * 5, {"lr": 0.1}), fake_record("ft", 0, 82.0, [41] * 5, {"lr": 0.01})])
    text, _ = leaderboard_markdown(tmp_path)
    assert "| ft [lr=0.01]" in text and "| ft [lr=0.1]" in text


def test_weight_ensemble_variant_becomes_a_we_row(tmp_path):
    record = fake_record("flyp", 0, 80.0, [40] * 5)
    we = fake_record("flyp", 0, 75.0, [50] * 5)
    record["variants"] = {"final": {"alpha": None, "metrics": record["metrics"], "summary": record["summary"]},
                          "alpha=0.5": {"alpha": 0.5, "metrics": we["metrics"], "summary": we["summary"]}}
    record["evaluation"]["variants"] = {"final": None, "alpha=0.5": 0.5}
    fill(tmp_path, [record])
    text, _ = leaderboard_markdown(tmp_path)
    rows = {}
    for line in text.splitlines():  # the first table is the results table
        if line.startswith("| flyp"):
            rows.setdefault(line.split("|")[1].strip(), line)
    assert set(rows) == {"flyp", "flyp+WE (alpha=0.5)"}
    assert rows["flyp+WE (alpha=0.5)"].split("|")[3].strip() == "75.0"
    assert rows["flyp"].split("|")[3].strip() == "80.0"


def test_unofficial_runs_get_their_own_section(tmp_path):
    fill(tmp_path, [fake_record("ft", 0, 80.0, [40] * 5), fake_record("ft", 0, 60.0, [20] * 5, official=False)])
    text, _ = leaderboard_markdown(tmp_path)
    assert text.count("## tinyshift") == 2 and "UNOFFICIAL" in text


def test_same_store_gives_identical_bytes(tmp_path):
    records = [fake_record("ft", s, 80.0 + s, [40 + s] * 5) for s in range(3)]
    fill(tmp_path / "a", records)
    fill(tmp_path / "b", list(reversed(records)))
    write_leaderboard(tmp_path / "a", tmp_path / "a.md")
    write_leaderboard(tmp_path / "a", tmp_path / "a2.md")
    write_leaderboard(tmp_path / "b", tmp_path / "b.md")
    assert (tmp_path / "a.md").read_bytes() == (tmp_path / "a2.md").read_bytes() == (tmp_path / "b.md").read_bytes()


def test_committed_leaderboard_is_regenerated_from_the_committed_runs(tmp_path):
    """The committed LEADERBOARD.md and CSV are exactly what `bench leaderboard` makes of the committed runs/."""
    write_leaderboard(ROOT / "runs", tmp_path / "LEADERBOARD.md", plots=False)
    assert (tmp_path / "LEADERBOARD.md").read_text() == (ROOT / "LEADERBOARD.md").read_text()
    assert (tmp_path / "leaderboard" / "results.csv").read_text() == (ROOT / "leaderboard" / "results.csv").read_text()


def real_dataset_record(dataset, protocol, metric, ood_splits, arch="ViT-B-16", pretrained="openai", seed=0):
    """A schema-valid record of a real dataset's protocol (hand-written numbers)."""
    record = fake_record("ft", seed, 50.0, [30.0] * 5)
    metrics = {"id_test": {metric: 50.0}, **{s: {metric: 30.0 + i} for i, s in enumerate(ood_splits)}}
    ood = {s: metrics[s][metric] for s in ood_splits}
    summary = {"id": 50.0, "ood": ood, "ood_avg": sum(ood.values()) / len(ood)}
    name, version = protocol.split("@")
    record.update(dataset=dataset, protocol={"name": name, "version": int(version), "id": protocol}, metric=metric,
                  metrics=metrics, summary=summary, variants={"final": {"alpha": None, "metrics": metrics, "summary": summary}})
    record["model"].update(arch=arch, pretrained=pretrained)
    record["config"].update(dataset=dataset, protocol=protocol, model={"arch": arch, "pretrained": pretrained})
    return record


def test_reported_rows_are_labelled_with_their_source_and_kept_apart(tmp_path):
    from bench.protocols.imagenet import IMAGENET

    fill(tmp_path, [real_dataset_record("iwildcam", "wilds-iwildcam@1", "F1-macro_all", ["ood_test"]),
                    real_dataset_record("fmow", "wilds-fmow@1", "acc_worst_region", ["ood_test"]),
                    real_dataset_record("imagenet", "imagenet-shifts@1", "acc", list(IMAGENET.ood_test_splits)),
                    real_dataset_record("iwildcam", "wilds-iwildcam@1", "F1-macro_all", ["ood_test"],
                                        arch="bench-tinyclip", pretrained="tinyshift")])
    text, _ = leaderboard_markdown(tmp_path)
    rows = [line for line in text.splitlines() if line.startswith("| reported: ")]
    cells = {tuple(c.strip() for c in line.split("|")[1:4]) for line in rows}
    assert ("reported: DRM ≠", "53.53", "40.49") in cells  # iWildCam macro-F1, ID and OOD
    assert ("reported: DRM ≠", "–", "45.66") in cells  # FMoW: ID was average accuracy, not worst-region
    tpgm = next(line for line in rows if line.startswith("| reported: TPGM "))
    assert [c.strip() for c in tpgm.split("|")[2:8]] == ["83.80", "75.27", "76.87", "55.91", "54.50", "–"]
    assert "PotatoTian/TPGM @ 9124c3c" in tpgm
    # each row states its protocol; one that departs from the section's is marked and says how
    assert tpgm.startswith("| reported: TPGM ≠") and "R/A over 200 classes" in tpgm
    assert "TPGM's projection trained on ImageNet val, its reported ID test" in tpgm
    zero_shot = next(line for line in rows if line.startswith("| reported: zero-shot (Lipsum-FT)"))
    assert "≠" not in zero_shot and "80 OpenAI templates" in zero_shot and "no known difference" in zero_shot
    assert not any("soup" in line for line in rows)  # ViT-B-32 numbers never enter a ViT-B-16 section
    assert "no row for this model" in text  # the tiny model's iWildCam section
    assert text.count("| ft ") == 3 * 4  # measured rows stay (results, hyperparameter, timing tables of 4 sections)


def test_calibration_is_an_optional_table_and_in_the_exports(tmp_path):
    records = []
    for seed, ece in enumerate((4.0, 6.0)):
        r = fake_record("ft", seed, 70.0, [40.0] * 5)
        for split in r["metrics"]:
            r["metrics"][split]["ece"] = ece
        records.append(r)
    fill(tmp_path / "runs", records)
    plain, _ = leaderboard_markdown(tmp_path / "runs")
    with_ece, _ = leaderboard_markdown(tmp_path / "runs", calibration=True)
    assert "Calibration" not in plain and "ECE id_test (%)" in with_ece
    line = next(l for l in with_ece.splitlines() if l.startswith("| ft ") and "5.0 ± 1.4" in l)
    assert line.count("5.0 ± 1.4") == 6  # ID and the five OOD splits
    write_leaderboard(tmp_path / "runs", tmp_path / "LB.md", plots=False)
    rows = json.loads((tmp_path / "leaderboard" / "results.json").read_text())["rows"]
    ece = {k: v for row in rows if row["method"] == "ft" for k, v in row["summary"].items() if k.startswith("ece:")}
    assert set(ece) == {f"ece:{s}" for s in ("id_test", *TINYSHIFT.ood_test_splits)}
    assert all(v["mean"] == 5.0 for v in ece.values())


def test_effective_robustness_by_hand(tmp_path):
    from bench.leaderboard.robustness import logit, sigmoid

    fill(tmp_path, [
        fake_record("ft", 0, 80.0, [40] * 5), fake_record("ft", 1, 90.0, [50] * 5),
        fake_record("lp", 0, 70.0, [35] * 5), fake_record("zeroshot", 0, 60.0, [55] * 5),
    ])
    xs = [logit(80.0), logit(90.0), logit(70.0)]
    ys = [logit(40.0), logit(50.0), logit(35.0)]
    mx, my = sum(xs) / 3, sum(ys) / 3
    a = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    b = my - a * mx
    expected = 55.0 - 100 * sigmoid(a * logit(60.0) + b)
    text, _ = leaderboard_markdown(tmp_path)
    zs = next(l for l in text.splitlines() if l.startswith("| zeroshot"))
    assert zs.split("|")[-2].strip() == f"{expected:.1f}"
    assert f"a = {a:.3f}, b = {b:.3f}" in text and "through the 3 per-seed points of ft and lp" in text


def test_no_baseline_fit_says_why(tmp_path):
    fill(tmp_path, [fake_record("zeroshot", 0, 60.0, [55] * 5)])
    text, _ = leaderboard_markdown(tmp_path)
    assert "– (no baseline fit)" in text and "this section has fewer" in text


def test_timings_of_two_devices_stay_apart(tmp_path):
    a = fake_record("ft", 0, 80.0, [40] * 5)
    b = fake_record("ft", 1, 81.0, [41] * 5)
    c = fake_record("flyp", 0, 82.0, [42] * 5)
    b["env"] = {**b["env"], "device": "NVIDIA H100", "device_kind": "cuda"}
    b["timing"] = {**b["timing"], "train_s": 100.0, "total_s": 200.0}
    c["timing"] = {**c["timing"], "train_s": 6.0}
    fill(tmp_path, [a, b, c])
    text, _ = leaderboard_markdown(tmp_path)
    timing = [l for l in text.splitlines() if l.startswith("| ") and "device" not in l and "s (" in l or "H100" in l]
    ft_cpu = next(l for l in text.splitlines() if l.startswith("| ft ") and "cpu (x86_64" in l and "×" in l)
    ft_gpu = next(l for l in text.splitlines() if l.startswith("| ft ") and "NVIDIA H100" in l)
    flyp = next(l for l in text.splitlines() if l.startswith("| flyp") and "cpu (x86_64" in l and "×" in l)
    assert "2.0 (1.00×)" in ft_cpu and "100.0 (1.00×)" in ft_gpu  # each device is its own reference
    assert "6.0 (3.00×)" in flyp  # flyp on the CPU against ft on the CPU (2.0 s), never against the GPU run
    assert timing


def test_incomplete_runs_are_named(tmp_path):
    fill(tmp_path, [fake_record("ft", 0, 80.0, [40] * 5)])
    store = RunStore(tmp_path)
    store.begin({"dataset": "tinyshift", "method": "lpft", "protocol": "tinyshift@1",
                 "model": {"arch": "bench-tinyclip", "pretrained": "tinyshift"}}, force=False)
    text, _ = leaderboard_markdown(tmp_path)
    assert "| lpft " in text and "lpft: 1 unfinished run(s), no result yet" in text and "1 unfinished runs ignored" in text
    assert next(l for l in text.splitlines() if l.startswith("| lpft")).count("incomplete") == 9


def test_exports_and_plots_are_written(tmp_path):
    import csv

    fill(tmp_path / "runs", [fake_record("ft", s, 80.0 + s, [40 + s] * 5) for s in range(2)]
         + [fake_record("lp", 0, 70.0, [35] * 5)])
    write_leaderboard(tmp_path / "runs", tmp_path / "out" / "LB.md")
    assets = tmp_path / "out" / "leaderboard"
    rows = list(csv.DictReader(open(assets / "results.csv")))
    ood = next(r for r in rows if r["method"] == "ft" and r["column"] == "ood_avg")
    assert (ood["n"], ood["seeds"], float(ood["mean"])) == ("2", "0 1", 40.5)
    doc = json.loads((assets / "results.json").read_text())
    Draft202012Validator(RESULTS_JSON_SCHEMA).validate(doc)
    ft = next(r for r in doc["rows"] if r["method"] == "ft")  # the method's id, not its display label
    assert ft["seeds"] == [0, 1] and ft["variant"] == "final" and ft["dataset"] == "tinyshift"
    assert ft["per_seed"]["0"]["ood_avg"] == 40.0 and ft["per_seed"]["1"]["ood_avg"] == 41.0
    assert ft["per_seed"]["1"]["id_test"] == 81.0
    # mean 40.5, sample std of (40, 41) = 0.707107, standard error = std / sqrt(2) = 0.5
    assert ft["summary"]["ood_avg"] == {"n": 2, "mean": 40.5, "std": 0.707107, "se": 0.5}
    assert len(ft["provenance"]["run_ids"]) == 2 and ft["hyperparameters"] == {"lr": 0.1, "budget.steps": 500}
    pngs = sorted(p.name for p in assets.glob("*.png"))
    assert len(pngs) == 2 and all((assets / p).read_bytes()[:4] == b"\x89PNG" for p in pngs)
    assert f"(leaderboard/{pngs[0]})" in (tmp_path / "out" / "LB.md").read_text()


def test_golden_page_and_csv_from_committed_fixture_runs(tmp_path):
    """Fixture runs committed in tests/fixtures/leaderboard_runs render to the committed golden files."""
    fixtures = Path(__file__).parent / "fixtures"
    write_leaderboard(fixtures / "leaderboard_runs", tmp_path / "LEADERBOARD.md", plots=False)
    assert (tmp_path / "LEADERBOARD.md").read_text() == (fixtures / "leaderboard_golden.md").read_text()
    assert (tmp_path / "leaderboard" / "results.csv").read_text() == (fixtures / "leaderboard_golden.csv").read_text()


def test_every_reported_row_states_its_protocol():
    from bench.leaderboard.reported import REPORTED

    assert all(r.protocol_facts for r in REPORTED)
    assert {r.method for r in REPORTED if not r.differs} == {"zero-shot (Lipsum-FT)"}  # the one we match
