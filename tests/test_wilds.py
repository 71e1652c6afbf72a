"""WILDS iWildCam and FMoW on fixture folders in the real formats, with the project's tiny model."""
import hashlib

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from bench.datasets.images import open_image
from bench.datasets.wilds_data import FMoW, IWildCam, avg_over_groups
from bench.errors import BenchError
from bench.models import load_clip
from conftest import run_with_inputs
from fixtures import make_fmow, make_iwildcam

TINY_REAL = ["steps=4", "eval_every=2", "batch_size=8", "warmup=1", "eval_batch_size=16"]
ALL_METHODS = ["zeroshot", "lp", "ft", "lpft", "l2sp", "l1sp", "kd", "lora", "wiseft", "flyp", "ftp", "autoft", "lipsum",
               "tpgm", "lines", "soup-uniform", "soup-greedy", "modelstock", "vrf", "spd", "carot", "r-adapter"]
EXTRA = {"autoft": ["trials=2", "inner_steps=1", "ood_val_size=5"], "lp": ["c_steps=3"], "lpft": ["c_steps=3"],
         "tpgm": ["iters=3"], "lipsum": ["texts=8"]}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_iwildcam(root)
    make_fmow(root)
    return root


@pytest.fixture(scope="module")
def info():
    return load_clip("bench-tinyclip", "tinyshift")[1]


def _run(method, dataset, data_root, store):
    return run_with_inputs(method, store, dataset=dataset, data_root=data_root, model="bench-tinyclip",
                           pretrained="tinyshift", settings=TINY_REAL, extra=EXTRA.get(method, []), base_settings=False)


@pytest.mark.parametrize("dataset", ["iwildcam", "fmow"])
@pytest.mark.parametrize("method", ALL_METHODS)
def test_every_method_runs_on_fixture_wilds_data(method, dataset, data_root, tmp_path):
    record, status = _run(method, dataset, data_root, tmp_path / "runs")
    metric = {"iwildcam": "F1-macro_all", "fmow": "acc_worst_region"}[dataset]
    assert status == "done" and record["metric"] == metric
    assert set(record["metrics"]) == {"id_val", "id_test", "ood_val", "ood_test"}  # OOD val reported by every run
    assert all(metric in m and "acc_avg" in m for m in record["metrics"].values())
    assert record["summary"]["ood_avg"] == record["metrics"]["ood_test"][metric]
    assert "ood_test" not in record["data_access"].get("train", [])
    assert record["official"] is False and record["model"]["arch"] == "bench-tinyclip"


def test_iwildcam_metrics_equal_sklearn_macro_f1_over_present_classes(data_root, info):
    ds = IWildCam(info, data_root)
    split = ds.split("ood_test")
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(len(split), len(ds.classnames), generator=g)
    ours = ds.metrics("ood_test", logits, split.labels)
    y, pred = split.labels.numpy(), logits.argmax(1).numpy()
    assert ours["F1-macro_all"] == pytest.approx(100 * f1_score(y, pred, average="macro", labels=np.unique(y)))
    assert ours["acc_avg"] == pytest.approx(100 * (y == pred).mean())
    # the official CLIP code's lower-cased English names (WiSE-FT/FLYP labels table), not categories.csv's Latin
    assert ds.classnames == ("empty", "white-lipped peccary", "central american agouti")


def test_frozen_features_see_the_training_split_without_augmentation(data_root, info):
    ds = IWildCam(info, data_root)
    train = ds.split("train")
    torch.manual_seed(0)
    augmented = [train[0][0] for _ in range(2)]
    assert not torch.equal(*augmented)  # RandomResizedCrop: the training transform differs per call
    plain = ds.unaugmented(train)
    assert torch.equal(plain[0][0], plain[0][0]) and len(plain) == len(train)
    assert torch.equal(plain.labels, train.labels) and torch.equal(plain.metadata, train.metadata)
    assert torch.equal(plain[0][0], ds.split("id_test").transform(open_image(train.paths[0])))


