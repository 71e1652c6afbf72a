"""Faults: kill -9 at random points of a run, a redo and a search; two identical commands at once; failures after
planning; a damaged store. Nothing is lost, nothing trains twice, and resumed runs give identical numbers."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_leaderboard import fake_record

from bench.cli import main
from conftest import stored_records
from bench.store import RunStore

BUDGET = ["steps=30", "eval_every=5", "batch_size=32", "warmup=2"]  # a run of a few seconds with 6 checkpoints


def bench(store: Path, *extra: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "bench", "run", "--method", "ft", "--out", str(store), "--quiet",
            *[x for s in BUDGET for x in ("--set", s)], *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    return out


def kill_when(process: subprocess.Popen, ready, deadline_s: float = 120) -> None:
    deadline = time.time() + deadline_s
    while not ready():
        assert process.poll() is None and time.time() < deadline, "the process ended before the kill point"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()


def numbers(record: dict) -> tuple:
    return record["metrics"], record["history"], record["selection"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    store = tmp_path_factory.mktemp("reference")
    finish(bench(store))
    return stored_records(store)[0]


@pytest.mark.parametrize("checkpoints", [1, 3, 5])
def test_kill_9_during_a_run_then_resume_gives_identical_numbers(tmp_path, reference, checkpoints):
    """Killed (SIGKILL) while training, as soon as its k-th checkpoint is on disk (early, middle, late), then re-run."""
    store = tmp_path / "runs"
    process = bench(store)
    marks = []

    def ready():
        ckpt = next(store.rglob("checkpoint.pt"), None)
        if ckpt is not None and ckpt.stat().st_mtime_ns not in marks:
            marks.append(ckpt.stat().st_mtime_ns)
        return len(marks) >= checkpoints

    kill_when(process, ready)
    assert stored_records(store) == []
    finish(bench(store))
    (record,) = stored_records(store)
    assert record["timing"]["resumed_from_step"] > 0 and numbers(record) == numbers(reference)


def test_kill_9_during_a_forced_redo_keeps_the_old_result(tmp_path, reference):
    store = tmp_path / "runs"
    finish(bench(store))
    old = stored_records(store)[0]
    redo = bench(store, "--force")
    kill_when(redo, lambda: next(store.rglob("*.redo/checkpoint.pt"), None) is not None)
    assert [r["run_id"] for r in stored_records(store)] == [old["run_id"]]  # still there
    finish(bench(store, "--force"))
    (record,) = stored_records(store)
    assert numbers(record) == numbers(reference)
    assert not list(store.rglob("*.redo")) and not list(store.rglob("*.old"))


def test_a_redo_killed_between_its_two_renames_is_completed_or_undone(tmp_path):
    store = RunStore(tmp_path)
    config = {"dataset": "tinyshift", "method": "ft", "seed": 0}
    first = store.begin(config, force=False)
    store.finish(first, fake_record("ft", 0, 70.0, [40.0] * 5))
    redo = store.begin(config, force=True)
    new = fake_record("ft", 0, 71.0, [41.0] * 5)
    store.finish(redo, new)
    # the crash window: the old result moved aside, the new (complete) one not yet in place
    os.replace(first.final, first.final.with_name(first.final.name + ".old"))
    redo2 = store.begin(config, force=False)  # a fresh folder for the replay, then the swap half-done
    os.replace(redo2.final, redo2.final.with_name(redo2.final.name + ".redo"))
    (redo2.final.with_name(redo2.final.name + ".redo") / "record.json").write_text(json.dumps(new))
    (redo2.final.with_name(redo2.final.name + ".redo") / "done").write_text("")
    assert not first.final.exists()
    assert [r["summary"]["id"] for r in stored_records(store)] == []  # what the old code showed: no result at all
    store.recover_all()
    assert [r["summary"]["id"] for r in stored_records(store)] == [71.0]
    assert not list(tmp_path.rglob("*.old")) and not list(tmp_path.rglob("*.redo"))
    # killed before the new result was complete: the old one comes back
    os.replace(first.final, first.final.with_name(first.final.name + ".old"))
    (first.final.with_name(first.final.name + ".redo")).mkdir()
    store.recover_all()
    assert [r["summary"]["id"] for r in stored_records(store)] == [71.0] and not list(tmp_path.rglob("*.old"))


def test_two_identical_commands_train_once(tmp_path):
    store = tmp_path / "runs"
    a, b = bench(store), bench(store)
    outputs = [finish(a), finish(b)]
    assert sum("skipped" in out for out in outputs) == 1 and sum(out.count("done:") for out in outputs) == 1
    assert len(stored_records(store)) == 1 and len(list(store.rglob("record.json"))) == 1


def test_a_failure_after_planning_leaves_no_folder(tmp_path, capsys):
    store = tmp_path / "runs"
    args = ["run", "--method", "ft", "--out", str(store), "--quiet", *[x for s in BUDGET for x in ("--set", s)]]
    assert main(args + ["--set", "lr=1e9"]) == 2  # diverges during training
    assert "lower the learning rate" in capsys.readouterr().err
    plugin = tmp_path / "late.py"
    plugin.write_text("from bench.methods import Method, register_method\n"
                      "@register_method('late-fail')\nclass Late(Method):\n"
                      "    def build(self):\n        raise ValueError('no model here')\n")
    argv = ["run", "--plugin", str(plugin), "--method", "late-fail", "--out", str(store), "--quiet"]
    assert main(argv) == 2
    assert "failed to build its model: ValueError: no model here" in capsys.readouterr().err
    runs = [p for p in store.rglob("config.json")]
    assert runs == [] and not list((store / "tinyshift").glob("*/*/"))  # no orphan run folder (caches may stay)
    assert RunStore(store).incomplete() == []


def test_stored_files_follow_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        store = RunStore(tmp_path)
        folder = store.begin({"dataset": "tinyshift", "method": "ft", "seed": 0}, force=False)
        store.finish(folder, fake_record("ft", 0, 70.0, [40.0] * 5), {"predictions.npz": b"x"})
    finally:
        os.umask(previous)
    for name in ("record.json", "done", "config.json", "predictions.npz"):
        assert (folder.final / name).stat().st_mode & 0o777 == 0o644, name


def test_the_leaderboard_over_a_damaged_store_names_each_bad_record(tmp_path, capsys):
    store = RunStore(tmp_path / "runs")
    for i, text in enumerate(["{}", '{"schema": 2, "run_', None]):
        folder = store.begin({"dataset": "tinyshift", "method": "ft", "seed": i}, force=False)
        if text is None:
            store.finish(folder, fake_record("ft", i, 70.0, [40.0] * 5))
        else:
            (folder.work / "record.json").write_text(text)
            (folder.work / "done").write_text("")
    odd = store.begin({"dataset": "tinyshift", "method": "ft", "seed": 9}, force=False)
    (odd.work / "record.json").write_text(json.dumps(fake_record("ft", 9, 70.0, [40.0] * 5)))
    (odd.work / "done").mkdir()  # a `done` that is a folder: not finished
    assert main(["leaderboard", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "LB.md")]) == 0
    err = capsys.readouterr().err
    assert err.count("fails the schema") == 2 and "'schema' is a required property" in err and "not valid JSON" in err
    page = (tmp_path / "LB.md").read_text()
    assert "from 1 finished runs" in page and "2 finished run(s) left out" in page


def test_the_loss_is_read_on_the_host_only_every_log_every_steps_and_at_evaluations(tmp_path):
    from bench.engine.trainer import LOG_EVERY
    from bench.runner import RunRequest, execute

    class Spy:
        def __init__(self):
            self.steps = []

        def start(self, total, done): ...
        def step(self, step, loss): self.steps.append(step)
        def evaluated(self, step, score): ...
        def stop(self): ...

    spy = Spy()
    execute(RunRequest(method="ft", out=tmp_path / "runs", settings=["steps=35", "eval_every=15", "batch_size=32",
                                                                         "warmup=2"]), reporter=spy)
    assert LOG_EVERY == 10 and spy.steps == [10, 15, 20, 30, 35]


def test_a_loss_that_turns_nan_stops_the_run_naming_the_window(tmp_path, capsys):
    plugin = tmp_path / "nan.py"
    plugin.write_text("import torch\nfrom bench.methods import Method, register_method\n"
                      "@register_method('nan-at-12')\nclass NanLater(Method):\n"
                      "    def loss(self, model, images, labels):\n"
                      "        loss = super().loss(model, images, labels)\n"
                      "        return loss * float('nan') if self.step >= 12 else loss\n")
    store = tmp_path / "runs"
    argv = ["run", "--plugin", str(plugin), "--method", "nan-at-12", "--out", str(store), "--quiet",
            *[x for s in BUDGET for x in ("--set", s)]]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "the loss became nan between steps 10 and 14" in err  # read at 10, then at 15
    assert not list(store.rglob("config.json"))  # a diverged configuration keeps no folder
