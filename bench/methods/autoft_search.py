"""AutoFT's outer search as a persistent, shareable Optuna study.

Default storage: an Optuna journal file inside the run folder (no server; several processes on one machine or a
shared file system). Any Optuna storage URL (e.g. postgresql://...) works for several machines. Workers claim trials
under a file lock, so the requested total is met exactly (across machines with an RDB storage the lock is per
machine and the total can overshoot by at most the number of workers minus one). A killed worker's trial is marked
failed when a worker on the same host finds its process gone; a re-run then continues the trial count. With a
database (RDB URL) every running trial also sends Optuna heartbeats: a trial whose worker stopped beating for the
grace period, on any machine, is failed by the next worker and retried with the same parameters (Optuna's
RetryFailedTrialCallback), so a dead machine's trial is not lost.
"""
from __future__ import annotations

import json
import os
import socket
import time
from datetime import datetime
from pathlib import Path

from bench.errors import BenchError
from bench.results.io import atomic_write_json

WORKER = f"{socket.gethostname()}:{os.getpid()}"
HEARTBEAT_S = 5  # a database-backed trial's heartbeat period
POLL_S = 1.0  # how often a worker whose remaining trials are all claimed looks at the study again


def grace_period() -> int:
    """Seconds without a heartbeat after which a trial counts as dead (BENCH_AUTOFT_GRACE_S; tests shorten it)."""
    return int(os.environ.get("BENCH_AUTOFT_GRACE_S", "60"))


def _optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def make_storage(url: str | None, folder: Path):
    optuna = _optuna()
    if url and "://" in url:
        import warnings

        storages = optuna.storages
        if hasattr(storages, "RetryHeartbeatStaleTrialCallback"):  # Optuna >= 4.9 renamed the retry hook
            retry = {"heartbeat_stale_trial_callback": storages.RetryHeartbeatStaleTrialCallback(max_retry=3)}
        else:
            retry = {"failed_trial_callback": storages.RetryFailedTrialCallback(max_retry=3)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # heartbeats are marked experimental in some Optuna versions
            return rdb_storage(url, heartbeat_interval=HEARTBEAT_S, grace_period=grace_period(), **retry)
    path = Path(url) if url else folder / "search.journal"
    path.parent.mkdir(parents=True, exist_ok=True)
    check_journal(path)
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    return optuna.storages.JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))


def check_journal(path: Path) -> None:
    """A journal must parse line by line before anything is appended to it (a truncated last line, e.g. after a
    crash mid-write or a full disk, would otherwise be extended into a journal no worker can read)."""
    if not path.is_file():
        return
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            try:
                json.loads(line)
            except ValueError:
                raise BenchError(f"the AutoFT search journal {path} is damaged at line {number} (a truncated or "
                                 "corrupt entry); delete that line (trials up to it are kept) or the file to start "
                                 "the search over") from None


def rdb_storage(url: str, attempts: int = 5, **kwargs):
    """Optuna's RDBStorage; several workers starting at once on a fresh database race to create its tables (one
    gets a unique-constraint error), so creation is retried a few times before the error counts."""
    optuna = _optuna()
    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url, **kwargs)
        except Exception as exc:
            if attempt == attempts - 1 or not any(w in str(exc) for w in ("UniqueViolation", "IntegrityError",
                                                                            "already exists", "duplicate key")):
                raise
            time.sleep(0.5 * (attempt + 1))


def validate_storage(url: str) -> None:
    """Fail before any run folder is made: an unreachable database or an unwritable journal location."""
    try:
        if "://" in url:
            rdb_storage(url)
        else:
            Path(url).parent.mkdir(parents=True, exist_ok=True)
            with open(url, "a"):
                pass
    except Exception as exc:
        raise BenchError(f"cannot open the AutoFT study storage {url!r}: {str(exc).splitlines()[0][:160]}; "
                         "pass a valid Optuna storage URL (e.g. postgresql://user@host/db) or a journal file path")


def open_study(name: str, storage, sampler_seed: int):
    optuna = _optuna()
    sampler = optuna.samplers.TPESampler(seed=sampler_seed)
    try:
        return optuna.create_study(study_name=name, storage=storage, sampler=sampler, direction="maximize",
                                   load_if_exists=True)
    except Exception as exc:  # bad URLs, unreachable servers, unreadable journals
        url = getattr(getattr(storage, "engine", None), "url", None)
        where = storage if isinstance(storage, str) else (f"database {url!r}" if url else "its journal file")
        raise BenchError(f"cannot open the AutoFT study {name!r} in {where}: {str(exc).splitlines()[0][:160]}")


def file_lock(path: Path):
    """A cross-platform exclusive lock on `path` (filelock), held by one worker at a time."""
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path))


def _alive(worker: str) -> bool:
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname():
        return True  # cannot tell for another machine; its own re-run will clean up
    try:
        os.kill(int(pid), 0)
        return True
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True


