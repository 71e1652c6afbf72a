import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from bench.datasets.tinyshift import TinyShift
from bench.errors import BenchError
from bench.methods import autoft_search as S
from bench.methods.autoft_losses import dcm_loss, entropy_per_example, hinge_loss, learned_loss, norm_terms
from bench.protocols.tinyshift import TINYSHIFT
from conftest import TINY, run_method

LOGITS = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
LABELS = torch.tensor([0, 2])
SEARCH = ["trials=3", "inner_steps=2", "ood_val_size=60"]


def _entropy(row):
    p = torch.softmax(row, 0)
    return float(-(p * p.log()).sum())


def test_loss_terms_by_hand():
    h0, h1 = _entropy(LOGITS[0]), _entropy(LOGITS[1])
    assert entropy_per_example(LOGITS).mean().item() == pytest.approx((h0 + h1) / 2)
    assert dcm_loss(LOGITS, LABELS).item() == pytest.approx(h1 / 2)  # only the misclassified second row counts
    assert hinge_loss(LOGITS, LABELS).item() == pytest.approx(1.5)  # row 0: 0; row 1: max(0, 3 - 1 + 1) = 3
    params = [torch.tensor([1.0, -2.0]), torch.tensor([3.0])]
    anchors = [torch.tensor([0.0, 0.0]), torch.tensor([1.0])]
    terms = norm_terms(params, anchors)
    assert {k: round(v.item(), 6) for k, v in terms.items()} == {
        "l1zero": 2.0, "l2zero": round(14 / 3, 6), "l1init": round(5 / 3, 6), "l2init": 3.0}


def test_learned_loss_is_the_weighted_sum():
    g = torch.Generator().manual_seed(0)
    img = F.normalize(torch.randn(2, 4, generator=g), dim=-1)
    txt = F.normalize(torch.randn(2, 4, generator=g), dim=-1)
    params, anchors = [torch.tensor([1.0, -2.0])], [torch.tensor([0.5, 0.0])]
    weights = {"ce": 1.0, "dcm": 0.5, "entropy": 0.25, "hinge": 2.0, "flyp": 0.1, "l1init": 3.0, "l1zero": 0.0,
               "l2init": 1.0, "l2zero": 0.2}
    from bench.methods.flyp import contrastive_loss

    expected = (F.cross_entropy(LOGITS, LABELS) + 0.5 * dcm_loss(LOGITS, LABELS)
                + 0.25 * entropy_per_example(LOGITS).mean() + 2.0 * hinge_loss(LOGITS, LABELS)
                + 0.1 * contrastive_loss(img, txt, torch.tensor(10.0)) + 3.0 * (0.5 + 2.0) / 2
                + 1.0 * (0.25 + 4.0) / 2 + 0.2 * (1 + 4) / 2)
    got = learned_loss(weights, LOGITS, LABELS, img, txt, torch.tensor(10.0), params, anchors)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_final_run_uses_the_searched_objective_and_true_initial_weights(store):
    record, _ = run_method("autoft", store, settings=SEARCH)
    info = record["method_info"]["autoft"]
    best = info["best_params"]
    objective = info["objective"]
    assert objective["weights"]["ce"] == 1.0
    assert objective["lr"] == best["lr"] and objective["weight_decay"] == best["weight_decay"]
    assert objective["weights"]["flyp"] == best["w_flyp"]
    assert info["trials_complete"] == 3 and len(list(Path(store).rglob("trials/trial_*.json"))) == 3
    assert info["best_value"] == max(v for _, v in info["trial_values"])
    assert set(record["data_access"]["train"]) == {"train", "id_val", "ood_val"}
    assert record["timing"]["search_s"] > 0
    assert "alpha=0.5" in record["variants"]


