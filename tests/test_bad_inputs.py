"""Over a hundred distinct bad inputs: each ends with exit code 2 and one line on stderr naming what is wrong, no
traceback, and no file of the store is new, changed or gone (everything is checked before the store is touched)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from bench.cli import main
from conftest import TINY

HERE = Path(__file__).resolve().parent


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("store") / "runs"
    assert main(["run", "--method", "zeroshot", "--out", str(root), "--quiet"] + [x for s in TINY for x in ("--set", s)]) == 0
    return root


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Bad files for plugins, weights and folders."""
    d = tmp_path_factory.mktemp("bad")
    (d / "syntax.py").write_text("def broken(:\n")
    (d / "exits.py").write_text("import sys\nsys.exit(3)\n")
    (d / "raises.py").write_text("raise RuntimeError('boom')\n")
    (d / "badname.py").write_text("from bench.methods import Method, register_method\n"
                                  "@register_method('../x')\nclass X(Method):\n    pass\n")
    (d / "notes.txt").write_text("not python\n")
    (d / "text.pt").write_text("this is text, not a checkpoint\n")
    (d / "afile").write_text("x")
    return d


def S(*items):  # --set items
    return [x for item in items for x in ("--set", item)]


HPARAMS = [  # (method, setting, expected fragment)
    *[("ft", f"lr={v}", "lr=") for v in ("NaN", "Infinity", "-Infinity", "-1", "0")],
    *[("ft", f"weight_decay={v}", "weight_decay=") for v in ("-1", "NaN", "Infinity")],
    *[("l2sp", f"alpha={v}", "alpha=") for v in ("-1", "NaN", "Infinity")],
    *[("l2sp", f"beta={v}", "beta=") for v in ("-0.5", "NaN")],
    *[("ftp", f"k={v}", "k=") for v in ("-0.1", "1.5", "NaN")],
    *[("ftp", f"mu={v}", "mu=") for v in ("0", "-1", "Infinity")],
    *[("lp", f"c_min={v}", "c_min=") for v in ("0", "-1", "NaN")],
    *[("lp", f"c_max={v}", "c_max=") for v in ("0", "Infinity")],
    *[("lp", f"c_steps={v}", "c_steps=") for v in ("0", "-3", "100000")],
    *[("lp", f"lp_max_iter={v}", "lp_max_iter=") for v in ("0", "-1")],
    ("lp", "c_max=1e-8", "is below c_min"),
    *[("lpft", f"lr={v}", "lr=") for v in ("0", "-0.001", "NaN")],
    ("wiseft", "lr=-2", "lr="), ("wiseft", "weight_decay=Infinity", "weight_decay="),
    *[("flyp", f"lr={v}", "lr=") for v in ("0", "NaN")], ("flyp", "weight_decay=-0.1", "weight_decay="),
    *[("autoft", f"trials={v}", "trials=") for v in ("0", "-1")],
    *[("autoft", f"inner_steps={v}", "inner_steps=") for v in ("0", "-5")],
    *[("autoft", f"base_lr={v}", "base_lr=") for v in ("0", "NaN")],
    *[("l1sp", f"lam={v}", "lam=") for v in ("-1", "NaN")], ("l1sp", "beta=-1", "beta="),
    *[("kd", f"lam={v}", "lam=") for v in ("-0.5", "Infinity")],
    *[("kd", f"temperature={v}", "temperature=") for v in ("0", "-2")],
    ("kd", "kind=soft", "not a distillation kind"),
    *[("lora", f"rank={v}", "rank=") for v in ("0", "2.5", "5000")],
    *[("lora", f"dropout={v}", "dropout=") for v in ("1", "-0.1")], ("lora", "alpha=0", "alpha="),
    ("lora", 'targets=["q","w"]', "must name some of"), ("lora", "targets=[]", "must name some of"),
    *[("lipsum", f"lam={v}", "lam=") for v in ("-1", "NaN")], ("lipsum", "texts=0", "texts="),
    ("lipsum", "text_length=0", "text_length="), ("lipsum", "text_length=20", "does not fit the model's context"),
    *[("tpgm", f"iters={v}", "iters=") for v in ("0", "-3")], ("tpgm", "proj_lr=0", "proj_lr="),
    ("tpgm", "norm=l1", "is not a TPGM norm"),
    *[("lines", f"alpha={v}", "is not a LiNeS alpha") for v in ("1.5", "-0.1", "best")],
    *[(m, "steps=500", "run those first") for m in ("soup-greedy", "soup-uniform", "modelstock", "tpgm", "lines")],
]
PROTOCOL = [  # protocol settings (for ft unless said)
    *[(f"steps={v}", "steps=") for v in ("-1", "100000000")],
    *[(f"batch_size={v}", "batch_size=") for v in ("0", "-4", "2000000")],
    *[(f"eval_every={v}", "eval_every=") for v in ("0", "-1")],
    ("warmup=-1", "warmup="),
    *[(f"grad_clip={v}", "grad_clip=") for v in ("-1", "NaN", "Infinity")],
    ("eval_batch_size=0", "eval_batch_size="),
    ("budget_rule=longest", "budget_rule=longest is unknown"),
    ("prompts=fancy", "no prompt set 'fancy'"),
    ("batch_size=5000", "fewer than batch_size=5000"),
    ("steps=1.5", "wrong type"), ("steps=true", "wrong type"), ("lr=abc", "wrong type"), ("batch_size=[1,2]", "wrong type"),
    ("=3", "malformed --set"), ("lr=", "malformed --set"), ("nosuch=1", "unknown setting 'nosuch'"),
    ("lrr=0.1", "did you mean lr?"),
]


