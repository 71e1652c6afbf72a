"""Every method end to end on the embedded testbed with a tiny budget, and the protocol's guarantees."""
from pathlib import Path

import pytest
import torch

from bench.datasets.tinyshift import TinyShift
from bench.errors import BenchError
from bench.methods import BUILTIN_METHODS, METHODS, Method
from bench.models import ASSET_DIR
from bench.plugins import load_plugin
from bench.engine.access import ProtocolViolation
from bench.protocols.tinyshift import TINYSHIFT
from bench.store import RunStore
from conftest import stored_records, INPUT_RUNS, TINY, run_method, run_with_inputs

EXAMPLE_PLUGIN = Path(__file__).resolve().parent.parent / "examples" / "label_smoothing_plugin.py"
load_plugin(EXAMPLE_PLUGIN)
BUILTINS = sorted(BUILTIN_METHODS)  # discovered from bench/methods/: a new method file is tested with no edit here
EXTRA = {"autoft": ["trials=2", "inner_steps=2", "ood_val_size=60"],  # a tiny search budget
         "lp": ["c_steps=6"], "lpft": ["c_steps=6"],  # a short C sweep (standardised features converge slowly)
         "tpgm": ["iters=5"], "lipsum": ["texts=8"]}
SPLITS = {"id_val", "id_test", *TINYSHIFT.ood_test_splits}  # + ood_val for the methods that read it


def check_record(record, method):
    assert record["method"] == method and record["dataset"] == "tinyshift"
    assert record["protocol"] == {"name": "tinyshift", "version": 1, "id": "tinyshift@1"}
    assert record["official"] is False  # the tiny budget overrides protocol settings
    reads_ood_val = "ood_val" in METHODS.get(method).requires
    evaluated = SPLITS | ({"ood_val"} if reads_ood_val else set())
    assert set(record["metrics"]) == evaluated
    assert all(0.0 <= m["acc"] <= 100.0 for m in record["metrics"].values())
    ood = [record["metrics"][s]["acc"] for s in TINYSHIFT.ood_test_splits]
    assert record["summary"]["ood_avg"] == pytest.approx(sum(ood) / len(ood))
    assert record["summary"]["id"] == record["metrics"]["id_test"]["acc"]
    model = record["model"]
    assert (model["arch"], model["pretrained"], model["activation"]) == ("bench-tinyclip", "tinyshift", "gelu")
    assert model["weights_sha256"] == (ASSET_DIR / "tinyclip-tinyshift.sha256").read_text().split()[0]
    assert record["env"]["packages"]["torch"] and "sha" in record["env"]["git"]
    assert record["timing"]["total_s"] > 0 and record["timing"]["peak_memory"]["mb"] > 0
    assert record["variants"][record["reported_variant"]]["metrics"] == record["metrics"]
    # the protocol guard: nothing but ID train/val (and OOD val when requested) before the final evaluation
    allowed = {"train", "id_val"} | ({"ood_val"} if reads_ood_val else set())
    assert set(record["data_access"].get("train", [])) <= allowed
    assert set(record["data_access"]["final_eval"]) == evaluated
    assert record["seed"] == 0 and record["config"]["seed"] == 0
    assert record["split_sizes"]["id_test"] == 300 and record["split_sizes"]["sketch"] == 300
    from bench.testbed.data import CLASSNAMES, TEMPLATES

    assert record["classes"]["names"] == list(CLASSNAMES) and "digit words" in record["classes"]["source"]
    assert record["templates"] == list(TEMPLATES)


def test_per_example_predictions_reproduce_every_metric(store):
    import hashlib

    import numpy as np

    from bench.testbed.data import render_split

    record, _ = run_method("wiseft", store)
    folder = next(Path(store).rglob("record.json")).parent
    blob = (folder / record["predictions"]["file"]).read_bytes()
    assert hashlib.sha256(blob).hexdigest() == record["predictions"]["sha256"]
    with np.load(folder / "predictions.npz") as saved:
        for variant, values in record["variants"].items():
            for split, metrics in values["metrics"].items():
                labels = render_split(split)[1].numpy()
                top1 = saved[f"{variant}|{split}"]
                assert top1.dtype == np.int32 and (saved[f"ids|{split}"] == np.arange(len(labels))).all()
                assert 100.0 * (top1 == labels).mean() == pytest.approx(metrics["acc"])