def test_anchors_stay_at_the_initial_weights_during_the_final_run():
    from types import SimpleNamespace

    from bench.methods.autoft import AutoFT

    class Ctx(SimpleNamespace):
        pass

    from bench.models import load_clip, open_clip_module

    clip, info = load_clip("bench-tinyclip", "tinyshift")
    ctx = Ctx(tokenizer=open_clip_module().get_tokenizer("bench-tinyclip"), clip=clip, device=torch.device("cpu"),
              classnames=("a", "b"), templates=("{}.",), seed=0, protocol=TINYSHIFT,
              zero_shot_weights=lambda: torch.randn(2, 64), fused_kwargs=lambda: {})
    method = AutoFT({}, ctx)
    method.best = {"weights": {"ce": 1.0, "l2init": 1.0}, "lr": 1e-2, "weight_decay": 0.0, "seed": 0}
    model = method.build()
    opt = method.optimizer(model)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 0, 1])
    assert norm_terms(list(model.parameters()), method._anchors)["l2init"].item() == 0.0
    method.loss(model, x, y).backward()
    opt.step()
    # officially the anchors were the live weights, so this term stayed 0; here it measures the drift
    assert norm_terms(list(model.parameters()), method._anchors)["l2init"].item() > 0


def test_search_ignores_ood_test_data(tmp_path, monkeypatch):
    clean, _ = run_method("autoft", tmp_path / "clean", settings=SEARCH)
    original = TinyShift.load_split

    def scrambled(self, name):
        split = original(self, name)
        if name in TINYSHIFT.ood_test_splits:
            split.images = torch.randn(split.images.shape, generator=torch.Generator().manual_seed(2))
        return split

    monkeypatch.setattr(TinyShift, "load_split", scrambled)
    dirty, _ = run_method("autoft", tmp_path / "dirty", settings=SEARCH)
    assert dirty["method_info"]["autoft"]["trial_values"] == clean["method_info"]["autoft"]["trial_values"]
    assert dirty["history"] == clean["history"] and dirty["metrics"]["id_test"] == clean["metrics"]["id_test"]
    assert dirty["summary"]["ood_avg"] != clean["summary"]["ood_avg"]


def _worker(store: Path, trials: int, storage: str | None = None) -> subprocess.Popen:
    argv = [sys.executable, "-m", "bench", "run", "--method", "autoft", "--search-only", "--quiet", "--out", str(store),
            "--trials", str(trials), "--inner-steps", "2", "--ood-val-size", "60"] + [x for s in TINY for x in ("--set", s)]
    argv += ["--storage", storage] if storage else []
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _study(store: Path):
    journal = next(store.rglob("search.journal"))
    storage = S.make_storage(str(journal), journal.parent)
    return S.open_study(f"autoft-{journal.parent.parent.name}", storage, 0)  # <run>/search/search.journal


def test_two_workers_share_one_study_without_lost_or_repeated_trials(tmp_path):
    store = tmp_path / "runs"
    workers = [_worker(store, 6), _worker(store, 6)]
    for w in workers:
        _, err = w.communicate(timeout=300)
        assert w.returncode == 0, err
    study = _study(store)
    done = S.completed(study)
    assert len(done) == 6
    assert sorted(t.number for t in done) == sorted({t.number for t in done})
    files = sorted(p.name for p in store.rglob("trials/trial_*.json"))
    assert files == [f"trial_{t.number:05d}.json" for t in sorted(done, key=lambda t: t.number)]


def _kill_after_trials(worker: subprocess.Popen, store: Path, trials: int) -> None:
    """kill -9 the worker once `trials` trial files exist in the store."""
    deadline = time.time() + 240
    while len(list(store.rglob("trials/trial_*.json"))) < trials:
        assert worker.poll() is None and time.time() < deadline
        time.sleep(0.05)
    worker.send_signal(signal.SIGKILL)
    worker.wait()


