"""Bundles and merged stores: a leaderboard merged from a store and a bundle equals the one made from a single store
holding the same runs; conflicting duplicates, edited numbers and damaged bundles are refused in one line, and
nothing is written then."""
import gzip
import io
import json
import shutil
import tarfile

import pytest

from bench.cli import main
from conftest import run_method


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("share")
    run_method("ft", root / "a", seed=0)
    run_method("ft", root / "b", seed=1)
    run_method("lp", root / "b", seed=0)
    for name in ("a", "b"):  # the same runs in one store: what the merge must equal
        shutil.copytree(root / name, root / "all", dirs_exist_ok=True)
    return root


def bundle_of(stores, tmp_path, source="b"):
    out = tmp_path / f"{source}.tar.gz"
    assert main(["bundle", str(stores / source), "--out", str(out)]) == 0
    return out


def test_a_merged_leaderboard_equals_the_single_store_one(stores, tmp_path):
    packed = bundle_of(stores, tmp_path)
    assert main(["leaderboard", "--runs", str(stores / "a"), "--runs", str(packed), "--out", str(tmp_path / "m" / "LB.md")]) == 0
    assert main(["leaderboard", "--runs", str(stores / "all"), "--out", str(tmp_path / "s" / "LB.md")]) == 0
    merged, single = ((tmp_path / d / "LB.md").read_text() for d in ("m", "s"))
    assert merged == single and "| ft " in merged
    for name in ("results.csv", "results.json"):
        assert (tmp_path / "m" / "leaderboard" / name).read_bytes() == (tmp_path / "s" / "leaderboard" / name).read_bytes()
    ft = next(r for r in json.loads((tmp_path / "m" / "leaderboard" / "results.json").read_text())["rows"]
              if r["method"] == "ft")
    assert ft["seeds"] == [0, 1]  # one seed from each source


def test_a_bundle_lists_every_file_with_its_checksum_and_is_reproducible(stores, tmp_path):
    first = bundle_of(stores, tmp_path)
    again = tmp_path / "again.tar.gz"
    assert main(["bundle", str(stores / "b"), "--out", str(again)]) == 0
    assert first.read_bytes() == again.read_bytes()  # no clock in it
    with tarfile.open(first) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("MANIFEST.json").read())
    assert manifest["runs"] == 2 and set(manifest["files"]) == set(names) - {"MANIFEST.json"}
    assert sum(n.endswith("/record.json") for n in names) == 2 and sum(n.endswith("/predictions.npz") for n in names) == 2
    assert not any(n.endswith("checkpoint.pt") for n in names)


def _edited_copy(stores, tmp_path, value=None):
    """Store a's ft run with its id_test accuracy changed (or, without a value, only its train time), the record
    still satisfying the schema."""
    edited = tmp_path / "edited"
    shutil.copytree(stores / "a", edited)
    path = next(edited.rglob("record.json"))
    record = json.loads(path.read_text())
    if value is None:
        record["timing"]["train_s"] += 1.0
    else:
        record["metrics"]["id_test"]["acc"] = value
        record["variants"][record["reported_variant"]]["metrics"]["id_test"]["acc"] = value
    path.write_text(json.dumps(record))
    return edited, path


def test_a_conflicting_duplicate_run_is_refused(stores, tmp_path, capsys):
    edited, _ = _edited_copy(stores, tmp_path)  # the same run id, numbers that recompute, another record
    out = tmp_path / "x" / "LB.md"
    assert main(["leaderboard", "--runs", str(stores / "a"), "--runs", str(edited), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "different records or predictions" in err and err.count("\n") == 1 and not out.parent.exists()


def test_numbers_that_do_not_recompute_from_the_predictions_are_refused(stores, tmp_path, capsys):
    edited, path = _edited_copy(stores, tmp_path, 99.0)  # consistent checksums: the bundle is made after the edit
    packed = tmp_path / "forged.tar.gz"
    assert main(["bundle", str(edited), "--out", str(packed)]) == 0
    out = tmp_path / "y" / "LB.md"
    assert main(["leaderboard", "--runs", str(packed), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "does not recompute" in err and "the record says 99.0" in err and "difference" in err
    assert str(path.parent.relative_to(edited)) in err and not out.parent.exists()


def test_a_damaged_bundle_is_refused(stores, tmp_path, capsys):
    packed = bundle_of(stores, tmp_path)
    with tarfile.open(packed) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    damaged = tmp_path / "damaged.tar.gz"
    with gzip.GzipFile(damaged, "wb") as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for member, blob in members:
            if member.name.endswith("predictions.npz"):
                blob = blob[:-1] + bytes([blob[-1] ^ 1])  # one bit flipped, the manifest unchanged
            tar.addfile(member, io.BytesIO(blob))
    assert main(["leaderboard", "--runs", str(damaged), "--out", str(tmp_path / "z" / "LB.md")]) == 2
    assert "does not match its sha256" in capsys.readouterr().err


@pytest.mark.parametrize("argv,words", [
    (["leaderboard", "--runs", "A", "--runs", "B"], "needs --out"),
    (["leaderboard", "--runs", "A", "--runs", "missing", "--out", "OUT"], "does not exist"),
    (["bundle", "A", "--out", "EXISTING"], "already exists"),
    (["bundle", "missing", "--out", "NEW"], "does not exist"),
    (["leaderboard", "--runs", "NOTBUNDLE", "--out", "OUT"], "it is a file, and not a bundle"),
    (["leaderboard", "--runs", "A", "--runs", "NOTGZ", "--out", "OUT"], "not a readable bundle"),
])
def test_bad_sharing_requests_fail_in_one_line(stores, tmp_path, argv, words, capsys):
    (tmp_path / "EXISTING").write_text("keep")
    (tmp_path / "NOTBUNDLE").write_text("plain text")
    with tarfile.open(tmp_path / "NOTGZ", "w") as tar:  # a tar, not gzipped: not a bundle either
        tar.add(stores / "a", arcname="a")
    names = {"A": stores / "a", "B": stores / "b"}
    argv = [str(names.get(a, tmp_path / a)) if a.isupper() or a == "missing" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1, err
    assert (tmp_path / "EXISTING").read_text() == "keep" and not (tmp_path / "NEW").exists()
    assert not (tmp_path / "OUT").exists()
