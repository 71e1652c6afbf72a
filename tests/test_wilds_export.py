"""`bench export wilds`: the submission files, scored the way WILDS' examples/evaluate.py scores them (the `wilds`
package's own dataset.eval on its get_subset(split) labels and metadata), give back the records' numbers exactly;
every WILDS run scores the whole OOD-val split for that (never for selection); bad requests write nothing."""
import warnings
from ast import literal_eval

import numpy as np
import pytest
import torch

from bench.cli import main
from conftest import run_method, stored_records
from fixtures import make_iwildcam

SETTINGS = ["steps=2", "eval_every=1", "batch_size=8", "warmup=1", "eval_batch_size=16"]
WILDS_SPLITS = {"id_val": "id_val", "id_test": "id_test", "val": "ood_val", "test": "ood_test"}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("wilds")
    make_iwildcam(root / "data")
    for seed in (0, 1, 2):
        for method in ("wiseft", "autoft"):
            extra = ["trials=2", "inner_steps=1", "ood_val_size=5"] if method == "autoft" else []
            run_method(method, root / "runs", seed=seed, dataset="iwildcam", data_root=root / "data",
                       model="bench-tinyclip", pretrained="tinyshift", settings=SETTINGS + extra, base_settings=False)
    return root


def wilds_scores(data_root, csv_path, split):
    """examples/evaluate.py's evaluate_replicate, with the installed `wilds` package."""
    import wilds

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = wilds.get_dataset(dataset="iwildcam", version="2.0", root_dir=str(data_root), download=False)
        predicted = torch.tensor([literal_eval(line) for line in csv_path.read_text().splitlines() if line.strip()])
        subset = dataset.get_subset(split)
        return dataset.eval(predicted, subset.y_array, subset.metadata_array)[0]


@pytest.mark.parametrize("method", ["wiseft", "autoft"])
def test_exported_files_score_to_the_records_numbers_with_wilds_own_evaluator(store, method, tmp_path):
    out = tmp_path / "submission"
    assert main(["export", "wilds", "--dataset", "iwildcam", "--method", method, "--runs", str(store / "runs"),
                 "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"iwildcam_split:{s}_seed:{k}.csv" for s in WILDS_SPLITS for k in (0, 1, 2))
    records = {r["seed"]: r for r in stored_records(store / "runs") if r["method"] == method}
    for seed, record in records.items():
        for wilds_split, split in WILDS_SPLITS.items():
            scores = wilds_scores(store / "data", out / f"iwildcam_split:{wilds_split}_seed:{seed}.csv", wilds_split)
            for metric in ("F1-macro_all", "acc_avg"):
                assert float(scores[metric]) * 100 == record["metrics"][split][metric]  # exactly


def test_every_wilds_run_scores_the_whole_ood_val_split_after_its_model_is_fixed(store):
    for record in stored_records(store / "runs"):
        assert record["split_sizes"]["ood_val"] == 12  # the fixture's whole val split, not AutoFT's 5-example subset
        assert "ood_val" in record["metrics"]
        finals = record["data_access"].get("final_eval", [])
        assert "ood_val" in finals
        if record["method"] == "wiseft":  # it never reads OOD val while it trains or selects
            assert "ood_val" not in record["data_access"].get("train", [])


def test_bad_export_requests_fail_in_one_line_and_write_nothing(store, tmp_path, capsys):
    runs = str(store / "runs")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    cases = [
        (["--dataset", "imagenet", "--method", "ft", "--out", str(tmp_path / "a")], "not 'imagenet'"),
        (["--dataset", "iwildcam", "--method", "ft", "--out", str(tmp_path / "b")], "for seed(s) 0, 1, 2"),
        (["--dataset", "iwildcam", "--method", "wisef", "--out", str(tmp_path / "c")], "did you mean"),
        (["--dataset", "iwildcam", "--method", "wiseft", "--out", str(taken)], "not an empty folder"),
    ]
    for argv, words in cases:
        assert main(["export", "wilds", "--runs", runs, *argv]) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"] and (taken / "keep.txt").read_text() == "mine"


def test_the_wilds_runs_numbers_recompute_from_their_predictions(store):
    """What a merged leaderboard checks before showing a row: macro-F1 and accuracy of every variant and split."""
    from bench.leaderboard.sharing import recompute_problem
    from bench.store import RunStore

    records = RunStore(store / "runs").records()
    assert len(records) == 6 and all(recompute_problem(store / "runs", r) is None for r in records)
    forged = records[0].replace(variants={k: {**v, "metrics": {s: {**m, "acc_avg": m["acc_avg"] + 1}
                                                           for s, m in v["metrics"].items()}}
                                          for k, v in records[0].variants.items()})
    assert "acc_avg" in recompute_problem(store / "runs", forged)  # a non-headline metric is checked too