def test_iwildcam_english_names_table_and_a_foreign_release(tmp_path, info):
    from bench.datasets.wilds_data import english_names

    table = english_names()
    assert len(table) == 182 and sorted(table) == list(range(182))
    assert table[146] == (372, "ocellated turkey") and table[181] == (571, "central American red brocket")
    folder = make_iwildcam(tmp_path)
    (folder / "categories.csv").write_text("y,category_id,name\n0,0,empty\n1,3,x\n2,2,y\n")  # ids swapped
    with pytest.raises(BenchError, match="maps class 1 to category_id 3, but iWildCam v2.0 has 2"):
        IWildCam(info, tmp_path).classnames


def test_fmow_worst_region_equals_a_direct_computation_without_torch_scatter(data_root, info):
    ds = FMoW(info, data_root)
    split = ds.split("ood_test")
    logits = torch.randn(len(split), 62, generator=torch.Generator().manual_seed(1))
    ours = ds.metrics("ood_test", logits, split.labels)
    regions = ds.wilds_dataset().metadata_map["region"]
    region_of = split.metadata[:, 0].numpy()
    correct = (logits.argmax(1) == split.labels).numpy()
    per_region = {regions[r]: correct[region_of == r].mean() for r in np.unique(region_of) if regions[r] != "Other"}
    assert ours["acc_worst_region"] == pytest.approx(100 * min(per_region.values()))
    assert len(split) == 20 and ds.classnames[1] == "airport_hangar"  # as WILDS and WiSE-FT name it


def test_pure_torch_group_means():
    v = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0])
    g = torch.tensor([0, 0, 2, 2, 2])
    means, counts = avg_over_groups(v, g, 4)
    assert means.tolist() == pytest.approx([0.5, 0.0, 2 / 3, 0.0]) and counts.tolist() == [2, 0, 3, 0]


def test_missing_and_malformed_folders_name_what_is_wrong(tmp_path, info):
    with pytest.raises(BenchError, match="pass --data-root"):
        IWildCam(info, None).split("train")
    with pytest.raises(BenchError, match="no RELEASE_v2.0.txt.*bench data download iwildcam"):
        IWildCam(info, tmp_path).split("train")
    folder = make_iwildcam(tmp_path / "a")
    text = (folder / "metadata.csv").read_text().replace("location_remapped", "where")
    (folder / "metadata.csv").write_text(text)
    with pytest.raises(BenchError, match="metadata in .* is malformed"):
        IWildCam(info, tmp_path / "a").split("train")
    folder = make_iwildcam(tmp_path / "b")
    (folder / "categories.csv").unlink()
    with pytest.raises(BenchError, match="categories.csv is missing"):
        IWildCam(info, tmp_path / "b").classnames
    (folder / "train" / "img_0000.jpg").write_bytes(b"broken")
    with pytest.raises(BenchError, match="img_0000.jpg is corrupt"):
        IWildCam(info, tmp_path / "b").split("train")[0]


