"""The results contract (bench/results/): a run's record round-trips through the typed RunRecord, its predictions
file (layout 2) holds what every metric needs (probabilities recompute the ECE), committed records migrate, and a
method's after-optimiser-step hook runs and survives a resume."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.methods import METHODS
from bench.methods.ft import FineTune
from bench.results.metrics import calibration_error
from bench.results.predictions import StoredPredictions
from bench.results.record import RunRecord
from bench.results.schema import SCHEMA_VERSION, migrate
from bench.store import RunStore
from bench.runner import RunRequest, execute
from conftest import TINY, run_method

ROOT = Path(__file__).resolve().parent.parent


def test_a_new_run_stores_probabilities_that_recompute_its_ece(tmp_path):
    record, status = run_method("wiseft", tmp_path, settings=["steps=6", "eval_every=3"])
    (stored,) = RunStore(tmp_path).records()
    assert stored.to_dict() == record and RunRecord.from_dict(record).to_dict() == record
    assert record["predictions"]["layout"] == 2
    preds = StoredPredictions(tmp_path, stored.path, stored.predictions)
    for variant in (record["reported_variant"], "alpha=0.5"):  # the variants the leaderboard shows
        for split, metrics in record["variants"][variant]["metrics"].items():
            probs = preds.probabilities(variant, split)
            assert probs.dtype == np.float16 and probs.shape[0] == record["split_sizes"][split]
            assert np.allclose(probs.astype(np.float64).sum(axis=1), 1.0, atol=2e-2)
            ece = calibration_error(torch.from_numpy(probs.astype(np.float32)), torch.from_numpy(preds.labels(split)))
            assert ece == pytest.approx(metrics["ece"], abs=0.05)  # float16 probabilities: within 0.05 pp
    assert preds.probabilities("alpha=0", "id_test") is None  # the other variants keep top-1 only


def test_every_committed_record_is_at_the_current_schema_and_round_trips():
    paths = sorted((ROOT / "runs").rglob("record.json"))
    assert len(paths) >= 60
    for path in paths:
        raw = json.loads(path.read_text())
        assert raw["schema"] == SCHEMA_VERSION and RunRecord.from_dict(raw, str(path)).to_dict() == raw


def test_a_version_2_record_migrates_its_predictions_layout():
    raw = json.loads(next((ROOT / "runs").rglob("record.json")).read_text())
    old = {**raw, "schema": 2, "predictions": {"file": "predictions.npz", "sha256": raw["predictions"]["sha256"],
                                               "layout": "numpy .npz: the old text"}}
    new = migrate(old)
    assert new["schema"] == 3 and new["predictions"] == {"file": "predictions.npz", "layout": 1,
                                                         "sha256": raw["predictions"]["sha256"],
                                                         "description": "numpy .npz: the old text"}
    assert migrate(new) == new and old["schema"] == 2  # idempotent; the input is not changed


class EMAFineTune(FineTune):
    """FT that keeps an exponential moving average of its weights and is evaluated on it (the hook's use case)."""

    def after_step(self, model):
        state = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}
        if not hasattr(self, "ema"):
            self.ema, self.updates = state, 0
        else:
            for key, value in state.items():
                self.ema[key].mul_(0.5).add_(value, alpha=0.5)
        self.updates += 1

    def train_state(self):
        return {"ema": self.ema, "updates": self.updates} if hasattr(self, "ema") else {}

    def load_train_state(self, state):
        if state:
            self.ema, self.updates = state["ema"], state["updates"]

    def info(self):
        return {"ema_updates": self.updates, "ema_sum": float(sum(v.double().sum() for v in self.ema.values()))}


def test_after_step_hook_runs_once_per_step_and_its_state_survives_a_resume(tmp_path):
    METHODS.add("test-ema", EMAFineTune)
    settings = ["steps=6", "eval_every=2"]
    straight, _ = run_method("test-ema", tmp_path / "a", settings=settings)
    with pytest.raises(KeyboardInterrupt):
        execute(RunRequest(method="test-ema", seed=0, out=tmp_path / "b", settings=list(TINY) + settings), stop_after=4)
    resumed, _ = run_method("test-ema", tmp_path / "b", settings=settings)
    assert straight["method_info"]["ema_updates"] == 6 and resumed["timing"]["resumed_from_step"] == 4
    assert resumed["method_info"] == straight["method_info"]  # the EMA came back from the checkpoint exactly
