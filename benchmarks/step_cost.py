"""Benchmark: per-step training cost of each method relative to FT, and AutoFT's search speed.

    python benchmarks/step_cost.py [--steps 20] [--trials 10]

One step = the method's loss, backward, gradient clipping (where the method clips) and optimiser step, on the
testbed model (bench-tinyclip) at the protocol's batch (64 x 32 px), through the same code the trainer runs.
AutoFT's final-run step uses the nine-term objective with the released iWildCam weights (all terms active).
KD is timed twice: with the teacher's outputs looked up (the testbed's inputs are deterministic) and, as
`kd-teacher`, running the frozen teacher's forward every step (what augmented on-disk datasets do).
AutoFT search speed: a real `--search-only` search (default 10 inner steps, OOD-val scoring) in a scratch store.
Writes benchmarks/results/step_cost.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from bench.benchmarking import training_step_fn
from bench.runner import RunRequest, execute

METHODS = ["ft", "l2sp", "l1sp", "kd", "kd-teacher", "lora", "ftp", "flyp", "autoft", "lipsum", "spd", "carot",
           "r-adapter"]
VARIANTS = {"kd-teacher": ("kd", {"teacher_cache": 0})}  # label -> (method, run options)


def step_fn(label: str, **kwargs):
    """`training_step_fn` for a method or one of the labelled VARIANTS."""
    method, options = VARIANTS.get(label, (label, {}))
    return training_step_fn(method, options=options, **kwargs)


def step_times(methods: list[str], steps: int, rounds: int = 5, warmup: int = 10) -> dict[str, float]:
    """Seconds per step, the fastest round of each method; rounds go round-robin over the methods, so a slow spell
    of this shared machine hits every method alike instead of whichever happened to run then."""
    steppers = {m: step_fn(m) for m in methods}
    for step in steppers.values():
        for _ in range(warmup):
            step()
    best = {m: float("inf") for m in methods}
    for _ in range(rounds):
        for m, step in steppers.items():
            start = time.perf_counter()
            for _ in range(steps):
                step()
            best[m] = min(best[m], (time.perf_counter() - start) / steps)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args()
    per_step = step_times(METHODS, args.steps)
    for m, t in per_step.items():
        print(f"{m:8s} {t * 1000:7.1f} ms/step   {t / per_step['ft']:.2f}x FT", flush=True)
    record, _ = execute(RunRequest(method="autoft", out=Path(tempfile.mkdtemp()), search_only=True,
                                   settings=[f"trials={args.trials}"]))
    per_minute = args.trials / record["search_s"] * 60
    print(f"autoft search: {args.trials} trials x 10 inner steps in {record['search_s']:.1f}s = {per_minute:.1f} trials/min")
    out = Path(__file__).parent / "results" / "step_cost.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads", "torch": torch.__version__,
        "command": f"python benchmarks/step_cost.py --steps {args.steps} --trials {args.trials}",
        "batch": "64 x 3 x 32 x 32, bench-tinyclip",
        "ms_per_step": {m: round(t * 1000, 2) for m, t in per_step.items()},
        "ratio_to_ft": {m: round(t / per_step["ft"], 3) for m, t in per_step.items()},
        "autoft_search": {"trials": args.trials, "inner_steps": 10, "seconds": round(record["search_s"], 2),
                          "trials_per_minute": round(per_minute, 2)},
    }, indent=1) + "\n")


if __name__ == "__main__":
    main()