def cases(files: Path) -> list[tuple[list[str], str]]:
    out = [(["run", "--method", m, *S(s)], frag) for m, s, frag in HPARAMS]
    out += [(["run", "--method", "ft", *S(s)], frag) for s, frag in PROTOCOL]
    out += [(["run", "--method", "autoft", *S(f"ood_val_size={v}")], "ood_val_size=") for v in ("0", "-10")]
    out += [
        (["run", "--method", "autoft", "--trials", "0"], "trials="),
        (["run", "--method", "autoft", "--inner-steps", "-1"], "inner_steps="),
        (["run", "--method", "autoft", "--trials", "x"], "invalid int value"),
        (["run", "--method", "ft", "--workers", "-1"], "--workers -1 is out of range"),
        (["run", "--method", "ft", "--workers", "100000"], "--workers 100000 is out of range"),
        (["run", "--method", "ft", "--workers", "many"], "invalid int value"),
        (["run", "--method", "ft", "--hparams-seed", "-5"], "--hparams-seed -5 is negative"),
        (["run", "--method", "ft", "--seed", "-3"], "negative"),
        (["run", "--method", "ft", "--seed", "x"], "invalid int value"),
        (["run", "--method", "ft", "--device", "tpu"], "unknown device 'tpu'"),
        (["run", "--method", "ft", "--device", "cuda"], "no CUDA GPU is visible"),
        (["run", "--method", "ft", "extra"], "unrecognized arguments: extra"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["list", "widgets"], "invalid choice: 'widgets'"),
        (["run"], "required: --method"),
        (["run", "--method", ""], "unknown method ''"),
        (["run", "--method", "ft", "--dataset", ""], "unknown dataset ''"),
        (["run", "--method", "ft", "--dataset", "imagenett"], "did you mean imagenet"),
        (["run", "--method", "ft", "--out", str(files / "afile")], "cannot write to the run store"),
        (["run", "--method", "ft", "--plugin", str(files / "notes.txt")], "is not a Python file"),
        (["run", "--method", "ft", "--plugin", str(files / "syntax.py")], "failed to import: SyntaxError"),
        (["run", "--method", "ft", "--plugin", str(files / "exits.py")], "called sys.exit(3)"),
        (["run", "--method", "ft", "--plugin", str(files / "raises.py")], "failed to import: RuntimeError: boom"),
        (["run", "--method", "ft", "--plugin", str(files / "badname.py")], "method name '../x' is not allowed"),
        (["list", "--plugin", str(files / "raises.py")], "failed to import: RuntimeError"),
        (["run", "--method", "ft", "--pretrained", str(files / "missing.pt")], "does not exist"),
        (["run", "--method", "ft", "--pretrained", str(files / "text.pt")], "it is not a checkpoint of that architecture"),
        (["run", "--method", "ft", "--model", "ViT-B-61"], "unknown model 'ViT-B-61'"),
        (["run", "--method", "ft", "--model", "bench-tinyclip", "--pretrained", "laion"], "no pretrained tag 'laion'"),
        (["run", "--method", "ft", "--model", "ViT-B-16", "--pretrained", "openai"], "not in the local cache"),
        (["run", "--method", "ft", "--reduced"], "has no reduced budget"),
        (["run", "--method", "ft", "--search-only"], "unrecognized arguments: --search-only"),
        (["run", "--method", "ft", "--storage", "x.journal"], "unrecognized arguments: --storage"),
        (["run", "--method", "kd", "--teacher-cache", "2"], "--teacher-cache 2 must be 0 or 1"),
        (["run", "--method", "lora", "--teacher-cache", "0"], "unrecognized arguments: --teacher-cache"),
        (["run", "--method", "autoft", "--storage", "nosuchdb://x"], "cannot open the AutoFT study storage"),
        (["run", "--method", "ft", "--dataset", "iwildcam"], "iwildcam needs its files: pass --data-root DIR"),
        (["run", "--method", "ft", "--dataset", "fmow", "--data-root", "/no/such"], "data folder /no/such does not exist"),
        (["run", "--method", "ft", "--dataset", "domainnet", "--data-root", str(files), "--model", "bench-tinyclip",
          "--pretrained", "tinyshift"], "domainnet all splits: missing"),
        (["run", "--method", "ft", "--dataset", "iwildcam", "--data-root", str(files), "--model", "bench-tinyclip",
          "--pretrained", "tinyshift"], "iwildcam all splits: missing"),
        (["run", "--method", "ft", "--dataset", "fmow", "--data-root", str(files)],  # the default hub model: data first
         "fmow all splits: missing"),
        (["data", "check", "nosuch"], "unknown dataset 'nosuch'"),
        (["data", "download", "domainnet", "--data-root", str(files)], "bench cannot download 'domainnet'; downloadable: "
                                                                        "iwildcam, fmow, imagenet-v2"),
        (["data", "download", "iwildcam", "--source", "nope", "--data-root", str(files / "dl")],
         "iwildcam has no source 'nope'; its sources: wilds, hf-emmilly"),
        (["data", "download", "iwildcam", "--from-archive", "/no/such.tgz", "--data-root", str(files / "dl")],
         "--from-archive /no/such.tgz is not a file"),
        (["data", "download", "iwildcam", "--sources", "/no/such.json", "--data-root", str(files / "dl")],
         "cannot read the sources table /no/such.json"),
        (["data", "download", "iwildcam", "--sources", str(files / "afile"), "--data-root", str(files / "dl")],
         "is not valid JSON"),
        (["data", "download", "iwildcam", "--source", "wilds", "--from-archive", str(files / "afile"), "--data-root",
          str(files / "dl")], "pass --source or --from-archive, not both"),
        (["data", "verify", "nosuch"], "unknown dataset 'nosuch'"),
        (["data", "verify", "iwildcam", "--workers", "0", "--data-root", str(files)], "--workers 0 is out of range"),
        (["data", "download", "iwildcam"], "pass --data-root DIR"),
        (["data", "download", "iwildcam", "--data-root", str(files / "afile")], "is a file, not a folder"),
        (["data"], "required: data_command"),
        (["leaderboard", "--runs", "/no/such/runs"], "run store /no/such/runs does not exist"),
        (["leaderboard", "--runs", str(files / "afile")], "does not exist"),
        (["run", "--metod", "ft"], "required: --method"),
        # the first table of bad inputs (tests/test_cli.py before), kept
        (["run", "--method", "ft", "--dataset", "tinyshfit"], "did you mean tinyshift"),
        (["run", "--method", "autoft", "--dataset", "iwildcam"], "iwildcam needs its files: pass --data-root DIR"),
        (["run", "--method", "ft", "--trials", "3"], "unrecognized arguments: --trials 3; see `bench run --method ft --help`"),
        (["run", "--method", "ft", "--dataset", "imagenet", "--data-root", "/tmp", "--model", "bench-tinyclip",
          "--pretrained", "tinyshift"], "ImageNet val folder /tmp/imagenet/val is missing"),
        (["run", "--method", "ft", "--set", "lr"], "malformed --set 'lr'"),
        (["run", "--method", "ft", "--set", "stepz=3"], "unknown setting 'stepz' for method ft (did you mean steps?)"),
        (["run", "--method", "ft", "--set", "steps=ten"], "wrong type"),
        (["run", "--method", "ft", "--data-root", "/no/such/folder"], "data folder /no/such/folder does not exist"),
        (["run", "--method", "ft", "--plugin", "/no/such/plugin.py"], "is not a Python file"),
        (["run", "--method", "fx"], "unknown method 'fx' (did you mean ft?)"),
    ]
    return out


N_CASES = len(HPARAMS) + len(PROTOCOL) + 2 + 66


def test_there_are_over_a_hundred_distinct_cases(files):
    table = cases(files)
    assert len(table) == N_CASES and len({tuple(argv) for argv, _ in table}) == len(table) >= 100


@pytest.mark.parametrize("index", range(N_CASES))
def test_bad_input(index, files, store, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    argv, fragment = cases(files)[index]
    if argv[0] == "run" and "--out" not in argv:
        argv = argv + ["--out", str(store), "--quiet"]
    before = snapshot(store)
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (argv, out, err)
    assert fragment in err, (argv, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert argv[0] != "data" or err.startswith("bench: error: "), err  # nothing before the line (no progress residue)
    assert snapshot(store) == before
