"""Attacks on the protocol from a plugin method: every route is refused, or fails the run; nothing is stored.

One plugin per route found so far (issue: "A sealed engine"). Routes through public names are closed; routes
through private state are out of scope (README: "Threat model") but the dataset gate still refuses the obvious
ones.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.config import Option
from bench.engine.access import ProtocolViolation
from bench.errors import BenchError
from bench.methods import METHODS, Method
from bench.protocols.tinyshift import TINYSHIFT
from bench.store import RunStore
from conftest import stored_records, run_method

TEST_SPLITS = {TINYSHIFT.id_test_split, *TINYSHIFT.ood_test_splits}


def attack(name: str, build):
    """Register a plugin whose build() runs `build(self)` before building the zero-shot model."""
    cls = type(f"Attack_{name}", (Method,), {"description": f"attack: {name}",
                                             "build": lambda self: (build(self), Method.build(self))[1]})
    METHODS.add(f"attack-{name}", cls)
    return f"attack-{name}"


def assert_refused(store, name, error=ProtocolViolation, match=None):
    with pytest.raises(error, match=match):
        run_method(name, store)
    assert stored_records(store) == [] and not list(Path(store).rglob("record.json"))


def _split_through_view_dataset(self):
    self.ctx.dataset.split("sketch")


def _split_through_view_data(self):
    self.ctx.data.dataset.split("sketch")


def _undeclared_ood_val(self):
    self.ctx.split("ood_val")


def _test_split_by_role(self):
    self.ctx.split("id_test")


def _unaugmented_test_split(self):  # the evaluation-preprocessing route VRF's training features take
    self.ctx.split("sketch", augmented=False)


def _metrics_of_a_test_split(self):
    self.ctx.metrics("neon", torch.zeros(300, 10), torch.zeros(300, dtype=torch.long))


def _features_of_a_test_split(self):
    self.ctx.frozen_features("sketch")


def _feature_cache_folder(self):
    return self.ctx.cache_dir


def _edit_the_log(self):
    self.ctx.data.reads.clear()


def _replace_a_view_attribute(self):
    self.ctx.split = lambda role: None


def _open_final_evaluation(self):
    self.ctx.data.open_for_final_evaluation()


ROUTES = {
    # a route that does not exist fails the plugin's build, reported as such (BenchError), and nothing is stored
    "view-dataset": (_split_through_view_dataset, BenchError, "no attribute 'dataset'"),
    "view-data": (_split_through_view_data, BenchError, "no attribute 'data'"),
    "undeclared-ood-val": (_undeclared_ood_val, ProtocolViolation, "'ood_val' is not granted"),
    "test-role": (_test_split_by_role, ProtocolViolation, "unknown split role 'id_test'"),
    "test-unaugmented": (_unaugmented_test_split, ProtocolViolation, "unknown split role 'sketch'"),
    "test-metrics": (_metrics_of_a_test_split, ProtocolViolation, "unknown split role 'neon'"),
    "test-features": (_features_of_a_test_split, ProtocolViolation, "unknown split role 'sketch'"),
    "cache-folder": (_feature_cache_folder, BenchError, "no attribute 'cache_dir'"),
    "edit-log": (_edit_the_log, BenchError, "no attribute 'data'"),
    "replace-view-attribute": (_replace_a_view_attribute, ProtocolViolation, "read-only"),
    "open-final-eval": (_open_final_evaluation, BenchError, "no attribute 'data'"),
}


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_every_route_to_test_data_or_the_log_is_closed(store, route):
    build, error, match = ROUTES[route]
    assert_refused(store, attack(route, build), error, match)


def test_calling_the_testbed_renderer_directly_is_refused_during_a_run(store):
    from bench.testbed import data

    name = attack("renderer", lambda self: data.render_split("neon"))
    assert_refused(store, name, match="'neon' may not be read during train")
    assert data.render_split("id_val")[0].shape[0] == 200  # outside a run the renderer serves anyone


def test_a_caught_refusal_still_fails_the_run(store):
    from bench.testbed import data

    def swallow(self):
        for attempt in (lambda: data.render_split("sketch"), lambda: self.ctx.split("id_test")):
            try:
                attempt()
            except ProtocolViolation:
                pass

    assert_refused(store, attack("swallow", swallow), match="the run is not stored")


def test_the_dataset_gate_refuses_even_through_private_state(store):
    # Private attributes are out of scope (README), but the adapter itself is gated by the guard.
    name = attack("private", lambda self: self.ctx._engine.dataset.split("painting"))
    assert_refused(store, name, match="'painting' may not be read during train")


def test_the_guard_cannot_open_the_test_splits_before_the_model_is_fixed(store):
    name = attack("guard-open", lambda self: self.ctx._engine.guard.open_final_evaluation())
    assert_refused(store, name, match="only after the model is fixed")


def _reachable(obj, depth=3, seen=None):
    """Every object reachable from `obj` through public (non-underscore) attributes and zero-argument results."""
    seen = {} if seen is None else seen
    if id(obj) in seen or depth < 0 or isinstance(obj, (str, bytes, int, float, bool, type(None), torch.Tensor)):
        return seen
    seen[id(obj)] = obj
    if isinstance(obj, torch.nn.Module):
        return seen  # weights only (the pretrained CLIP, a model): no data inside
    for name in dir(obj):
        if name.startswith("_"):
            continue
        try:
            value = getattr(obj, name)
        except Exception:
            continue
        _reachable(value, depth - 1, seen)
    if isinstance(obj, dict) or hasattr(obj, "items"):
        try:
            for value in obj.values():
                _reachable(value, depth - 1, seen)
        except Exception:
            pass
    return seen


def test_nothing_public_in_the_view_leads_to_the_dataset_the_guard_or_a_path(store):
    from bench.datasets.base import DatasetAdapter
    from bench.engine.access import DataGuard
    from bench.engine.context import EngineContext

    found = {}

    class Walker(Method):
        requires = frozenset({"ood_val"})

        def build(self):
            view = self.ctx
            roots = [view, *(view.split(role) for role in ("train", "id_val", "ood_val"))]
            for root in roots:
                _reachable(root, seen=found)
            return super().build()

    METHODS.add("attack-walker", Walker)
    run_method("attack-walker", store)
    kinds = {type(o) for o in found.values()}
    assert not any(issubclass(k, (DatasetAdapter, DataGuard, EngineContext, Path)) for k in kinds), kinds
    assert len(found) > 10  # the walk did reach the view's contents


def test_the_reported_variant_is_fixed_before_any_test_split_opens(store):
    """A model that flips the method's reported choice while the test splits are evaluated changes nothing."""

    class Flipper(Method):
        ensemble_alphas = (0.0, 1.0)

        def build(self):
            model = super().build()
            cls = type(self)
            original = model.forward

            def forward(images):
                cls.reported_alpha = 0.0  # "choose" the zero-shot end after seeing test images
                return original(images)

            model.forward = forward
            return model

    METHODS.add("attack-flipper", Flipper)
    record, _ = run_method("attack-flipper", store)
    assert Flipper.reported_alpha == 0.0  # the flip happened...
    assert record["reported_variant"] == record["evaluation"]["reported"] == "final"  # ...and was ignored