@pytest.mark.parametrize("method", BUILTINS + ["ls-ft"])
def test_every_method_produces_a_complete_record(method, store):
    record, status = run_with_inputs(method, store, extra=EXTRA.get(method, ()))
    assert status == "done"
    check_record(record, method)
    on_disk = stored_records(store)
    assert len(on_disk) == 1 + len(INPUT_RUNS.get(method, ())) and record["run_id"] in {r["run_id"] for r in on_disk}
    inputs = [r["run_id"] for r in on_disk if r["method"] == "ft" and method != "ft"]
    assert sorted(record["config"].get("inputs", [])) == sorted(inputs)  # a consumer names the runs it started from
    assert ("weights" in record) == (METHODS.get(method).trains)  # a trained model is kept for consumers
    if method in ("wiseft", "flyp", "ftp", "autoft", "lora", "spd", "carot", "r-adapter"):  # weight-ensemble variants: the "+WE" rows
        assert {f"alpha={a:g}" for a in (0, 0.5, 1)} <= set(record["variants"])
    if METHODS.get(method).trains:
        assert record["timing"]["train_steps"] == 6 and record["selection"]["best_step"] in (3, 6)
        assert record["history"][-1]["step"] == 6


def test_conformance_covers_every_registered_method():
    assert set(BUILTINS) | {"ls-ft"} >= set(METHODS.names()) - {n for n in METHODS.names() if n.startswith(("test-", "attack-"))}  # registered by other test files


def test_wiseft_endpoints_reproduce_zero_shot_and_ft_exactly(store):
    wise, _ = run_method("wiseft", store)
    ft, _ = run_method("ft", store)
    zs, _ = run_method("zeroshot", store)
    assert wise["variants"]["alpha=0"]["metrics"] == zs["metrics"]
    assert wise["variants"]["alpha=1"]["metrics"] == ft["metrics"]
    assert wise["reported_variant"] == "alpha=0.5"
    assert wise["metrics"] == wise["variants"]["alpha=0.5"]["metrics"]
    assert sorted(v["alpha"] for n, v in wise["variants"].items() if n != "final") == [round(0.1 * i, 1) for i in range(11)]
    # alpha = 1 is the fine-tuned model itself: evaluated once, listed under both names
    assert wise["evaluation"]["same_model"] == {"alpha=1": "final"} and wise["timing"]["eval_models"] == 11
    test_images = sum(wise["split_sizes"][s] for s in ("id_val", "id_test", *TINYSHIFT.ood_test_splits))
    assert wise["timing"]["eval_images"] == 11 * test_images and "ood_val" not in wise["split_sizes"]


def test_final_evaluation_scores_ood_val_only_on_the_subset_its_reader_could_read(store):
    import numpy as np

    class Reader(Method):
        requires = frozenset({"ood_val"})
        trains = False

        def info(self):
            split = self.ctx.split("ood_val")
            return {"n": len(split), "labels": split.labels.tolist()}

    METHODS.add("test-ood-reader", Reader)
    record, _ = run_method("test-ood-reader", store, settings=["ood_val_size=60"])
    assert record["method_info"]["n"] == 60 == record["split_sizes"]["ood_val"]
    folder = next(Path(store).rglob("record.json")).parent
    with np.load(folder / "predictions.npz") as saved:
        ids = saved["ids|ood_val"]
    from bench.testbed.data import render_split

    full_labels = render_split("ood_val")[1]
    assert len(set(ids.tolist())) == 60 and ids.max() < len(full_labels) == 200
    assert full_labels[torch.as_tensor(ids, dtype=torch.long)].tolist() == record["method_info"]["labels"]


def test_finished_run_is_skipped_and_force_redoes_it(store):
    first, status1 = run_method("ft", store)
    again, status2 = run_method("ft", store)
    assert (status1, status2) == ("done", "skipped")
    assert again == first
    redone, status3 = run_method("ft", store, force=True)
    assert status3 == "done"
    assert redone["metrics"] == first["metrics"]  # CPU runs are deterministic
    assert len(stored_records(store)) == 1


