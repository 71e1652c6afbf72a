"""`bench data download` against a real HTTP server on 127.0.0.1 serving small archives in the real layouts:
resumed transfers, checksum refusals, falling through sources, offline, disk space, archives fetched by hand."""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from bench.data_cli import download
from bench.datasets import download as dl
from bench.datasets import sources
from bench.errors import BenchError
from fixtures import make_iwildcam
from http_server import FileServer


def tar_gz(folder: Path, arcname: str | None = None) -> bytes:
    """A .tar.gz of `folder`: under `arcname` (one top folder), or with its contents at the top (WILDS' layout)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as t:
        if arcname:
            t.add(folder, arcname=arcname)
        else:
            for child in sorted(folder.iterdir()):
                t.add(child, arcname=child.name)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def iwildcam_archive(tmp_path_factory) -> bytes:
    """The iWildCam fixture packed as the WILDS archive is: its files at the top, no enclosing folder."""
    return tar_gz(make_iwildcam(tmp_path_factory.mktemp("src")))


def table(tmp_path: Path, items: dict) -> Path:
    path = tmp_path / "sources.json"
    path.write_text(json.dumps({"items": items}))
    return path


def wildcam_item(*srcs, unpacked_size=10_000_000) -> dict:
    return {"local-iwildcam": {"dataset": "iwildcam", "folder": "iwildcam_v2.0", "marker": "RELEASE_v2.0.txt",
                               "format": "tar", "unpacked_size": unpacked_size, "sources": list(srcs)}}


def http_source(name, url, body: bytes | None, **extra) -> dict:
    pin = {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()} if body is not None else {}
    return {"name": name, "kind": "http", "url": url, **pin, **extra}


def contents(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def test_an_interrupted_transfer_resumes_with_a_range_request(tmp_path, iwildcam_archive):
    root = tmp_path / "data"
    with FileServer() as server:
        server.files["/iwildcam.tar.gz"] = iwildcam_archive
        server.cut["/iwildcam.tar.gz"] = 1  # the first GET stops half-way
        spec = table(tmp_path, wildcam_item(http_source("lab", server.url + "/iwildcam.tar.gz", iwildcam_archive)))
        done = download("local-iwildcam", root, sources_file=spec)
        gets = server.gets("/iwildcam.tar.gz")
    half = len(iwildcam_archive) // 2
    assert [g.get("Range") for g in gets] == [None, f"bytes={half}-"]
    assert done.folder == root / "iwildcam_v2.0" and (done.folder / "RELEASE_v2.0.txt").is_file()
    assert len(list((done.folder / "train").iterdir())) == 99  # every image of the fixture
    receipt = json.loads(done.receipt.read_text())
    assert receipt["archive_sha256"] == hashlib.sha256(iwildcam_archive).hexdigest() and receipt["source"] == "lab"
    assert not (root / dl.PARTS).exists() and not list(root.glob(".bench-extract-*"))  # no leftovers


def test_a_failed_call_keeps_its_partial_file_and_the_next_call_resumes(tmp_path, iwildcam_archive, monkeypatch):
    monkeypatch.setattr(dl, "RETRIES", 1)
    root = tmp_path / "data"
    with FileServer() as server:
        server.files["/a.tgz"] = iwildcam_archive
        server.cut["/a.tgz"] = 2  # both attempts of this call stop half-way
        spec = table(tmp_path, wildcam_item(http_source("lab", server.url + "/a.tgz", iwildcam_archive)))
        with pytest.raises(BenchError, match="stopped at .*run the same command again to resume"):
            download("local-iwildcam", root, sources_file=spec)
        assert not (root / "iwildcam_v2.0").exists()  # never a half-made dataset
        (part,) = (root / dl.PARTS).iterdir()
        kept = part.stat().st_size
        assert len(iwildcam_archive) // 2 <= kept < len(iwildcam_archive)
        done = download("local-iwildcam", root, sources_file=spec)  # the server works again
        assert server.gets("/a.tgz")[-1]["Range"] == f"bytes={kept}-"
    assert (done.folder / "metadata.csv").is_file()


def test_a_corrupted_archive_is_refused_before_extraction_and_nothing_is_left(tmp_path, iwildcam_archive, monkeypatch):
    extracted = []
    monkeypatch.setattr(dl, "_extract", lambda *a, **k: extracted.append(a))
    root = tmp_path / "data"
    root.mkdir()
    (root / "other-dataset").mkdir()
    bad = bytearray(iwildcam_archive)
    bad[len(bad) // 3] ^= 0xFF  # same size, one byte changed
    with FileServer() as server:
        server.files["/a.tgz"] = bytes(bad)
        spec = table(tmp_path, wildcam_item(http_source("lab", server.url + "/a.tgz", iwildcam_archive)))
        with pytest.raises(BenchError) as err:
            download("local-iwildcam", root, sources_file=spec)
    message = str(err.value)
    assert "lab: sha256" in message and "not the pinned" in message and "\n" not in message
    assert extracted == []  # refused before extraction
    assert contents(root) == {"other-dataset"}  # nothing new, nothing half-made


def test_a_source_answering_404_falls_through_to_a_hub_mirror(tmp_path, iwildcam_archive, monkeypatch):
    """The Hub source goes through huggingface_hub's URL layout (/datasets/<repo>/resolve/<revision>/<file>) and
    headers (the user's token), and follows the Hub's redirect to where the bytes are."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_TOKEN", "hf_benchtesttoken")
    root = tmp_path / "data"
    lines = []
    with FileServer() as server:
        hub_path = "/datasets/someone/iwildcam-mirror/resolve/abc123/iwildcam_v2.0.tar.gz"
        server.redirect[hub_path] = "/cdn/blob"
        server.files["/cdn/blob"] = iwildcam_archive
        spec = table(tmp_path, wildcam_item(
            http_source("gone", server.url + "/missing.tgz", iwildcam_archive),
            {"name": "mirror", "kind": "hf", "repo": "someone/iwildcam-mirror", "file": "iwildcam_v2.0.tar.gz",
             "revision": "abc123", "endpoint": server.url, "size": len(iwildcam_archive),
             "sha256": hashlib.sha256(iwildcam_archive).hexdigest()}))
        done = download("local-iwildcam", root, sources_file=spec, say=lines.append)
        hub = server.gets(hub_path)
    assert lines == ["local-iwildcam: source gone failed: HTTP 404 Not Found; trying the next"]
    assert done.source == "mirror" and (done.folder / "RELEASE_v2.0.txt").is_file()
    assert hub[0]["Authorization"] == "Bearer hf_benchtesttoken"


