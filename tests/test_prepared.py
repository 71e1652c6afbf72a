"""`bench data prepare`: a split's prepared copy gives the evaluation exactly the pixels decoding the files gives
(so runs without augmentation are identical), is used automatically, recorded, and ignored when it is stale."""
import json

import numpy as np
import pytest
import torch

from bench.cli import main
from bench.data_cli import prepare
from bench.datasets.imagenet import ImageNet
from bench.datasets.prepared import PreparedImages, prepared_folder
from bench.datasets.wilds_data import IWildCam
from bench.models import load_clip
from conftest import count_opens, run_method
from fixtures import make_imagenet_family, make_iwildcam

SETTINGS = ["steps=2", "eval_every=1", "batch_size=8", "warmup=1", "eval_batch_size=16"]


@pytest.fixture(scope="module")
def tiny():
    return load_clip("bench-tinyclip", "tinyshift")[1]


def test_prepared_items_equal_decoded_items_under_the_evaluation_transform(tmp_path, tiny, monkeypatch):
    make_imagenet_family(tmp_path)
    done = prepare("imagenet", tmp_path, size=tiny.image_size, force=False)
    assert {split for split, _, made in done if made} >= {"train", "id_test", "objectnet", "imagenet-sketch"}
    plain, fast = ImageNet(tiny, tmp_path), ImageNet(tiny, tmp_path)
    monkeypatch.setenv("BENCH_PREPARED", "0")
    decoded = {s: [plain.split(s)[i][0] for i in range(len(plain.split(s)))] for s in ("objectnet", "id_test", "imagenet-sketch")}
    monkeypatch.delenv("BENCH_PREPARED")
    opened = count_opens(monkeypatch)
    for split, items in decoded.items():
        data = fast.split(split)
        assert data.prepared is not None and all(torch.equal(data[i][0], x) for i, x in enumerate(items))
    assert opened == []  # nothing was decoded from the files
    objectnet = fast.split("objectnet")  # the 1-px border crop happened before the resize: 34x34 -> 32x32
    assert tuple(objectnet.prepared.array(0).shape) == (tiny.image_size, tiny.image_size, 3)
    part = objectnet.with_transform(objectnet.transform).subset(torch.tensor([4, 1]))
    assert torch.equal(part[0][0], decoded["objectnet"][4]) and torch.equal(part[1][0], decoded["objectnet"][1])


def test_the_store_holds_each_image_resized_shorter_side_at_its_offset(tmp_path, tiny):
    make_iwildcam(tmp_path)
    (split, folder, made), *_ = prepare("iwildcam", tmp_path, size=20)
    stored = PreparedImages(folder)
    assert made and split == "train" and len(stored) == 48
    offsets, heights, widths = stored.index.T
    assert (heights == 20).all() and (widths == 26).all()  # 40x30 -> shorter side 20, longer int(20 * 40 / 30)
    assert (offsets == np.arange(48) * 20 * 26 * 3).all()
    assert (folder / "images.u8").stat().st_size == 48 * 20 * 26 * 3
    again = prepare("iwildcam", tmp_path, size=20)
    assert not any(made for _, _, made in again)  # up to date: nothing rewritten


def test_a_zero_shot_and_a_linear_probe_run_give_identical_results_from_the_prepared_copy(tmp_path, monkeypatch):
    data = tmp_path / "data"
    make_iwildcam(data)
    kwargs = dict(dataset="iwildcam", data_root=data, model="bench-tinyclip", pretrained="tinyshift",
                  settings=SETTINGS, base_settings=False)
    plain = {m: run_method(m, tmp_path / "plain", **kwargs)[0] for m in ("zeroshot", "lp")}
    assert main(["data", "prepare", "iwildcam", "--data-root", str(data), "--model", "bench-tinyclip",
                 "--workers", "2"]) == 0
    opened = count_opens(monkeypatch)
    fast = {m: run_method(m, tmp_path / "fast", **kwargs)[0] for m in ("zeroshot", "lp")}
    assert opened == []
    for m in plain:
        assert fast[m]["run_id"] == plain[m]["run_id"]
        assert fast[m]["metrics"] == plain[m]["metrics"] and fast[m]["variants"] == plain[m]["variants"]
        assert fast[m]["predictions"]["sha256"] == plain[m]["predictions"]["sha256"]
        assert "prepared" not in plain[m]["data"] and set(fast[m]["data"]["prepared"].values()) == {"32px"}


def test_a_copy_made_from_other_files_is_not_used(tmp_path, tiny, capsys):
    make_iwildcam(tmp_path)
    prepare("iwildcam", tmp_path, size=tiny.image_size)
    image = IWildCam(tiny, tmp_path).split("ood_test").paths[3]
    image.write_bytes(image.read_bytes() + b"\0")  # a re-downloaded file: another size
    split = IWildCam(tiny, tmp_path).split("ood_test")
    assert split.prepared is None and "was made from other files" in capsys.readouterr().err
    assert IWildCam(tiny, tmp_path).split("train").prepared is not None  # the other splits' copies still match


def test_bad_prepare_requests_fail_in_one_line_before_writing(tmp_path, capsys):
    make_iwildcam(tmp_path)
    bad = [
        (["tinyshift"], "embedded"),
        (["imagenet"], "imagenet"),  # its folders are absent
        (["iwildcam", "--size", "3"], "--size 3 is out of range"),
        (["iwildcam", "--model", "ViT-B-99"], "unknown model"),
        (["iwildcam", "--workers", "-1"], "--workers -1 is out of range"),
    ]
    for extra, said in bad:
        assert main(["data", "prepare", *extra, "--data-root", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert said in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "prepared").exists()


def test_an_unreadable_image_leaves_no_partial_copy(tmp_path, capsys):
    make_iwildcam(tmp_path)
    image = IWildCam(load_clip("bench-tinyclip", "tinyshift")[1], tmp_path).split("id_val").paths[0]
    image.write_bytes(b"not a jpeg")
    assert main(["data", "prepare", "iwildcam", "--data-root", str(tmp_path), "--size", "32", "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "is corrupt or unreadable" in err and len(err.strip().splitlines()) == 1
    folder = prepared_folder(tmp_path, "iwildcam", 32, "id_val")
    assert not folder.exists() and not list(folder.parent.glob(".*partial"))
    assert json.loads((prepared_folder(tmp_path, "iwildcam", 32, "train") / "manifest.json").read_text())["count"] == 48
