"""AutoFT's search on a real PostgreSQL server (started here from the Debian server binaries): two worker processes
share one study and meet the trial total exactly, a kill -9'd worker's trial is failed and run again, and a trial
whose worker stops sending heartbeats (a dead machine) is failed and retried with the same parameters. The same
two-worker and kill tests run on the journal file in test_autoft.py."""
import time

import pytest
from postgres_server import binaries, postgres_server
from test_autoft import _kill_after_trials, _worker

from bench.methods import autoft_search as S

pytestmark = pytest.mark.skipif(binaries() is None, reason="no PostgreSQL server binaries (initdb, pg_ctl) here")


@pytest.fixture(scope="module")
def database():
    with postgres_server() as url:
        yield url


def _study(store, url):
    run_id = next(store.rglob("config.json")).parent.name
    return S.open_study(f"autoft-{run_id}", S.make_storage(url, store), 0)


def _check_complete(store, url, total):
    study = _study(store, url)
    done = S.completed(study)
    assert len(done) == total and len({t.number for t in done}) == total and not S.running_count(study)
    files = sorted(p.name for p in store.rglob("trials/trial_*.json"))
    assert files == [f"trial_{t.number:05d}.json" for t in sorted(done, key=lambda t: t.number)]


def test_two_workers_share_one_postgresql_study(database, tmp_path):
    store = tmp_path / "runs"
    workers = [_worker(store, 4, database), _worker(store, 4, database)]
    for w in workers:
        _, err = w.communicate(timeout=300)
        assert w.returncode == 0, err
    _check_complete(store, database, 4)
    assert not list(store.rglob("search.journal"))  # the study lives in the database


def test_kill_9_of_a_postgresql_worker_loses_and_repeats_no_trial(database, tmp_path):
    store = tmp_path / "runs"
    victim, other = _worker(store, 5, database), _worker(store, 5, database)
    _kill_after_trials(victim, store, 1)
    _, err = other.communicate(timeout=300)
    assert other.returncode == 0, err
    rerun = _worker(store, 5, database)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    _check_complete(store, database, 5)


def test_a_trial_without_heartbeats_is_failed_and_retried_with_its_parameters(database, tmp_path, monkeypatch):
    import optuna

    monkeypatch.setenv("BENCH_AUTOFT_GRACE_S", "1")
    storage = S.make_storage(database, tmp_path)
    study = S.open_study("heartbeat-test", storage, 0)
    assert S._beats(study) and storage.get_heartbeat_interval() == S.HEARTBEAT_S
    lost = study.ask()
    x = lost.suggest_float("x", 0.0, 1.0)
    storage.record_heartbeat(lost._trial_id)  # its machine beats once, then dies (no tell)
    time.sleep(2.5)
    seen = []
    ran = S.run_trials(study, lambda t: seen.append(t.suggest_float("x", 0.0, 1.0)) or 1.0, 1,
                       tmp_path / "lock", tmp_path / "trials")
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    assert states[lost.number] == optuna.trial.TrialState.FAIL
    assert ran == 1 and seen == [x]  # the retry re-ran the lost trial's parameters
    retry = S.completed(study)[0]
    assert retry.system_attrs.get("failed_trial") == lost.number