def test_the_hub_token_is_not_forwarded_to_another_host(tmp_path, iwildcam_archive, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_TOKEN", "hf_benchtesttoken")
    with FileServer() as hub, FileServer() as cdn:  # two ports: two hosts to the client
        path = "/datasets/someone/m/resolve/main/a.tgz"
        cdn.files["/blob"] = iwildcam_archive
        hub.redirect[path] = cdn.url + "/blob"
        spec = table(tmp_path, wildcam_item({"name": "m", "kind": "hf", "repo": "someone/m", "file": "a.tgz",
                                             "endpoint": hub.url, "size": len(iwildcam_archive),
                                             "sha256": hashlib.sha256(iwildcam_archive).hexdigest()}))
        done = download("local-iwildcam", tmp_path / "data", sources_file=spec)
        assert hub.gets(path)[0]["Authorization"] == "Bearer hf_benchtesttoken"
        assert "Authorization" not in cdn.gets("/blob")[0]
    assert done.source == "m"


def test_no_network_is_said_at_once_in_one_line(tmp_path):
    """Hosts that do not resolve (the .invalid domain never does) and the Hub switched off (HF_HUB_OFFLINE=1 in
    the tests): one error line starting 'no network:', within a second, and nothing written."""
    root = tmp_path / "data"
    root.mkdir()
    spec = table(tmp_path, wildcam_item(
        {"name": "a", "kind": "http", "url": "http://bench-offline-test.invalid/a.tgz", "size": 10, "sha256": "0" * 64},
        {"name": "b", "kind": "hf", "repo": "x/y", "file": "a.tgz", "size": 10, "sha256": "0" * 64}))
    start = time.monotonic()
    with pytest.raises(BenchError, match=r"^no network: none of local-iwildcam's sources can be reached .*"
                                         "--from-archive FILE") as err:
        download("local-iwildcam", root, sources_file=spec, say=lambda line: None)
    assert time.monotonic() - start < 1.0
    assert "\n" not in str(err.value) and contents(root) == set()


@pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0, reason="needs unshare and root")
def test_the_cli_without_a_network_namespace_says_no_network(tmp_path):
    """The shipped sources in a network namespace with no interfaces up: exit 2, one 'no network' line."""
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    out = subprocess.run(["unshare", "-n", sys.executable, "-m", "bench", "data", "download", "iwildcam",
                          "--data-root", str(tmp_path / "data")], capture_output=True, text=True, env=env, timeout=120)
    errors = [line for line in out.stderr.splitlines() if line.startswith("bench: error:")]
    assert out.returncode == 2 and len(errors) == 1 and errors[0].startswith("bench: error: no network:")
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "data").exists()  # nothing written, not even the data root