def test_method_info_is_taken_before_the_test_splits_open(store):
    seen = {}

    class Late(Method):
        trains = False

        def info(self):
            try:
                self.ctx.split("train")
            except ProtocolViolation as exc:
                seen["error"] = str(exc)
            return {"phase_ok": True}

    METHODS.add("attack-late", Late)
    record, _ = run_method("attack-late", store)
    assert record["method_info"] == {"phase_ok": True} and seen == {}
    assert set(record["data_access"]["final_eval"]) >= TEST_SPLITS
    assert TEST_SPLITS.isdisjoint(record["data_access"].get("train", []))


def test_a_method_name_with_a_path_is_refused_at_registration(tmp_path):
    for name in ("../../x", "a/b", "..", "Upper"):
        with pytest.raises(BenchError, match="not allowed"):
            METHODS.add(name, type("Bad", (Method,), {}))
    assert not list(tmp_path.iterdir())


def test_declared_options_reach_the_method_and_undeclared_ones_are_refused(store):
    seen = {}

    class Optioned(Method):
        options = (Option("--where", "a run option", type=str),)

        def build(self):
            seen.update(self.ctx.options)
            return super().build()

    METHODS.add("test-optioned", Optioned)
    run_method("test-optioned", store, options={"where": "here"})
    assert seen == {"where": "here"}
    with pytest.raises(BenchError, match="takes no option other"):
        run_method("test-optioned", store, options={"other": 1})


def test_a_consuming_method_sees_its_inputs_without_their_test_metrics(store):
    seen = []

    class Consumer(Method):
        consumes = ("ft",)
        trains = False

        def build(self):
            seen.extend(self.ctx.inputs)
            return super().build()

    METHODS.add("test-consumer", Consumer)
    with pytest.raises(BenchError, match="run those first"):
        run_method("test-consumer", store)
    ft, _ = run_method("ft", store)
    record, _ = run_method("test-consumer", store)
    assert [i["run_id"] for i in seen] == [ft["run_id"]] == record["config"]["inputs"]
    assert not {"metrics", "summary", "variants"} & set(seen[0])
    assert seen[0]["selection"] == ft["selection"]


