"""`bench data verify`: split counts against the release, the per-file manifest, the data card, and the card's
digest in every run record and on the leaderboard."""
from __future__ import annotations

import hashlib
import json

import pytest

from bench.cli import main
from bench.datasets.base import PROVISIONAL_MODEL
from bench.datasets.cards import card_path, compare, manifest, manifest_path, summary, verify
from bench.datasets.wilds_data import IWildCam, english_names
from fixtures import make_iwildcam

FIXTURE_SIZES = {"train": 48, "id_val": 12, "id_test": 12, "ood_val": 12, "ood_test": 15}


@pytest.fixture
def root(tmp_path, monkeypatch):
    """An iWildCam copy whose release sizes are the fixture's own (the stand-in for a complete copy)."""
    make_iwildcam(tmp_path)
    monkeypatch.setattr(IWildCam, "expected_sizes", FIXTURE_SIZES)
    return tmp_path


def adapter(root):
    from bench.data_cli import _adapter

    return _adapter("iwildcam", root)  # the registry names the adapter


def snapshot(root):
    cards = root / "bench-cards"
    return {p.name: p.read_bytes() for p in cards.iterdir()} if cards.is_dir() else {}


def test_a_complete_copy_gets_a_card_with_counts_and_a_manifest(root):
    result = verify(adapter(root), checksums=True)
    assert result.ok and result.card == card_path(root, "iwildcam")
    card = json.loads(result.card.read_text())
    assert card["counts"] == FIXTURE_SIZES and card["release_counts"] == FIXTURE_SIZES
    assert card["folders"] == ["iwildcam_v2.0"] and card["sources"].startswith("not downloaded by bench")
    lines = manifest_path(root, "iwildcam").read_text().splitlines()
    assert len(lines) == 99 + 3 == card["manifest"]["files"]  # images, metadata.csv, categories.csv, RELEASE
    image = root / "iwildcam_v2.0" / "train" / "img_0000.jpg"
    assert f"{hashlib.sha256(image.read_bytes()).hexdigest()}  {image.stat().st_size}  iwildcam_v2.0/train/img_0000.jpg" in lines
    assert card["manifest"]["sha256"] == hashlib.sha256(manifest_path(root, "iwildcam").read_bytes()).hexdigest()
    assert result.card_sha256 == hashlib.sha256(result.card.read_bytes()).hexdigest()


def test_verifying_the_same_copy_again_keeps_its_card(root):
    first = verify(adapter(root), checksums=True)
    again = verify(adapter(root), checksums=True)
    assert again.ok and again.card_sha256 == first.card_sha256


def test_a_changed_file_is_flagged_and_the_card_is_kept(root, capsys):
    assert main(["data", "verify", "iwildcam", "--checksums", "--data-root", str(root)]) == 0
    before = snapshot(root)
    image = root / "iwildcam_v2.0" / "train" / "img_0003.jpg"
    data = bytearray(image.read_bytes())
    data[-3] ^= 0x01  # same size, other bytes
    image.write_bytes(bytes(data))
    (root / "iwildcam_v2.0" / "stray.txt").write_text("x")
    capsys.readouterr()
    assert main(["data", "verify", "iwildcam", "--checksums", "--data-root", str(root)]) == 1
    out = capsys.readouterr().out
    assert "iwildcam: changed file: iwildcam_v2.0/train/img_0003.jpg" in out
    assert "iwildcam: new file: iwildcam_v2.0/stray.txt" in out and "NOT verified (nothing written)" in out
    assert snapshot(root) == before  # the last good card and manifest stay


def test_a_missing_file_is_flagged(root, capsys):
    assert main(["data", "verify", "iwildcam", "--data-root", str(root)]) == 0
    before = snapshot(root)
    (root / "iwildcam_v2.0" / "train" / "img_0050.jpg").unlink()
    assert main(["data", "verify", "iwildcam", "--data-root", str(root)]) == 1
    out = capsys.readouterr().out
    assert "1 of 12 image files missing" in out and "NOT verified" in out
    assert snapshot(root) == before