def test_too_little_free_space_is_refused_before_anything_is_written(tmp_path):
    root = tmp_path / "data"
    spec = table(tmp_path, wildcam_item(http_source("lab", "http://127.0.0.1:9/a.tgz", b"x" * 10),
                                        unpacked_size=10**18))
    with pytest.raises(BenchError, match="not enough free space .* needs 1000000.0 TB"):
        download("local-iwildcam", root, sources_file=spec)
    assert not root.exists()  # not even an empty data root


def test_an_existing_dataset_folder_is_never_overwritten(tmp_path, iwildcam_archive):
    root = tmp_path / "data"
    make_iwildcam(root)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    spec = table(tmp_path, wildcam_item(http_source("lab", "http://127.0.0.1:9/a.tgz", iwildcam_archive)))
    with pytest.raises(BenchError, match="already exists; `bench data verify iwildcam"):
        download("local-iwildcam", root, sources_file=spec)
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


def test_an_archive_fetched_by_hand_is_installed_only_if_pinned(tmp_path, iwildcam_archive):
    root = tmp_path / "data"
    spec = table(tmp_path, wildcam_item(http_source("lab", "http://127.0.0.1:9/a.tgz", iwildcam_archive)))
    other = tmp_path / "other.tgz"
    other.write_bytes(iwildcam_archive[:-1] + bytes([iwildcam_archive[-1] ^ 1]))
    with pytest.raises(BenchError, match="not a pinned archive of local-iwildcam"):
        download("local-iwildcam", root, archive=other, sources_file=spec)
    assert not root.exists()
    good = tmp_path / "iwildcam_v2.0.tar.gz"
    good.write_bytes(iwildcam_archive)
    done = download("local-iwildcam", root, archive=good, sources_file=spec)
    assert (done.folder / "RELEASE_v2.0.txt").is_file() and good.is_file()  # the user's own file is kept
    assert json.loads(done.receipt.read_text())["source"] == "archive iwildcam_v2.0.tar.gz (= lab)"


def test_an_unpinned_source_needs_allow_unpinned_and_its_sha256_is_recorded(tmp_path, iwildcam_archive):
    root = tmp_path / "data"
    with FileServer() as server:
        server.files["/f.tgz"] = iwildcam_archive
        spec = table(tmp_path, wildcam_item(http_source("codalab", server.url + "/f.tgz", None)))
        with pytest.raises(BenchError, match="codalab: no pinned sha256.*--allow-unpinned"):
            download("local-iwildcam", root, sources_file=spec, say=lambda line: None)
        assert server.gets("/f.tgz") == []  # refused before any byte was asked for
        done = download("local-iwildcam", root, sources_file=spec, allow_unpinned=True)
    receipt = json.loads(done.receipt.read_text())
    assert receipt["pinned"] is False and receipt["archive_sha256"] == hashlib.sha256(iwildcam_archive).hexdigest()


