"""The ImageNet family on fixture folders: layouts, class-subset projections checked by hand, every method."""
import pytest
import torch
from PIL import Image

from bench.datasets.imagenet import ImageNet
from bench.datasets.transforms import PRE_STEPS
from bench.errors import BenchError
from bench.models import load_clip
from conftest import run_with_inputs
from fixtures import IMAGENET_WNIDS, make_imagenet_family
from test_wilds import ALL_METHODS, EXTRA, TINY_REAL

OOD = ("imagenet-v2", "imagenet-r", "imagenet-a", "imagenet-sketch", "objectnet")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_imagenet_family(tmp_path_factory.mktemp("imagenet"))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("store")  # shared, so the 1000-class head is built once


@pytest.fixture(scope="module")
def ds(root):
    return ImageNet(load_clip("bench-tinyclip", "tinyshift")[1], root)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_every_method_runs_on_fixture_imagenet(method, root, store):
    record, status = run_with_inputs(method, store, dataset="imagenet", data_root=root, model="bench-tinyclip",
                                     pretrained="tinyshift", base_settings=False,
                                     settings=TINY_REAL + ["prompts=simple"], extra=EXTRA.get(method, []))
    assert status == "done" and record["official"] is False
    assert set(record["metrics"]) == {"id_val", "id_test", *OOD} | ({"ood_val"} if method == "autoft" else set())
    assert record["summary"]["ood_avg"] == pytest.approx(sum(record["metrics"][s]["acc"] for s in OOD) / 5)
    assert set(record["data_access"].get("train", [])) <= {"train", "id_val", "ood_val"}


def test_splits_and_holdout(ds):
    train, val = ds.split("train"), ds.split("id_val")
    assert len(train) == 4 * 4 and len(val) == 4 * 10 and not set(train.paths) & set(val.paths)
    assert len(ds.split("id_test")) == 12 and len(ds.split("ood_val")) == 15 * 4
    assert ds.split("imagenet-v2").labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert ds.classnames[0] == "tench" and len(ds.classnames) == 1000


def test_r_and_a_restrict_the_logits_to_their_classes(ds):
    split = ds.split("imagenet-r")
    assert split.class_subset == [0, 1, 3]
    logits = torch.zeros(len(split), 1000)
    logits[:, 500] = 10.0  # the best class overall is outside the subset: ignored
    for i, y in enumerate(split.labels.tolist()):
        logits[i, y] = 5.0 if i % 2 == 0 else 0.0  # right on even rows
        logits[i, 3 if y != 3 else 0] = 1.0  # a wrong subset class beats the odd rows
    assert ds.metrics("imagenet-r", logits, split.labels)["acc"] == pytest.approx(50.0)
    assert ds.split("imagenet-a").class_subset == [1, 2]


def test_objectnet_maps_folders_to_groups_of_imagenet_classes(ds):
    folders, groups = ds.objectnet_classes()
    assert folders == {"alarm_clock": 0, "banana": 1} and groups == [[0, 2], [3]]  # zipper does not overlap
    split = ds.split("objectnet")
    assert len(split) == 6 and split.labels.tolist() == [0, 0, 0, 1, 1, 1]
    logits = torch.zeros(6, 1000)
    logits[0, 2] = 3.0  # alarm clock via its second ImageNet class: right
    logits[1, 3] = 3.0  # banana: wrong
    logits[2, 0] = 3.0  # right
    logits[3:, 3] = 3.0  # right
    assert ds.metrics("objectnet", logits, split.labels)["acc"] == pytest.approx(100 * 5 / 6)


def test_objectnet_border_is_cropped(ds, tmp_path):
    image = Image.new("RGB", (34, 34), (255, 0, 0))
    image.paste(Image.new("RGB", (32, 32), (0, 0, 255)), (1, 1))
    split = ds.split("objectnet")
    assert split.pre == "border-1px"  # a named pre-step, so a prepared copy records it
    tensor = split.transform(PRE_STEPS[split.pre](image))
    info = ds.model_info
    red = (1.0 - info.mean[0]) / info.std[0]
    assert tensor.shape == (3, 32, 32) and tensor[0].max() < red - 0.5  # no red border pixel survived


def test_bad_folders_name_the_problem(tmp_path, ds):
    info = ds.model_info
    (tmp_path / "imagenet" / "val" / "n00000001").mkdir(parents=True)
    with pytest.raises(BenchError, match="has 1 class folders, not 1000"):
        ImageNet(info, tmp_path).classnames
    root = make_imagenet_family(tmp_path / "x")
    (root / "imagenet-r" / "not_a_wnid").mkdir()
    with pytest.raises(BenchError, match="not ImageNet wnids, e.g. not_a_wnid"):
        ImageNet(info, root).split("imagenet-r")
    (root / "imagenetv2-matched-frequency-format-val" / "cat").mkdir()
    with pytest.raises(BenchError, match="is not a class index"):
        ImageNet(info, root).split("imagenet-v2")
    (root / "objectnet-1.0" / "mappings" / "objectnet_to_imagenet_1k.json").write_text("{broken")
    with pytest.raises(BenchError, match="ObjectNet mapping files .* malformed"):
        ImageNet(info, root).split("objectnet")
    assert IMAGENET_WNIDS[0] == "n00000000"
