"""Evaluation decodes once: all of a run's variants are scored on each batch as it is read, and give the metrics and
predictions that scoring them one pass each gives."""
import torch

from bench.datasets.wilds_data import IWildCam
from bench.engine.evaluation import predict, predict_many
from bench.models import load_clip
from conftest import count_opens, run_with_inputs
from fixtures import make_iwildcam

SETTINGS = ["steps=4", "eval_every=2", "batch_size=8", "warmup=1", "eval_batch_size=16"]


def test_predict_many_reads_each_image_once_and_gives_each_models_own_logits(tmp_path, monkeypatch):
    make_iwildcam(tmp_path)
    clip, info = load_clip("bench-tinyclip", "tinyshift")[:2]
    split = IWildCam(info, tmp_path).split("ood_test")
    torch.manual_seed(0)
    models = [torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * info.image_size ** 2, 5)) for _ in range(3)]
    alone = [predict(m, split, 7, torch.device("cpu"))[0] for m in models]
    opened = count_opens(monkeypatch)
    together, labels = predict_many(models, split, 7, torch.device("cpu"))
    assert len(opened) == len(split)  # one read per image, not one per model
    assert all(torch.equal(a, b) for a, b in zip(alone, together)) and torch.equal(labels, split.labels)


def test_wiseft_variants_scored_in_one_pass_equal_one_pass_each(tmp_path, monkeypatch):
    make_iwildcam(tmp_path / "data")
    kwargs = dict(dataset="iwildcam", data_root=tmp_path / "data", model="bench-tinyclip", pretrained="tinyshift",
                  settings=SETTINGS, base_settings=False)
    opened = count_opens(monkeypatch)
    monkeypatch.setenv("BENCH_EVAL_MODELS_AT_ONCE", "1")
    one_each, _ = run_with_inputs("wiseft", tmp_path / "one-each", **kwargs)
    reads_one_each = len(opened)
    monkeypatch.delenv("BENCH_EVAL_MODELS_AT_ONCE")
    opened.clear()
    once, _ = run_with_inputs("wiseft", tmp_path / "once", **kwargs)
    models = once["timing"]["eval_models"]
    assert models > 2 and once["timing"]["eval_passes"] == 1 and one_each["timing"]["eval_passes"] == models
    evaluated = sum(once["split_sizes"][s] for s in once["metrics"])
    assert reads_one_each - len(opened) == (models - 1) * evaluated  # the variants' extra reads are gone
    assert once["variants"] == one_each["variants"] and once["metrics"] == one_each["metrics"]
    assert once["predictions"]["sha256"] == one_each["predictions"]["sha256"]
