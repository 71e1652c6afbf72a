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


def test_plugin_method_runs_from_the_cli(capsys, tmp_path):
    plugin = Path(__file__).resolve().parent.parent / "examples" / "label_smoothing_plugin.py"
    argv = ["run", "--plugin", str(plugin), "--method", "ls-ft", "--set", "smoothing=0.2", "--out", str(tmp_path),
            "--quiet"] + [x for s in TINY for x in ("--set", s)]
    code, out, err = run_cli(capsys, argv)
    assert code == 0, err
    assert "ls-ft on tinyshift" in out