def test_killed_search_continues_its_trial_count(tmp_path):
    store = tmp_path / "runs"
    worker = _worker(store, 5)
    _kill_after_trials(worker, store, 2)
    first = {p.name: p.read_text() for p in store.rglob("trials/trial_*.json")}
    assert 2 <= len(first) < 5
    rerun = _worker(store, 5)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    done = S.completed(_study(store))
    assert len(done) == 5
    after = {p.name: p.read_text() for p in store.rglob("trials/trial_*.json")}
    assert all(after[name] == text for name, text in first.items())  # finished trials are kept, not redone
    assert max(t.number for t in done) >= len(first)
    # the resumed search drew the same trials as an uninterrupted one (the killed trial is drawn again)
    reference = _worker(tmp_path / "reference", 5)
    _, err = reference.communicate(timeout=300)
    assert reference.returncode == 0, err
    uninterrupted = [t.params for t in sorted(S.completed(_study(tmp_path / "reference")), key=lambda t: t.number)]
    assert [t.params for t in sorted(done, key=lambda t: t.number)] == uninterrupted


def test_a_damaged_journal_is_refused_before_anything_is_appended(tmp_path):
    journal = tmp_path / "search.journal"
    storage = S.make_storage(str(journal), tmp_path)
    study = S.open_study("s", storage, 0)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    text = journal.read_bytes()
    journal.write_bytes(text[:-7])  # a write cut short
    damaged = journal.read_bytes()
    with pytest.raises(BenchError, match=r"journal .* is damaged at line \d+"):
        S.make_storage(str(journal), tmp_path)
    assert journal.read_bytes() == damaged


def test_budget_rule_official_lengthens_only_autoft_and_is_unofficial(tmp_path):
    """Equal budgets by default; `budget_rule=official` gives AutoFT its official final-run length (epochs over
    the image x template caption loader: len(templates) x the steps) and marks the run unofficial."""
    from bench.runner import RunRequest, plan
    from bench.testbed.data import TEMPLATES

    settings = ["trials=1", "inner_steps=1", "ood_val_size=20", "steps=4", "eval_every=2", "batch_size=16", "warmup=1"]
    equal, _ = run_method("autoft", tmp_path, settings=settings, base_settings=False)
    longer, _ = run_method("autoft", tmp_path, settings=settings + ["budget_rule=official"], base_settings=False)
    assert equal["timing"]["train_steps"] == 4 and longer["timing"]["train_steps"] == 4 * len(TEMPLATES)
    assert longer["official"] is False and longer["config"]["budget"]["budget_rule"] == "official"
    assert "budget_rule" not in equal["config"]["budget"]  # the default keeps older runs' hashes
    ft = plan(RunRequest(method="ft", out=tmp_path, settings=["budget_rule=official"]))
    assert ft.protocol.steps == 500  # methods without an official length train the protocol's steps


def test_official_final_run_lengths_per_dataset_by_hand():
    """iWildCam/FMoW: one caption row per (image, template) -> steps x templates; ImageNet: one row per image
    (imagenet_csv_creator.py) -> its 10 epochs, 10 x 2,482 = 24,820 steps (official ~25,030 on the full train)."""
    from bench.datasets.wilds_data import FMOW_TEMPLATES, IWILDCAM_TEMPLATES
    from bench.methods.autoft import AutoFT
    from bench.protocols.imagenet import IMAGENET
    from bench.protocols.wilds import FMOW, IWILDCAM

    assert AutoFT.official_steps(IWILDCAM, IWILDCAM_TEMPLATES) == 20 * 507 * 2 == 20_280
    assert AutoFT.official_steps(FMOW, FMOW_TEMPLATES) == 20 * 300 * 16 == 96_000
    assert AutoFT.official_steps(IMAGENET, tuple(["t"] * 80)) == 24_820  # not 24,820 x 80 = 1,985,600
    assert IMAGENET.ood_val_size == 15_000 and IWILDCAM.ood_val_size == FMOW.ood_val_size == 1_000


def test_kill_9_of_one_of_two_search_workers_loses_and_repeats_no_trial(tmp_path):
    store = tmp_path / "runs"
    victim, other = _worker(store, 6), _worker(store, 6)
    _kill_after_trials(victim, store, 1)
    _, err = other.communicate(timeout=300)
    assert other.returncode == 0, err
    rerun = _worker(store, 6)  # the next command fails the dead worker's trial and completes the count
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    study = _study(store)
    done = S.completed(study)
    assert len(done) == 6 and len({t.number for t in done}) == 6
    files = sorted(p.name for p in store.rglob("trials/trial_*.json"))
    assert files == [f"trial_{t.number:05d}.json" for t in sorted(done, key=lambda t: t.number)]
    assert not S.running_count(study)


