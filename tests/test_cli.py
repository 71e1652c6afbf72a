"""Bad input: one line on stderr saying what is wrong and what to do, a non-zero exit, no traceback,
and nothing already stored is lost."""
import hashlib
from pathlib import Path

import pytest

from bench.cli import main
from conftest import TINY


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def filled_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("store") / "runs"
    argv = ["run", "--method", "zeroshot", "--out", str(root), "--quiet"] + [x for s in TINY for x in ("--set", s)]
    assert main(argv) == 0
    return root


def run_cli(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_unwritable_out(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run_cli(capsys, ["run", "--method", "zeroshot", "--out", str(blocker / "runs"), "--quiet"])
    assert code == 2 and "cannot write to the run store" in err and "--out" in err
    assert blocker.read_text() == "x"


def test_hub_weights_offline_fail_at_once_with_a_hint(capsys, tmp_path):
    code, _, err = run_cli(capsys, ["run", "--method", "zeroshot", "--model", "ViT-B-32", "--pretrained", "openai",
                                    "--out", str(tmp_path), "--quiet"])
    assert code == 2 and "not in the local cache" in err and "--pretrained /path" in err


def test_corrupt_weights_file(capsys, tmp_path):
    bad = tmp_path / "weights.pt"
    bad.write_bytes(b"not a checkpoint")
    code, _, err = run_cli(capsys, ["run", "--method", "zeroshot", "--model", "bench-tinyclip", "--pretrained", str(bad),
                                    "--out", str(tmp_path / "runs"), "--quiet"])
    assert code == 2 and f"could not load weights {bad}" in err


def test_corrupt_checkpoint_names_the_file_and_the_fix(capsys, tmp_path):
    from bench.runner import RunRequest, plan
    from bench.store import RunStore

    store = tmp_path / "runs"
    folder = RunStore(store).begin(plan(RunRequest(method="ft", out=store, settings=list(TINY))).config, force=False)
    folder.checkpoint.write_bytes(b"garbage")
    argv = ["run", "--method", "ft", "--out", str(store), "--quiet"] + [x for s in TINY for x in ("--set", s)]
    code, _, err = run_cli(capsys, argv)
    assert code == 2 and "checkpoint.pt is corrupt" in err and "--force" in err
    assert folder.checkpoint.read_bytes() == b"garbage"  # left for the user to inspect
    code, _, _ = run_cli(capsys, argv + ["--force"])
    assert code == 0


def test_run_list_and_leaderboard_commands(capsys, tmp_path, filled_store):
    code, out, _ = run_cli(capsys, ["list", "methods"])
    assert code == 0 and "wiseft" in out and "autoft" in out and "flyp" in out
    code, out, _ = run_cli(capsys, ["list", "datasets"])
    assert code == 0 and "tinyshift@1" in out and "wilds-iwildcam@1" in out and "imagenet-shifts@1" in out
    target = tmp_path / "LB.md"
    code, out, _ = run_cli(capsys, ["leaderboard", "--runs", str(filled_store), "--out", str(target)])
    assert code == 0 and "| zeroshot" in target.read_text()
    argv = ["run", "--method", "zeroshot", "--out", str(filled_store)] + [x for s in TINY for x in ("--set", s)]
    code, out, _ = run_cli(capsys, argv)
    assert code == 0 and "skipped" in out and "OOD avg" in out


def test_another_store_never_overwrites_the_committed_leaderboard(capsys, tmp_path, filled_store, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "LEADERBOARD.md").write_text("committed page\n")
    code, out, _ = run_cli(capsys, ["leaderboard", "--runs", str(filled_store)])
    assert code == 0 and "| zeroshot" in (filled_store / "LEADERBOARD.md").read_text()
    assert (tmp_path / "LEADERBOARD.md").read_text() == "committed page\n" and not (tmp_path / "leaderboard").exists()


def test_the_summary_says_a_run_is_unofficial(capsys, filled_store):
    argv = ["run", "--method", "zeroshot", "--out", str(filled_store)] + [x for s in TINY for x in ("--set", s)]
    code, out, _ = run_cli(capsys, argv)
    assert code == 0 and "variant final) [unofficial]" in " ".join(out.split())


def test_plugin_method_runs_from_the_cli(capsys, tmp_path):
    plugin = Path(__file__).resolve().parent.parent / "examples" / "label_smoothing_plugin.py"
    argv = ["run", "--plugin", str(plugin), "--method", "ls-ft", "--set", "smoothing=0.2", "--out", str(tmp_path),
            "--quiet"] + [x for s in TINY for x in ("--set", s)]
    code, out, err = run_cli(capsys, argv)
    assert code == 0, err
    assert "ls-ft on tinyshift" in out


def test_bench_select_prints_hyperparameters_as_the_tables_do(capsys, monkeypatch):
    from bench import cli_output
    from bench.cli_output import print_selection
    from bench.leaderboard.selection import Candidate, Selection

    monkeypatch.setattr(cli_output.console, "width", 300)  # one line per row, nothing folded
    chosen = Candidate('{"lr": 0.000113485, "steps": 300, "weight_decay": 0.019937}', (2,), (0, 1, 2), 80.5)
    print_selection([Selection("tinyshift", "p@1", "m", "ft", "acc", chosen, (chosen,))])
    out = " ".join(capsys.readouterr().out.split())
    assert "lr=0.000113, steps=300, weight_decay=0.0199" in out and "0.000113485" not in out


def test_list_methods_verbose_shows_every_hyperparameter_with_its_range(capsys, monkeypatch):
    from bench import cli_output
    from bench.methods import METHODS

    monkeypatch.setattr(cli_output.console, "width", 400)
    code, out, _ = run_cli(capsys, ["list", "methods", "-v"])
    assert code == 0
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in out.splitlines() if line.count("│") == 7]
    listed = {(r[0], r[1]) for r in rows}
    assert listed == {(m, k) for m in METHODS.names() for k in METHODS.get(m).hparams}
    assert ["lp", "c_steps", "50", ">= 1 and <= 10000", "fixed"] == next(r for r in rows if r[:2] == ["lp", "c_steps"])[:5]
    assert next(r for r in rows if r[:2] == ["ft", "lr"])[2] == "0.0015 (per protocol)"


def test_the_readme_plugin_example_is_the_shipped_file():
    """The README's 'Adding a method' code is examples/label_smoothing_plugin.py (range check included)."""
    root = Path(__file__).resolve().parent.parent
    code = (root / "examples" / "label_smoothing_plugin.py").read_text()
    body = code[code.index("import torch"):]
    assert f"```python\n{body}```" in (root / "README.md").read_text()
    assert "Range(0.0, 1.0, high_open=True)" in body


def test_the_shipped_sweep_config_plans_its_grid(tmp_path, monkeypatch):
    from bench.sweep import expand, load_spec

    root = Path(__file__).resolve().parent.parent
    monkeypatch.chdir(tmp_path)
    sweep = expand(load_spec(root / "examples" / "sweep.toml", {}))
    assert len(sweep.jobs) == 2 * 3 * 3 and sweep.out == Path("my-runs")
    assert not (tmp_path / "my-runs").exists()  # planning writes nothing