# --- routes found by red-teaming the first version of the view (each one worked then) ----------------------------

def test_the_testbed_partition_that_names_the_test_digits_is_gated(store):
    from bench.testbed import data

    assert_refused(store, attack("partition", lambda self: data.partition()["test"]), match="'id_test' may not be read")
    assert len(data.partition()["test"]) == 300  # outside a run: open


def test_method_code_cannot_read_during_the_final_evaluation(store):
    """The model's forward runs while the test splits are open; a read it makes is refused and fails the run."""
    from bench.datasets import DATASETS

    class Oracle(Method):
        trains = False

        def build(self):
            model = super().build()
            original, info = model.forward, self.ctx.model_info

            def forward(images):
                if not model.training:
                    DATASETS.get("tinyshift")(info).split("neon")  # a fresh adapter: gated all the same
                return original(images)

            model.forward = forward
            return model

    METHODS.add("attack-oracle", Oracle)
    assert_refused(store, "attack-oracle", match="requested by method code during the final evaluation")


def test_a_fresh_adapter_of_a_real_dataset_is_gated_too(store, tmp_path, monkeypatch):
    from fixtures import make_iwildcam

    from bench.datasets import DATASETS

    make_iwildcam(tmp_path / "data")
    monkeypatch.setenv("BENCH_DATA_ROOT", str(tmp_path / "data"))
    name = attack("wild", lambda self: DATASETS.get("iwildcam")(self.ctx.model_info).split("ood_test"))
    with pytest.raises(ProtocolViolation, match="'ood_test' may not be read during train"):
        run_method(name, store, dataset="iwildcam", model="bench-tinyclip", pretrained="tinyshift",
                   settings=["steps=0", "batch_size=8", "eval_batch_size=16"], base_settings=False)
    assert not list(Path(store).rglob("record.json"))


def test_editing_a_split_in_place_cannot_change_the_engines_data(store):
    clean, _ = run_method("zeroshot", store.parent / "clean")

    def poison(self):
        self.ctx.split("id_val").labels.fill_(1)
        self.ctx.split("id_val").images.zero_()

    cls = type("Poison", (Method,), {"trains": False, "build": lambda self: (poison(self), Method.build(self))[1]})
    METHODS.add("attack-poison", cls)
    record, _ = run_method("attack-poison", store)
    assert record["metrics"] == clean["metrics"]


def test_hyperparameters_class_name_and_method_info_are_taken_as_planned(store):
    class Shifty(Method):
        trains = False

        def build(self):
            self.hp["lr"] = 12345.0  # the record's copy is the plan's
            type(self).name = "ft"  # impersonation
            model = super().build()
            self.trace, original = [], model.forward

            def forward(images):
                self.trace.append(1)  # grows during the final evaluation
                return original(images)

            model.forward = forward
            return model

        def info(self):
            return {"trace": self.trace}

    METHODS.add("attack-shifty", Shifty)
    record, _ = run_method("attack-shifty", store)
    folder = next(Path(store).rglob("record.json")).parent
    assert record["method"] == "attack-shifty" and folder.parent.name == "attack-shifty"
    assert record["hparams"]["lr"] == record["config"]["hparams"]["lr"] != 12345.0
    assert record["run_id"] == folder.name
    assert record["method_info"] == {"trace": []}  # as it was when info() was asked


def test_a_search_cannot_move_where_the_engine_writes(store, tmp_path):
    outside = tmp_path / "elsewhere"

    class Redirect(Method):
        trains = False

        def search(self, workdir, run_id):
            assert workdir.name == "search" and isinstance(run_id, str)
            return {}

    METHODS.add("attack-redirect", Redirect)
    run_method("attack-redirect", store)
    assert len(list(Path(store).rglob("record.json"))) == 1 and not outside.exists()


def test_shared_caches_cannot_be_poisoned_through_a_methods_models(store):
    class Poisoner(Method):
        trains = False
        frozen_image_tower = True

        def build(self):
            with torch.no_grad():
                self.ctx.clip.token_embedding.weight.mul_(-1)  # the view's copy of CLIP
            self.ctx.zero_shot_weights()
            model = super().build()
            with torch.no_grad():
                for p in model.visual.parameters():
                    p.mul_(-0.5)  # its frozen tower: features still come from the engine's own
            return model

    METHODS.add("attack-poisoner", Poisoner)
    run_method("attack-poisoner", store)
    after, _ = run_method("zeroshot", store)
    clean, _ = run_method("zeroshot", store.parent / "clean")
    assert after["metrics"] == clean["metrics"]