def test_a_wrong_count_is_flagged_against_the_release(tmp_path, capsys):
    make_iwildcam(tmp_path)  # the release's real sizes: the fixture is far smaller
    assert main(["data", "verify", "iwildcam", "--data-root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "incomplete" in out and "48/129809" in out and "NOT verified" in out
    assert not card_path(tmp_path, "iwildcam").exists()


def test_manifest_comparison_names_each_kind_of_difference(tmp_path):
    old = "a" * 64 + "  1  x/one\n" + "b" * 64 + "  1  x/two\n"
    new = "a" * 64 + "  1  x/one\n" + "c" * 64 + "  1  x/two\n" + "d" * 64 + "  1  x/three\n"
    assert compare(old, new) == ["new file: x/three", "changed file: x/two"]
    assert compare(new, old) == ["missing file: x/three", "changed file: x/two"]
    many_old = "".join(f"{'a' * 64}  1  f{i}\n" for i in range(8))
    assert compare(many_old, "")[-1] == "... and 3 more missing files"


def test_the_manifest_is_the_same_with_one_thread_or_many(root):
    folders = [root / "iwildcam_v2.0"]
    assert manifest(folders, root, workers=1) == manifest(folders, root, workers=8)


def test_a_download_receipt_names_the_source_in_the_card(root):
    receipt = root / "bench-cards" / "iwildcam.source.json"
    receipt.parent.mkdir()
    receipt.write_text(json.dumps({"item": "iwildcam", "dataset": "iwildcam", "source": "hf-emmilly",
                                   "archive_sha256": "05c8" + "0" * 60}))
    result = verify(adapter(root))
    facts = summary(adapter(root))
    assert facts["card"] == result.card_sha256 and facts["sources"] == {"iwildcam": "hf-emmilly"}
    assert facts["archives"] == {"iwildcam": "05c8" + "0" * 60} and facts["manifest"] is None


def test_a_run_records_the_card_digest(root, tmp_path):
    from conftest import run_method

    settings = ["steps=0", "eval_batch_size=16", "batch_size=8"]
    kwargs = dict(dataset="iwildcam", data_root=root, model="bench-tinyclip", pretrained="tinyshift",
                  settings=settings, base_settings=False)
    record, _ = run_method("zeroshot", tmp_path / "runs-unverified", **kwargs)
    assert record["data"]["card"] is None and "bench data verify iwildcam" in record["data"]["note"]
    card = verify(adapter(root), checksums=True)
    record, _ = run_method("zeroshot", tmp_path / "runs", **kwargs)
    assert record["data"]["card"] == card.card_sha256 == hashlib.sha256(card_path(root, "iwildcam").read_bytes()).hexdigest()
    assert record["data"]["manifest"] == json.loads(card.card.read_text())["manifest"]["sha256"]
    tiny, _ = run_method("zeroshot", tmp_path / "runs-tiny", settings=["steps=0"], base_settings=False)
    assert tiny["data"] == {"embedded": True, "card": None, "note": "the embedded testbed, generated by bench's own code"}


def test_the_leaderboard_says_when_a_section_mixes_copies():
    from bench.leaderboard.aggregate import Section, data_copy
    from bench.leaderboard.render import data_line

    verified = {"card": "ab" * 32, "sources": {"iwildcam": "wilds"}, "verified": "2026-12-02T10:00:00+00:00"}
    assert data_copy(verified) == "data card abababababab (iwildcam from wilds; verified 2026-12-02)"
    assert data_copy({"card": None}).startswith("an unverified copy")
    assert data_copy(None).startswith("not recorded")  # a record without `data`, whatever its dataset's name
    assert data_copy({"embedded": True, "card": None}).startswith("the embedded testbed")
    section = Section("iwildcam", "p", "a", "t", True, "m", "id_test", [])
    section.data_copies = {data_copy(verified): 2, data_copy({"card": None}): 1}
    assert data_line(section).startswith("Data: MIXED copies — an unverified copy") and "2 runs" in data_line(section)


def test_iwildcam_duplicate_class_names_are_the_four_datacomp_87_names():
    """Four English names label two classes each (datacomp #87); kept as the official code has them, and listed
    in every iWildCam data card. Their zero-shot text embeddings are equal, so those classes' logits tie."""
    names = english_names()

    class Names(IWildCam):
        classnames = tuple(names[y][1].lower() for y in range(182))

    assert Names(PROVISIONAL_MODEL).duplicate_classnames() == {
        "lowland paca": [3, 148], "jaguarundi": [19, 174], "unknown bird": [82, 178],
        "central american red brocket": [153, 181]}


def test_verify_on_the_testbed_and_without_a_data_root(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("BENCH_DATA_ROOT", raising=False)
    assert main(["data", "verify", "tinyshift"]) == 0
    assert "embedded testbed" in capsys.readouterr().out
    assert main(["data", "verify", "iwildcam"]) == 2
    assert "pass --data-root DIR" in capsys.readouterr().err
    assert main(["data", "verify", "iwildcm", "--data-root", str(tmp_path)]) == 2
    assert "iwildcam" in capsys.readouterr().err


def test_verify_without_names_checks_the_datasets_that_are_there(root, capsys):
    assert main(["data", "verify", "--data-root", str(root)]) == 0  # iwildcam only: nothing else is in the root
    out = capsys.readouterr().out
    assert "iwildcam: verified" in out and "fmow" not in out and "domainnet" not in out
    assert main(["data", "verify", "--data-root", str(root / "iwildcam_v2.0" / "train")]) == 2
    assert "no dataset folders in" in capsys.readouterr().err
