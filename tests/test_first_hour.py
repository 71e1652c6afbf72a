"""What a new user meets in the first hour: everything missing said at once, piped output that shows progress,
no lock files beside the run folders, and a skipped run that says whose figures it shows."""
from __future__ import annotations

from bench.cli import main
from conftest import TINY


import pytest


@pytest.mark.parametrize("root", ["absent", "empty"])
def test_a_real_run_names_the_missing_data_and_the_missing_weights_in_one_line(tmp_path, capsys, root):
    (tmp_path / "empty").mkdir()
    code = main(["run", "--method", "autoft", "--dataset", "iwildcam", "--data-root", str(tmp_path / root),
                 "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert "(1) iwildcam" in err and "(2)" in err and "ViT-B-16" in err
    assert ("does not exist" if root == "absent" else "bench data download iwildcam") in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("config.json"))


def test_piped_training_prints_a_line_per_evaluation_and_no_lock_sits_beside_the_run(tmp_path, capsys):
    out = tmp_path / "runs"
    args = ["run", "--method", "ft", "--out", str(out), *sum((["--set", s] for s in TINY), []),
            "--set", "steps=6", "--set", "eval_every=3"]
    assert main(args) == 0
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if "id_val" in line]
    assert [line.split(": ", 1)[1].split(",")[0] for line in lines] == ["step 3/6", "step 6/6"]
    assert not list(out.glob("*/*/*.lock")) and list((out / ".locks").rglob("*.lock"))
    assert "done:" in captured.out
    assert main(args) == 0  # the same configuration again: skipped, and it says the figures are the stored run's
    text = " ".join(capsys.readouterr().out.split())
    assert "skipped: run" in text and "figures above are that stored run's" in text