def test_an_archive_that_would_write_outside_its_folder_is_refused(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as t:
        for name, data in (("RELEASE_v2.0.txt", b"x"), ("../escaped.txt", b"y")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    archive = tmp_path / "evil.tgz"
    archive.write_bytes(buffer.getvalue())
    root = tmp_path / "data"
    spec = table(tmp_path, wildcam_item(http_source("lab", "http://127.0.0.1:9/a.tgz", buffer.getvalue())))
    with pytest.raises(BenchError, match="would land outside its folder"):
        download("local-iwildcam", root, archive=archive, sources_file=spec)
    assert not (tmp_path / "escaped.txt").exists() and not root.exists()
    assert not list(root.glob(".bench-extract-*"))


def test_an_archive_with_one_top_folder_installs_that_folder(tmp_path):
    """ImageNetV2's archive holds imagenetv2-matched-frequency-format-val/<class index>/...; the item's folder."""
    src = tmp_path / "src" / "imagenetv2-matched-frequency-format-val"
    for k in range(3):
        (src / str(k)).mkdir(parents=True)
        (src / str(k) / "a.jpeg").write_bytes(bytes([k]) * 10)
    body = tar_gz(src, src.name)
    archive = tmp_path / "v2.tar.gz"
    archive.write_bytes(body)
    spec = table(tmp_path, {"imagenet-v2": {"dataset": "imagenet", "folder": src.name, "marker": "0", "format": "tar",
                                            "unpacked_size": 1000, "sources": [http_source("mine", "http://127.0.0.1:9/x", body)]}})
    done = download("imagenet-v2", tmp_path / "data", archive=archive, sources_file=spec)
    assert done.folder == tmp_path / "data" / src.name and sorted(p.name for p in done.folder.iterdir()) == ["0", "1", "2"]


def test_the_shipped_sources_table_pins_every_source_it_can():
    items = sources.load()
    assert set(items) == {"iwildcam", "fmow", "imagenet-v2"}
    wild = items["iwildcam"]
    assert [s.name for s in wild.sources] == ["wilds", "hf-emmilly"]  # the official one first
    assert {(s.size, s.sha256) for s in wild.sources} == {
        (11957415473, "05c872f46eee44315f79bc90f4098c69ae3799a2b95116db02292ea1b4e370d2")}
    v2 = items["imagenet-v2"].sources[0]
    assert v2.resolve() == ("https://huggingface.co/datasets/vaishaal/ImageNetV2/resolve/"
                            "d626240be2538720e83103a0e1178d24aca8b12c/imagenetv2-matched-frequency.tar.gz")
    assert not items["fmow"].sources[0].pinned and items["fmow"].sources[0].approx_size == 53893324800
    from bench.datasets import DATASETS

    assert all(item.dataset in DATASETS.names() for item in items.values())


@pytest.mark.parametrize("entry, message", [
    ({"name": "a", "kind": "http", "url": "http://x/a", "size": 5, "sha256": "abc"}, "is not 64 hex digits"),
    ({"name": "a", "kind": "http", "url": "http://x/a", "sha256": "0" * 64}, "pin both sha256 and size"),
    ({"name": "a", "kind": "ftp", "url": "ftp://x/a"}, "kind 'ftp' is not one of http, hf"),
    ({"name": "a", "kind": "http", "url": "x/a"}, "needs a url starting with http"),
    ({"name": "a", "kind": "hf", "repo": "x/y"}, "'file' must be a non-empty string"),
    ({"name": "a", "kind": "http", "url": "http://x/a", "md5": "1"}, "unknown key 'md5'"),
])
def test_a_bad_sources_table_is_one_line(tmp_path, entry, message):
    spec = table(tmp_path, wildcam_item(entry))
    with pytest.raises(BenchError, match=message):
        download("local-iwildcam", tmp_path / "data", sources_file=spec)
    assert not (tmp_path / "data").exists()


def test_the_cli_lists_sources_and_refuses_unknown_names(tmp_path):
    def bench(*args):
        return subprocess.run([sys.executable, "-m", "bench", "data", "download", *args], capture_output=True,
                              text=True, timeout=120)

    listed = bench()
    assert listed.returncode == 0 and "hf-vaishaal" in listed.stdout and "unpinned" in listed.stdout
    wrong = bench("iwildcm", "--data-root", str(tmp_path))
    assert wrong.returncode == 2 and wrong.stderr.strip().splitlines() == [
        "bench: error: bench cannot download 'iwildcm'; did you mean 'iwildcam'? downloadable: iwildcam, fmow, "
        "imagenet-v2 (others: `bench data check iwildcm` says where the files go)"]
    source = bench("iwildcam", "--source", "nope", "--data-root", str(tmp_path / "d"))
    assert source.returncode == 2 and "iwildcam has no source 'nope'; its sources: wilds, hf-emmilly" in source.stderr
    assert not (tmp_path / "d").exists()