def test_an_unclaimed_running_trial_is_failed_after_the_grace_period(tmp_path, monkeypatch):
    """A worker killed between asking for a trial and claiming it (the `worker` attribute) leaves a running trial
    that no process check and no heartbeat can clear: it is failed once older than the grace period, so the other
    workers stop waiting for it."""
    import optuna

    storage = S.make_storage(str(tmp_path / "search.journal"), tmp_path)
    study = S.open_study("unclaimed", storage, 0)
    orphan = study.ask()  # never claimed: its worker died right after asking
    mine = study.ask()
    mine.set_user_attr("worker", S.WORKER)  # this live process's trial
    monkeypatch.setenv("BENCH_AUTOFT_GRACE_S", "3600")
    assert S.fail_stale_trials(study) == 0  # too young to judge
    monkeypatch.setenv("BENCH_AUTOFT_GRACE_S", "0")
    time.sleep(0.01)
    assert S.fail_stale_trials(study) == 1
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    assert states[orphan.number] == optuna.trial.TrialState.FAIL and states[mine.number] == optuna.trial.TrialState.RUNNING
    study.tell(mine, 1.0)
    S.wait_for_other_workers(study, tmp_path / "trials", poll_s=0.01)  # nothing left running: returns


def test_a_worker_killed_between_ask_and_claim_still_gets_all_its_trials_run(tmp_path, monkeypatch):
    """The race CI met next: the killed worker's last trial was asked for but never claimed. The re-run worker
    counted it as running and stopped one trial short; now it waits out the grace period, fails it and runs it."""
    storage = S.make_storage(str(tmp_path / "search.journal"), tmp_path)
    study = S.open_study("orphaned", storage, 0)
    trials, objective = tmp_path / "trials", lambda t: t.suggest_float("x", 0.0, 1.0)
    S.run_trials(study, objective, 2, tmp_path / "lock", trials)
    study.ask()  # the killed worker's third trial: asked for, never claimed
    monkeypatch.setenv("BENCH_AUTOFT_GRACE_S", "1")
    monkeypatch.setattr(S, "POLL_S", 0.05)
    assert S.run_trials(study, objective, 3, tmp_path / "lock", trials) == 1
    assert len(S.completed(study)) == 3 and S.running_count(study) == 0
    assert sorted(p.name for p in trials.iterdir()) == [f"trial_{n:05d}.json" for n in (0, 1, 3)]


def test_a_trial_told_complete_but_killed_before_its_file_gets_its_file_from_the_next_worker(tmp_path):
    """The race CI met: a worker killed after `tell` and before writing trial_N.json. The study holds the trial's
    parameters, value, worker and seconds, so the next worker writes the file, with the same content."""
    storage = S.make_storage(str(tmp_path / "search.journal"), tmp_path)
    study = S.open_study("told", storage, 0)
    trials = tmp_path / "trials"
    S.run_trials(study, lambda t: t.suggest_float("x", 0.0, 1.0), 2, tmp_path / "lock", trials)
    kept = (trials / "trial_00001.json").read_text()
    (trials / "trial_00001.json").unlink()  # as if its worker died between tell and the write
    assert S.run_trials(study, lambda t: t.suggest_float("x", 0.0, 1.0), 2, tmp_path / "lock", trials) == 0
    assert (trials / "trial_00001.json").read_text() == kept
    (trials / "trial_00000.json").unlink()
    S.wait_for_other_workers(study, trials, poll_s=0.01)
    record = json.loads((trials / "trial_00000.json").read_text())
    assert record["number"] == 0 and record["worker"] == S.WORKER and record["seconds"] >= 0
    assert record["value"] == S.completed(study)[0].value == record["params"]["x"]
