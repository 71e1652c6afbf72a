"""`bench sweep` (local processes and submitit's local executor), re-runs that run nothing, failures that do not stop
the rest, dry-run estimates, and `bench select` over the draws feeding the leaderboard."""

import pytest

from bench.cli import main
from conftest import stored_records
from bench.leaderboard.selection import id_val_score, select
from bench.store import RunStore

QUICK = ["steps=2", "eval_every=1", "batch_size=32", "warmup=1"]


def sweep(out, *extra):
    return main(["sweep", "--out", str(out), *[x for s in QUICK for x in ("--set", s)], *extra])


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "runs"
    assert sweep(out, "--method", "ft", "l2sp", "--seed", "0", "1", "--hparams-seed", "0", "1", "--jobs", "2") == 0
    return out


def test_a_sweep_runs_every_combination_once_and_a_rerun_runs_nothing(swept, capsys):
    records = stored_records(swept)
    combos = {(r["method"], r["seed"], r["hparams_seed"]) for r in records}
    assert len(records) == 8 and combos == {(m, s, h) for m in ("ft", "l2sp") for s in (0, 1) for h in (0, 1)}
    capsys.readouterr()
    assert sweep(swept, "--method", "ft", "l2sp", "--seed", "0", "1", "--hparams-seed", "0", "1") == 0
    assert "sweep: 0 ran, 8 were already done, 0 failed" in capsys.readouterr().out
    assert len(stored_records(swept)) == 8


def test_select_picks_the_draw_with_the_best_mean_id_val_and_the_leaderboard_shows_it(swept, tmp_path):
    selections = {s.method: s for s in select(RunStore(swept).records())}
    for method in ("ft", "l2sp"):
        runs = [r for r in RunStore(swept).records() if r.method == method]
        by_draw = {h: [id_val_score(r) for r in runs if r.hparams_seed == h] for h in (0, 1)}
        means = {h: sum(v) / len(v) for h, v in by_draw.items()}
        best = max(means, key=lambda h: (means[h], -h))
        chosen = selections[method].chosen
        assert selections[method].draws == 2 and chosen.hparams_seeds == (best,) and chosen.seeds == (0, 1)
        assert chosen.id_val == pytest.approx(means[best])
    assert main(["leaderboard", "--runs", str(swept), "--out", str(tmp_path / "LB.md")]) == 0
    page = (tmp_path / "LB.md").read_text()
    assert "## Selection across hyperparameter draws" in page
    assert any(line.startswith("| tinyshift | tinyshift@1 |") and "| l2sp | 2 |" in line for line in page.splitlines())


def test_failures_are_listed_and_do_not_stop_the_others_and_dry_run_estimates(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("BENCH_DATA_ROOT", raising=False)
    out, empty = tmp_path / "runs", tmp_path / "data"
    empty.mkdir()  # a data root without iwildcam: that job fails in its own process, the testbed one runs
    code = sweep(out, "--method", "ft", "--dataset", "tinyshift", "iwildcam", "--data-root", str(empty))
    assert code == 1
    text = capsys.readouterr().out
    assert "sweep: 1 ran, 0 were already done, 1 failed" in text
    flat = " ".join(text.split())  # rich wraps the line at the console's width
    assert "failed: ft on iwildcam seed 0 draw 0: bench: error: this run lacks (1) iwildcam" in flat
    assert "AND (2)" in flat and "ViT-B-16" in flat  # the missing weights in the same line
    assert sweep(out, "--method", "ft", "--seed", "0", "5", "--dry-run") == 0
    plan = capsys.readouterr().out
    done = stored_records(out)[0]["timing"]["total_s"]
    assert "would run 1 of 2" in plan and f"{done:.0f}s" in plan  # the estimate comes from the finished ft run


def test_submitit_local_executor_runs_the_jobs(tmp_path, capsys):
    out = tmp_path / "runs"
    assert sweep(out, "--method", "ft", "--seed", "0", "1", "--launcher", "submitit", "--executor", "local",
                 "--jobs", "2") == 0
    assert {r["seed"] for r in stored_records(out)} == {0, 1}
    assert "sweep: 2 ran, 0 were already done, 0 failed" in capsys.readouterr().out
    assert list((out / ".submitit").glob("*_result.pkl"))


def test_sweep_config_file_and_bad_sweeps_fail_before_anything_runs(tmp_path, capsys):
    config = tmp_path / "sweep.toml"
    config.write_text('method = ["ft"]\nseed = [0]\nset = ["steps=2", "eval_every=1", "batch_size=32", "warmup=1"]\n'
                      f'out = "{tmp_path / "runs"}"\n')
    assert main(["sweep", "--config", str(config), "--dry-run"]) == 0
    assert "ft on tinyshift seed 0 draw 0" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text('method = ["ft"]\nseeds = [0]\n')
    for argv, fragment in [(["sweep", "--config", str(bad)], "unknown key 'seeds'"),
                           (["sweep", "--method", "ft", "fft", "--out", str(tmp_path / "x")], "fft"),
                           (["sweep", "--method", "ft", "--set", "lr=-1", "--out", str(tmp_path / "x")], "lr="),
                           (["sweep", "--out", str(tmp_path / "x")], "at least one method")]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert fragment in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists() and not (tmp_path / "runs").exists()


def test_tensorboard_tracking_logs_curves_and_summary(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is in the test extras; absent only in a bare install")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "runs"
    assert main(["run", "--method", "ft", "--out", str(out), "--quiet", "--track", "tensorboard",
                 *[x for s in ["steps=20", "eval_every=10", "batch_size=32", "warmup=2"] for x in ("--set", s)]]) == 0
    logdir = next((out / ".tracking").iterdir())
    events = EventAccumulator(str(logdir))
    events.Reload()
    record = stored_records(out)[0]
    assert [e.step for e in events.Scalars("train/loss")] == [10, 20]
    assert [round(e.value, 3) for e in events.Scalars("id_val/score")] == [round(h["id_val_acc"], 3) for h in record["history"]]
    assert events.Scalars("summary/ood_avg")[0].value == pytest.approx(record["summary"]["ood_avg"])


def test_tracking_is_off_by_default_and_a_missing_package_is_one_line(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    assert main(["run", "--method", "ft", "--out", str(tmp_path / "runs"), "--track", "mlflow"]) == 2
    assert "--track mlflow needs the mlflow package: pip install mlflow" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_submitit_on_a_real_single_node_slurm_cluster(tmp_path, capsys, monkeypatch):
    from slurm_cluster import slurm_cluster, unavailable

    reason = unavailable()
    if reason:
        print(f"SLURM test not run: {reason}")  # shown with -rP / in CI logs
        pytest.skip(reason)
    out = tmp_path / "runs"
    with slurm_cluster() as conf:
        monkeypatch.setenv("SLURM_CONF", str(conf))
        assert sweep(out, "--method", "ft", "--seed", "0", "1", "--launcher", "submitit", "--executor", "slurm",
                     "--jobs", "2", "--time-min", "10") == 0
        assert "sweep: 2 ran, 0 were already done, 0 failed" in capsys.readouterr().out
        assert sweep(out, "--method", "ft", "--seed", "0", "1", "--launcher", "submitit", "--executor", "slurm") == 0
        assert "sweep: 0 ran, 2 were already done, 0 failed" in capsys.readouterr().out
    assert {r["seed"] for r in stored_records(out)} == {0, 1}
    scripts = list((out / ".submitit").glob("*_submission.sh"))
    assert scripts and "#SBATCH" in scripts[0].read_text()  # submitted through sbatch, as a job array
