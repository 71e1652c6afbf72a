"""Benchmark: the whole testbed leaderboard (every method x 3 seeds, official protocol) on this machine.

    python benchmarks/testbed_leaderboard.py [--out runs] [--force]

Runs each method through the real CLI (`bench run --method M --seed 0 1 2`), times every command, then
`bench leaderboard`. Before the methods built from finished fine-tunes it runs their ingredients: ft with
hyperparameter draws 1-3 at seeds 0-2 (`bench sweep`, the soups' ingredients with draw 0) and ft at seeds 3-5
(Model Stock's seed s merges ft seeds 2s and 2s+1). Prints per-method wall time (CLI start-up included), per-run time from the records,
and the total; writes the figures to benchmarks/results/testbed_leaderboard.json (figures of methods not
run this time are kept from the previous file, so the file always covers every method).
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

METHODS = ["zeroshot", "lp", "ft", "lpft", "l2sp", "l1sp", "kd", "lora", "wiseft", "flyp", "ftp", "autoft", "lipsum",
           "tpgm", "lines", "soup-uniform", "soup-greedy", "modelstock", "vrf", "spd", "carot", "r-adapter"]
CONSUMERS = {"tpgm", "lines", "soup-uniform", "soup-greedy", "modelstock", "vrf"}


def ingredients(bench: list[str], out: str, force: bool) -> float:
    """ft runs the consumers need beyond seeds 0-2 with default hyperparameters; returns their wall time."""
    t0 = time.perf_counter()
    extra = ["--force"] if force else []
    subprocess.run(bench + ["run", "--method", "ft", "--seed", "3", "4", "5", "--out", out, "--quiet", *extra],
                   check=True, stdout=subprocess.DEVNULL)
    if force:  # a sweep skips finished jobs; --force re-runs them one by one
        for draw in ("1", "2", "3"):
            subprocess.run(bench + ["run", "--method", "ft", "--seed", "0", "1", "2", "--hparams-seed", draw, "--out",
                                    out, "--quiet", "--force"], check=True, stdout=subprocess.DEVNULL)
    else:
        subprocess.run(bench + ["sweep", "--method", "ft", "--seed", "0", "1", "2", "--hparams-seed", "1", "2", "3",
                                "--out", out, "--jobs", "1"], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="runs")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--seeds", nargs="+", default=["0", "1", "2"])
    parser.add_argument("--methods", nargs="+", default=METHODS, help="a subset; figures of the others are kept")
    args = parser.parse_args()
    bench = [sys.executable, "-m", "bench"]
    results, start, ready = {}, time.perf_counter(), False
    for method in args.methods:
        if method in CONSUMERS and not ready:
            wall = ingredients(bench, args.out, args.force)
            results["ft ingredients"] = {"wall_s": round(wall, 1), "runs": 12, "per_run_s": []}
            print(f"ft ingredients {wall:6.1f}s (seeds 3-5; draws 1-3 at seeds 0-2)", flush=True)
            ready = True
        t0 = time.perf_counter()
        cmd = bench + ["run", "--method", method, "--seed", *args.seeds, "--out", args.out, "--quiet"]
        subprocess.run(cmd + (["--force"] if args.force else []), check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        records = [json.loads(p.read_text()) for p in sorted(Path(args.out, "tinyshift", method).glob("*/record.json"))]
        per_run = [r["timing"]["total_s"] for r in records if r["official"]]
        results[method] = {"wall_s": round(wall, 1), "runs": len(per_run),
                           "per_run_s": [round(t, 1) for t in per_run]}
        print(f"{method:10s} {wall:6.1f}s for {len(args.seeds)} seeds; per run {results[method]['per_run_s']}", flush=True)
    subprocess.run(bench + ["leaderboard", "--runs", args.out], check=True, stdout=subprocess.DEVNULL)
    total = time.perf_counter() - start
    print(f"total {total:.1f}s ({total / 60:.1f} min) including `bench leaderboard`")
    out = Path(__file__).parent / "results" / "testbed_leaderboard.json"
    out.parent.mkdir(exist_ok=True)
    previous = json.loads(out.read_text())["methods"] if out.exists() else {}
    merged = {m: results.get(m, previous.get(m)) for m in [*METHODS, "ft ingredients"] if m in results or m in previous}
    out.write_text(json.dumps({"machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
                               f"{platform.processor() or 'cpu'}", "python": platform.python_version(),
                               "torch": torch.__version__,
                               "command": "python benchmarks/testbed_leaderboard.py [--methods M ...]",
                               "methods": merged,
                               "total_wall_s_all_methods": round(sum(v["wall_s"] for v in merged.values()), 1)},
                              indent=1) + "\n")

if __name__ == "__main__":
    main()
