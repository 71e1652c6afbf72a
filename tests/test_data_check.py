"""`bench data check` and the fast check `bench run` makes first: one test per failure mode that used to pass as
"present" (or that was reported once per split, or decided by matching message text)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.cli import main
from bench.datasets.check import check_dataset, failures
from bench.datasets.domainnet import DomainNet
from bench.datasets.imagenet import ImageNet
from bench.datasets.wilds_data import IWildCam
from bench.errors import MalformedData, MissingData
from bench.models import load_clip
from fixtures import IMAGENET_WNIDS, make_domainnet, make_imagenet_family, make_iwildcam


@pytest.fixture(scope="module")
def info():
    return load_clip("bench-tinyclip", "tinyshift")[1]


def by_split(findings):
    return {split: f for f in findings for split in f.splits}


def test_a_deleted_domain_folder_is_missing_for_its_split_only(tmp_path, info):
    folder = make_domainnet(tmp_path)
    shutil.rmtree(folder / "sketch")  # the list file sketch_test.txt stays
    found = by_split(check_dataset(DomainNet(info, tmp_path)))
    assert found["sketch"].status == "missing" and "9 of 9 image files missing" in found["sketch"].note
    assert found["painting"].status == "present" and found["id_test"].status == "present"


def test_a_truncated_image_passes_the_fast_check_and_fails_the_deep_one(tmp_path, info):
    folder = make_domainnet(tmp_path)
    victim = sorted((folder / "clipart").rglob("*test_000.jpg"))[0]
    victim.write_bytes(victim.read_bytes()[:40])
    assert by_split(check_dataset(DomainNet(info, tmp_path)))["clipart"].status == "present"
    deep = by_split(check_dataset(DomainNet(info, tmp_path), deep=True))
    assert deep["clipart"].status == "malformed"
    assert any(str(victim) in note for note in deep["clipart"].notes)
    assert all(deep[s].status == "present" for s in ("sketch", "painting", "infograph"))


def test_an_empty_image_file_is_malformed_in_the_fast_check(tmp_path, info):
    folder = make_domainnet(tmp_path)
    next((folder / "painting").rglob("*test_000.jpg")).write_bytes(b"")  # painting_test is an OOD test split
    assert by_split(check_dataset(DomainNet(info, tmp_path)))["painting"].status == "malformed"


def test_missing_categories_csv_is_one_problem_for_the_whole_dataset(tmp_path, info):
    folder = make_iwildcam(tmp_path)
    (folder / "categories.csv").unlink()
    findings = check_dataset(IWildCam(info, tmp_path))
    assert len(findings) == 1 and findings[0].splits == ["all splits"] and findings[0].status == "missing"
    assert "categories.csv is missing" in findings[0].note


def test_the_wilds_release_version_is_said_and_a_wrong_one_is_missing(tmp_path, info):
    folder = make_iwildcam(tmp_path)
    findings = check_dataset(IWildCam(info, tmp_path))
    assert findings[0].splits == ["release"] and "iwildcam v2.0 (RELEASE_v2.0.txt)" in findings[0].note
    (folder / "RELEASE_v2.0.txt").rename(folder / "RELEASE_v1.0.txt")
    findings = check_dataset(IWildCam(info, tmp_path))
    assert [f.status for f in findings] == ["missing"] and "found RELEASE_v1.0.txt" in findings[0].note


def test_a_partial_copy_is_incomplete_not_present(tmp_path, info):
    make_iwildcam(tmp_path)
    found = by_split(check_dataset(IWildCam(info, tmp_path)))
    assert found["train"].status == "incomplete" and (found["train"].count, found["train"].expected) == (48, 129809)
    assert "the release has 129809" in found["train"].note
    assert not failures(list(found.values()))  # usable: a warning, not a failure


def test_an_imagenet_val_copy_with_999_classes_is_one_finding(tmp_path, info):
    root = make_imagenet_family(tmp_path)
    shutil.rmtree(root / "imagenet" / "val" / IMAGENET_WNIDS[999])
    findings = check_dataset(ImageNet(info, tmp_path))
    assert len(findings) == 1 and findings[0].status == "malformed" and "999 class folders" in findings[0].note


def test_statuses_come_from_where_the_problem_is_found_not_from_the_message(tmp_path, info):
    folder = make_domainnet(tmp_path)
    (folder / "infograph_test.txt").write_text("does not exist here\n")  # no "missing" word in a malformed line
    assert by_split(check_dataset(DomainNet(info, tmp_path)))["infograph"].status == "malformed"
    (folder / "infograph_test.txt").unlink()
    assert by_split(check_dataset(DomainNet(info, tmp_path)))["infograph"].status == "missing"
    assert issubclass(MissingData, Exception) and MissingData.status == "missing" and MalformedData.status == "malformed"


def test_no_data_root_is_one_line_per_dataset(tmp_path, info):
    findings = check_dataset(DomainNet(info, tmp_path / "nowhere"))
    assert len(findings) == 1 and findings[0].status == "missing" and "does not exist" in findings[0].note


def test_piped_output_keeps_whole_paths(tmp_path, capsys):
    deep_root = tmp_path / ("a-very-long-folder-name-" * 6)
    folder = make_domainnet(deep_root)
    shutil.rmtree(folder / "sketch")
    assert main(["data", "check", "domainnet", "--data-root", str(deep_root)]) == 1
    out = capsys.readouterr().out
    assert str(folder / "sketch") in out  # not cut to the terminal's width


def test_bench_run_checks_the_data_before_it_writes_anything(tmp_path, capsys):
    folder = make_domainnet(tmp_path / "data")
    shutil.rmtree(folder / "sketch")
    store = tmp_path / "runs"
    argv = ["run", "--method", "zeroshot", "--dataset", "domainnet", "--data-root", str(tmp_path / "data"),
            "--model", "bench-tinyclip", "--pretrained", "tinyshift", "--out", str(store), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "domainnet sketch: missing" in err[0] and "bench data check domainnet" in err[0]
    assert not [p for p in store.rglob("*") if p.is_file()]  # no run folder, no record


def test_deep_check_from_the_cli_names_the_unreadable_file(tmp_path, capsys):
    folder = make_domainnet(tmp_path)
    victim = next((folder / "quickdraw").rglob("*train_000.jpg"))  # OOD val = quickdraw_train
    victim.write_bytes(b"\xff\xd8 not a jpeg")
    assert main(["data", "check", "domainnet", "--data-root", str(tmp_path)]) == 0
    assert main(["data", "check", "domainnet", "--data-root", str(tmp_path), "--deep"]) == 1
    out = capsys.readouterr().out
    assert str(victim) in out and "malformed" in out
    assert Path(victim).is_file()  # checking never changes the data