def test_data_check_reports_present_missing_and_malformed(data_root, tmp_path, capsys):
    from bench.cli import main

    assert main(["data", "check", "iwildcam", "fmow", "--data-root", str(data_root)]) == 0
    out = capsys.readouterr().out
    assert out.count("incomplete") == 10 and "129809" in out  # fixture copies are tiny: flagged, not failing
    assert "found WILDS iwildcam v2.0 (RELEASE_v2.0.txt)" in out
    assert main(["data", "check", "iwildcam", "--data-root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "missing" in out and "bench data download" in out
    folder = make_iwildcam(tmp_path / "broken")
    (folder / "train" / "img_0003.jpg").unlink()
    assert main(["data", "check", "iwildcam", "--data-root", str(tmp_path / "broken")]) == 1
    out = capsys.readouterr().out
    assert "malformed" in out and "1 of 48 image files missing" in out


def test_reduced_budget_is_documented_and_unofficial(data_root, tmp_path):
    from bench.runner import RunRequest, plan

    p = plan(RunRequest(method="ft", dataset="iwildcam", data_root=data_root, reduced=True))
    assert p.protocol.steps == 2 * 507 and p.official is False
    full = plan(RunRequest(method="ft", dataset="iwildcam", data_root=data_root))
    assert full.protocol.steps == 20 * 507 and full.official is True
    assert full.config["model"] == {"arch": "ViT-B-16", "pretrained": "openai"}


def test_readme_real_benchmark_flow_on_fixture_folders(data_root, tmp_path, capsys, monkeypatch):
    """data check -> verify -> run (3 seeds) -> leaderboard, through the CLI, as README's 'Real benchmarks' shows
    (the fixture stands in for the release: the release's split sizes are set to the fixture's)."""
    from bench.cli import main
    from bench.datasets.cards import card_path

    assert main(["data", "check", "iwildcam", "--data-root", str(data_root)]) == 0
    monkeypatch.setattr(IWildCam, "expected_sizes", {"train": 48, "id_val": 12, "id_test": 12, "ood_val": 12, "ood_test": 15})
    assert main(["data", "verify", "iwildcam", "--checksums", "--data-root", str(data_root)]) == 0
    card = hashlib.sha256(card_path(data_root, "iwildcam").read_bytes()).hexdigest()
    sets = [x for s in TINY_REAL for x in ("--set", s)]
    argv = ["run", "--method", "ft", "--dataset", "iwildcam", "--data-root", str(data_root), "--seed", "0", "1", "2",
            "--model", "bench-tinyclip", "--pretrained", "tinyshift", "--out", str(tmp_path / "runs"), "--quiet"]
    assert main(argv + sets) == 0
    assert main(["leaderboard", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "LB.md")]) == 0
    page = (tmp_path / "LB.md").read_text()
    assert "## iwildcam — protocol wilds-iwildcam@1, model bench-tinyclip (tinyshift) — UNOFFICIAL" in page
    assert "F1-macro_all" in page and "| ft " in page and "| reported: " not in page  # unofficial: no reported rows
    assert f"Data: data card {card[:12]} (not downloaded by bench (a copy installed by hand); verified " in page
    assert "for all 3 runs." in page


def test_fmow_prompts_keep_the_underscores_except_in_the_article_templates(data_root, info):
    """WiSE-FT's fmow_template.py: 14 of 16 templates take the WILDS name as it is; the two with
    append_proper_article space it."""
    from bench.datasets.wilds_data import FMOW_TEMPLATES
    from bench.models.classifier import format_prompt

    assert "airport_hangar" in FMoW(info, data_root).classnames
    prompts = [format_prompt(t, "airport_hangar") for t in FMOW_TEMPLATES]
    assert prompts[:4] == ["satellite photo of a airport_hangar.", "aerial photo of a airport_hangar.",
                           "satellite photo of an airport hangar.", "aerial photo of an airport hangar."]
    assert sum("_" in p for p in prompts) == 14 and prompts[-2:] == ["a photo of a airport_hangar.", "airport_hangar."]


def test_fmow_runs_store_regions_and_the_leaderboard_bootstraps_the_worst_region(data_root, tmp_path):
    """The predictions file keeps each example's region ('Other' as -1), so the worst region recomputes exactly
    from the store and the paired interval is on the protocol's own metric, not a fallback."""
    from bench.leaderboard import collect
    from bench.results.metrics import point
    from bench.results.predictions import StoredPredictions
    from bench.store import RunStore

    store = tmp_path / "runs"
    for method in ("ft", "lp"):
        record, status = _run(method, "fmow", data_root, store)
    (ft,) = [r for r in RunStore(store).records() if r.method == "ft"]
    preds = StoredPredictions(store, ft.path, ft.predictions)
    ds = FMoW(load_clip("bench-tinyclip", "tinyshift")[1], data_root)
    regions = ds.wilds_dataset().metadata_map["region"]
    expected = np.array([-1 if regions[r] == "Other" else r for r in ds.split("ood_test").metadata[:, 0].tolist()])
    assert ft.predictions["layout"] == 2 and np.array_equal(preds.groups("ood_test"), expected)
    assert point("acc_worst_region", preds.labels("ood_test"), preds.top1("final", "ood_test"),
                 preds.groups("ood_test")) == pytest.approx(ft.metrics["ood_test"]["acc_worst_region"], abs=1e-4)
    vs = next(row for row in collect(store).sections[0].rows if row.method == "lp").vs_ft
    assert vs.metric == "acc_worst_region" and vs.low is not None and vs.low <= vs.diff <= vs.high
