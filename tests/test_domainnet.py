import pytest

from bench.datasets.domainnet import DomainNet
from bench.errors import BenchError
from bench.models import load_clip
from conftest import run_with_inputs
from fixtures import make_domainnet
from test_wilds import ALL_METHODS, EXTRA, TINY_REAL


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("dn")
    make_domainnet(root)
    return root


@pytest.fixture(scope="module")
def info():
    return load_clip("bench-tinyclip", "tinyshift")[1]


@pytest.mark.parametrize("method", ALL_METHODS)
def test_every_method_runs_on_fixture_domainnet(method, data_root, tmp_path):
    record, status = run_with_inputs(method, tmp_path / "runs", dataset="domainnet", data_root=data_root,
                                     model="bench-tinyclip", pretrained="tinyshift", base_settings=False,
                                     settings=TINY_REAL, extra=EXTRA.get(method, []))
    assert status == "done"
    evaluated = {"id_val", "id_test", "sketch", "painting", "clipart", "infograph"}
    assert set(record["metrics"]) == evaluated | ({"ood_val"} if method == "autoft" else set())  # OOD val: its reader
    assert set(record["data_access"].get("train", [])) <= {"train", "id_val", "ood_val"}


def test_classes_splits_and_holdout(data_root, info):
    ds = DomainNet(info, data_root)
    assert ds.classnames == ("aircraft carrier", "apple", "zebra")
    train, val = ds.split("train"), ds.split("id_val")
    assert len(train) + len(val) == 24 and len(val) == 15  # 5 held out per class, from real_train only
    assert not set(train.paths) & set(val.paths)
    assert all("/real/" in str(p) for p in train.paths + val.paths)
    assert all("/sketch/" in str(p) for p in ds.split("sketch").paths)
    assert all("/quickdraw/" in str(p) for p in ds.split("ood_val").paths)


def test_missing_and_malformed_domainnet(tmp_path, info):
    with pytest.raises(BenchError, match="DomainNet folder .*domainnet is missing"):
        DomainNet(info, tmp_path).split("train")
    folder = make_domainnet(tmp_path / "x")
    (folder / "sketch_test.txt").write_text("sketch/apple/a.jpg\n")
    with pytest.raises(BenchError, match="sketch_test.txt line 1 is malformed"):
        DomainNet(info, tmp_path / "x").split("sketch")
    (folder / "clipart_test.txt").unlink()
    with pytest.raises(BenchError, match="clipart_test.txt is missing"):
        DomainNet(info, tmp_path / "x").split("clipart")