def test_seeds_are_separate_runs(store):
    a, _ = run_method("ft", store, seed=0)
    b, _ = run_method("ft", store, seed=1)
    assert a["run_id"] != b["run_id"]
    assert len(stored_records(store)) == 2


def test_interrupted_run_resumes_and_matches_an_uninterrupted_one(tmp_path):
    from bench.runner import RunRequest, execute
    from conftest import TINY

    request = RunRequest(method="ft", out=tmp_path / "a", settings=list(TINY))
    with pytest.raises(KeyboardInterrupt):
        execute(request, stop_after=3)
    assert stored_records(tmp_path / "a") == []  # nothing mistaken for a result
    assert list((tmp_path / "a").rglob("checkpoint.pt"))
    resumed, status = execute(request)
    assert status == "done" and resumed["timing"]["resumed_from_step"] == 3
    assert not list((tmp_path / "a").rglob("checkpoint.pt"))
    fresh, _ = execute(RunRequest(method="ft", out=tmp_path / "b", settings=list(TINY)))
    assert resumed["metrics"] == fresh["metrics"] and resumed["history"] == fresh["history"]


class Peeker(Method):
    description = "reads an OOD test split while building its model (must be refused)"

    def build(self):
        self.ctx.split("sketch")
        return super().build()


class OODSearcher(Method):
    description = "declares OOD-val access, as AutoFT will"
    requires = frozenset({"ood_val"})

    def build(self):
        self.ctx.split("ood_val")
        return super().build()


def test_reading_ood_test_data_during_training_is_refused(store):
    METHODS.add("test-peeker", Peeker)
    with pytest.raises(ProtocolViolation, match="unknown split role 'sketch'"):
        run_method("test-peeker", store)
    assert stored_records(store) == []


def test_ood_val_is_granted_only_to_methods_that_declare_it(store):
    METHODS.add("test-oodsearcher", OODSearcher)
    record, _ = run_method("test-oodsearcher", store)
    assert record["data_access"]["train"] == ["id_val", "ood_val", "train"]

    class Sneaky(Method):
        def build(self):
            self.ctx.split("ood_val")

    METHODS.add("test-sneaky", Sneaky)
    with pytest.raises(ProtocolViolation, match="ood_val"):
        run_method("test-sneaky", store)


def test_scrambling_ood_test_data_changes_nothing_before_the_final_evaluation(tmp_path, monkeypatch):
    clean, _ = run_method("lpft", tmp_path / "clean", settings=["c_steps=6"])
    original = TinyShift.load_split

    def scrambled(self, name):
        split = original(self, name)
        if name in TINYSHIFT.ood_test_splits:
            g = torch.Generator().manual_seed(1)
            split.images = torch.randn(split.images.shape, generator=g)
            split.labels = split.labels[torch.randperm(len(split.labels), generator=g)]
        return split

    monkeypatch.setattr(TinyShift, "load_split", scrambled)
    dirty, _ = run_method("lpft", tmp_path / "dirty", settings=["c_steps=6"])
    assert dirty["history"] == clean["history"] and dirty["selection"] == clean["selection"]
    assert dirty["method_info"]["linear_probe"]["C"] == clean["method_info"]["linear_probe"]["C"]
    for split in ("id_val", "id_test"):
        assert dirty["metrics"][split] == clean["metrics"][split]
    assert dirty["summary"]["ood_avg"] != clean["summary"]["ood_avg"]


def test_lp_chooses_c_by_id_val(store):
    record, _ = run_method("lp", store, settings=["c_steps=8"])
    info = record["method_info"]["linear_probe"]
    best = max(acc for _, acc in info["c_sweep"])
    assert info["id_val_acc_at_C"] == best
    assert record["metrics"]["id_val"]["acc"] == pytest.approx(best)
    assert record["data_access"]["train"] == ["id_val", "train"]


