"""Data parallelism under torchrun on the CPU (gloo): every method runs in 2 processes with the protocol's batch as the
global batch and gives the record one process gives (same selection, metrics within 1 point, in practice equal), a
run resumes after kill -9 of one rank with the numbers of an uninterrupted one, and only rank 0 writes the store."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_end_to_end import BUILTINS, EXTRA

from conftest import INPUT_RUNS, TINY, run_method

# Every training method, and TPGM for the methods built from finished runs (its radii are learned per rank, alone,
# on the same batches; soups, Model Stock and LiNeS score candidates through the same sharded prediction).
DATA_PARALLEL = [m for m in BUILTINS if m not in INPUT_RUNS or m in ("tpgm", "vrf")]

BUDGET = ["steps=30", "eval_every=5", "batch_size=32", "warmup=2"]  # 6 checkpoints: room to kill in between


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(method: str, store: Path, settings, procs: int = 2, wait: bool = True):
    argv = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs), "--master_port",
            str(free_port()), "-m", "bench", "run", "--method", method, "--out", str(store), "--quiet",
            *[x for s in settings for x in ("--set", s)]]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "BENCH_DIST_BACKEND": "gloo"}
    if not wait:
        return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)


def only_record(store: Path, method: str | None = None) -> dict:
    records = [json.loads(p.read_text()) for p in store.rglob("record.json")]
    records = [r for r in records if method is None or r["method"] == method]
    assert len(records) == 1
    return records[0]


@pytest.fixture(scope="module")
def two_process_records(tmp_path_factory):
    """Every method of DATA_PARALLEL in one torchrun job of 2 processes (torch starts once for all of them), each
    in its own store; a consumer's store first gets the same finished ft runs its 1-process twin uses."""
    import shutil

    root = tmp_path_factory.mktemp("two")
    inputs = tmp_path_factory.mktemp("inputs")
    for method in DATA_PARALLEL:
        for seed, hparams_seed in INPUT_RUNS.get(method, ()):
            run_method("ft", inputs / method, seed=seed, hparams_seed=hparams_seed)
            shutil.copytree(inputs / method, root / method, dirs_exist_ok=True)
    jobs = root / "jobs.json"
    jobs.write_text(json.dumps({m: list(TINY) + EXTRA.get(m, []) for m in DATA_PARALLEL}))
    argv = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
            str(Path(__file__).parent / "data_parallel_jobs.py"), str(root), str(jobs)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "BENCH_DIST_BACKEND": "gloo"}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    return {m: only_record(root / m, m) for m in DATA_PARALLEL}, inputs


@pytest.mark.parametrize("method", DATA_PARALLEL)
def test_two_processes_give_the_one_process_record(method, two_process_records, tmp_path):
    import shutil

    records, inputs = two_process_records
    if method in INPUT_RUNS:  # the same finished ft runs the two-process run started from
        shutil.copytree(inputs / method, tmp_path / "one")
    one, _ = run_method(method, tmp_path / "one", settings=EXTRA.get(method, ()))
    two = records[method]
    assert two["run_id"] == one["run_id"] and two["env"]["processes"] == 2 and one["env"]["processes"] == 1
    assert set(two["metrics"]) == set(one["metrics"]) and set(two["variants"]) == set(one["variants"])
    if method == "autoft":  # its search's trials are split between the two ranks (two workers of one study)
        two_search, one_search = two["method_info"]["autoft"], one["method_info"]["autoft"]
        assert two_search["trials_complete"] == one_search["trials_complete"] == 2  # exactly the budget, in total
        assert two_search["study"] == one_search["study"]
        return
    assert two["selection"] == pytest.approx(one["selection"], abs=1.0)
    assert two["selection"].get("best_step") == one["selection"].get("best_step")
    for variant, values in one["variants"].items():
        for split, metrics in values["metrics"].items():
            assert two["variants"][variant]["metrics"][split]["acc"] == pytest.approx(metrics["acc"], abs=1.0)
    for a, b in zip(one["history"], two["history"]):
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-3)  # the global batch's running loss on rank 0


def rank_pids(parent: int) -> dict[int, int]:
    """rank -> pid of the workers torchrun started (read from /proc: RANK in each child's environment)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid != parent:
                continue
            env = dict(item.split("=", 1) for item in (entry / "environ").read_text().split("\0") if "=" in item)
        except (OSError, ValueError, IndexError):
            continue
        if "RANK" in env:
            out[int(env["RANK"])] = int(entry.name)
    return out


def checkpoint_step(store: Path) -> int:
    import torch

    files = list(store.rglob("checkpoint.pt"))
    if not files:
        return 0
    try:
        return torch.load(files[0], map_location="cpu", weights_only=True)["step"]
    except Exception:
        return 0


def test_killing_one_rank_then_rerunning_resumes_with_identical_numbers(tmp_path):
    reference = torchrun("ft", tmp_path / "ref", BUDGET)
    assert reference.returncode == 0, reference.stderr[-2000:]
    store = tmp_path / "runs"
    run = torchrun("ft", store, BUDGET, wait=False)
    deadline = time.time() + 300
    while checkpoint_step(store) < 10 and run.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert run.poll() is None, "the run finished before it could be interrupted"
    os.kill(rank_pids(run.pid)[1], signal.SIGKILL)  # one rank dies; torchrun stops the other and fails
    assert run.wait(timeout=120) != 0
    assert not list(store.rglob("record.json"))
    resumed = torchrun("ft", store, BUDGET)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    record, clean = only_record(store), only_record(tmp_path / "ref")
    assert record["timing"]["resumed_from_step"] >= 10
    assert record["metrics"] == clean["metrics"] and record["history"] == clean["history"]


def test_a_global_batch_that_does_not_split_evenly_is_refused_before_anything_is_written(tmp_path):
    done = torchrun("ft", tmp_path / "runs", ["steps=6", "eval_every=3", "batch_size=33", "warmup=2"])
    assert done.returncode != 0
    # each rank says it in one line and exits 2; torchrun then adds its own report of the failed workers
    assert done.stderr.count("bench: error: batch_size=33 (the global batch) does not split evenly over 2 processes") == 2
    import bench

    assert "exitcode  : 2" in done.stderr and f'File "{Path(bench.__file__).parent}' not in done.stderr  # no frame of ours
    assert not list((tmp_path / "runs").rglob("config.json"))