def _dead(trial, now: datetime) -> bool:
    worker = trial.user_attrs.get("worker")
    if worker is None:  # its worker died between asking for it and claiming it (a live one claims at once)
        started = trial.datetime_start
        return started is not None and (now - started).total_seconds() > grace_period()
    return not _alive(worker)


def fail_stale_trials(study) -> int:
    """Fail the running trials whose worker is gone: a dead process of this machine, or an unclaimed trial older
    than the grace period (no worker ever sent it a heartbeat, so Optuna's own check would never see it)."""
    optuna = _optuna()
    now = datetime.now()
    stale = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)) if _dead(t, now)]
    for t in stale:
        study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
    return len(stale)


def _beats(study) -> bool:
    interval = getattr(study._storage, "get_heartbeat_interval", None)
    return callable(interval) and interval() is not None


class _heartbeat:
    """While a trial runs on a heartbeat-enabled storage, record a heartbeat every HEARTBEAT_S seconds."""

    def __init__(self, study, trial):
        import threading

        self.storage, self.trial_id = study._storage, trial._trial_id
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True) if _beats(study) else None

    def _beat(self):
        while not self.stop.is_set():
            self.storage.record_heartbeat(self.trial_id)
            self.stop.wait(HEARTBEAT_S)

    def __enter__(self):
        if self.thread:
            self.thread.start()
        return self

    def __exit__(self, *exc):
        if self.thread:
            self.stop.set()
            self.thread.join()


def run_trials(study, objective, total: int, lock: Path, trial_dir: Path, reporter=None, sampler_seed=None) -> int:
    """Work on the study until `total` trials are complete; returns how many this worker ran. While the remaining
    trials are all claimed by other workers it waits, so a trial whose worker died is redone.

    `sampler_seed(complete, running)` seeds a fresh TPE sampler for each new trial: TPE keeps no state besides its
    random stream (the history is in the storage), so the trial drawn after k completed ones is the same whether
    the search ran through or was killed and resumed (a killed trial is failed and drawn again)."""
    optuna = _optuna()
    COMPLETE, RUNNING = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING
    ran = 0
    while True:
        with file_lock(lock):
            if _beats(study):  # first: a trial whose heartbeats stopped is failed and re-enqueued with its parameters
                optuna.storages.fail_stale_trials(study)
            fail_stale_trials(study)
            _write_missing_trial_files(study, trial_dir)
            complete = len(study.get_trials(deepcopy=False, states=(COMPLETE,)))
            running = len(study.get_trials(deepcopy=False, states=(RUNNING,)))
            if complete >= total:
                break
            trial = None
            if complete + running < total:
                if sampler_seed is not None:
                    study.sampler = optuna.samplers.TPESampler(seed=sampler_seed(complete, running))
                trial = study.ask()
                trial.set_user_attr("worker", WORKER)
        if trial is None:
            # The rest is claimed. Keep watching rather than stop: a claimed trial whose worker died (even between
            # `ask` and claiming it, failed after the grace period) is failed above and then drawn again here.
            time.sleep(POLL_S)
            continue
        start = time.perf_counter()
        try:
            with _heartbeat(study, trial):
                value = objective(trial)
        except BaseException:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        trial.set_user_attr("seconds", round(time.perf_counter() - start, 3))
        study.tell(trial, value)
        ran += 1
        _write_trial_file(trial_dir, trial.number, trial.params, value, trial.user_attrs)
        if reporter is not None:
            reporter(trial.number, value)
    return ran


def _write_trial_file(trial_dir: Path, number: int, params: dict, value: float, attrs: dict) -> None:
    atomic_write_json(trial_dir / f"trial_{number:05d}.json", {
        "number": number, "params": params, "value": value, "worker": attrs.get("worker"),
        "seconds": attrs.get("seconds")})


def _write_missing_trial_files(study, trial_dir: Path) -> None:
    """A worker killed between `tell` and its file write leaves a complete trial without a file; the study has
    everything the file holds, so the next worker writes it."""
    for t in completed(study):
        if not (trial_dir / f"trial_{t.number:05d}.json").exists():
            _write_trial_file(trial_dir, t.number, t.params, t.value, t.user_attrs)


def wait_for_other_workers(study, trial_dir: Path, poll_s: float = 2.0) -> None:
    optuna = _optuna()
    while True:
        _write_missing_trial_files(study, trial_dir)
        if _beats(study):  # another machine's worker that stopped beating: failed and re-enqueued for a re-run
            optuna.storages.fail_stale_trials(study)
        fail_stale_trials(study)
        if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            return
        time.sleep(poll_s)


def completed(study) -> list:
    optuna = _optuna()
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def running_count(study) -> int:
    optuna = _optuna()
    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)))


def study_summary(study) -> dict:
    done = completed(study)
    best = max(done, key=lambda t: (t.value, -t.number)) if done else None
    return {"trials_complete": len(done), "best_trial": best.number if best else None,
            "best_value": best.value if best else None, "best_params": dict(best.params) if best else None,
            "trial_values": json.loads(json.dumps([[t.number, t.value] for t in sorted(done, key=lambda t: t.number)]))}