def test_lp_fits_on_raw_features_with_the_official_50_values_of_c(store):
    """Kumar et al.'s probe reads CLIP's raw encode_image output (not L2-normalised); its driver sweeps 50 C."""
    from bench.engine.run import build_engine, build_method
    from bench.runner import RunRequest, plan

    request = RunRequest(method="lp", out=store, settings=["c_steps=3"])
    p = plan(request)
    assert plan(RunRequest(method="lp", out=store)).hparams["c_steps"] == 50
    method = build_method(p, build_engine(p, request, None))
    raw, _ = method.ctx.frozen_features("train", normalized=False)
    unit, _ = method.ctx.frozen_features("train")
    assert not torch.allclose(raw.norm(dim=-1), torch.ones(len(raw)))
    assert torch.allclose(unit, torch.nn.functional.normalize(raw, dim=-1))
    model = method.build()
    assert model.normalize is False
    images = method.ctx.split("id_val").images[:4]
    with torch.no_grad():
        assert torch.allclose(model(images), model.head(model.visual(images)))  # the head reads raw features
        assert not torch.allclose(model(images), model.head(torch.nn.functional.normalize(model.visual(images), dim=-1)))


def test_unofficial_marking(store):
    record, _ = run_method("zeroshot", store, settings=())
    assert record["official"] is False
    with pytest.raises(BenchError, match="unknown setting"):
        run_method("zeroshot", store, settings=["alpha=0.3"])


def test_frozen_features_are_cached_across_seeds_and_methods(store, monkeypatch):
    first, _ = run_method("zeroshot", store, seed=0)
    cached = sorted((store / ".cache" / "features").glob("*.pt"))
    assert len(cached) == len(SPLITS)
    for file in cached:  # features only: no file of the cache holds labels of any split
        assert isinstance(torch.load(file, weights_only=True), torch.Tensor)
    import bench.engine.context as context

    def no_forward_pass(*args, **kwargs):
        raise AssertionError("features should have come from the cache")

    monkeypatch.setattr(context, "predict", no_forward_pass)
    second, _ = run_method("zeroshot", store, seed=1)
    assert second["metrics"] == first["metrics"]
    monkeypatch.undo()
    run_method("lp", store, settings=["c_steps=3"])  # re-uses id_val's features; computes train's once
    assert len(sorted((store / ".cache" / "features").glob("*.pt"))) == len(SPLITS) + 1  # + train


def test_a_resumed_best_state_is_moved_to_the_models_device(tmp_path, monkeypatch):
    """Checkpoints load to the CPU; on a GPU a best state from before an interruption that is never beaten would
    stay there and break weight ensembling. Checked without a GPU: the restore targets the model's device
    (exercised with the meta device), and a resumed WiSE-FT run hands interpolation tensors on one device."""
    import bench.engine.run as run_module
    import bench.engine.trainer as trainer
    from bench.engine.trainer import on_device

    meta = on_device({"w": torch.ones(2)}, torch.device("meta"))
    assert meta["w"].device.type == "meta"
    targets = []
    monkeypatch.setattr(trainer, "on_device", lambda state, device: targets.append(device) or on_device(state, device))
    devices = []
    original = run_module.interpolate

    def spy(theta0, theta1, alpha):
        devices.append({t.device for t in (*theta0.values(), *theta1.values())})
        return original(theta0, theta1, alpha)

    monkeypatch.setattr(run_module, "interpolate", spy)
    from bench.runner import RunRequest, execute

    request = RunRequest(method="wiseft", out=tmp_path, settings=list(TINY))
    with pytest.raises(KeyboardInterrupt):
        execute(request, stop_after=3)
    execute(request)
    assert targets == [torch.device("cpu")] and devices and all(len(d) == 1 for d in devices)
    with pytest.raises(ValueError, match="tensors on meta and cpu"):
        original({"w": torch.ones(2, device="meta")}, {"w": torch.ones(2)}, 0.5)


def test_eval_cost_table_counts_images_by_hand(capsys):
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "eval_cost.py"
    spec = importlib.util.spec_from_file_location("eval_cost", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main()
    iwildcam = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("| wilds-iwildcam@1"))
    tests = 8_154 + 42_791  # id_test + ood_test
    ft_before, ft_now = 7_314 + 14_961 + tests, 7_314 + tests  # id_val (+ the whole OOD val before)
    assert f"{ft_before:,} → {ft_now:,}" in iwildcam
    assert f"{12 * ft_before:,} → {11 * ft_now:,}" in iwildcam  # alpha = 1 no longer again as `final`
    assert f"{11 * (ft_now + 1_000):,}" in iwildcam  # AutoFT: its 1,000-example OOD-val subset
