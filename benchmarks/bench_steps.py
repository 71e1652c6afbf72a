"""pytest-benchmark micro-benchmarks: one training step of each method at the testbed model and batch (64 x 32 px).

    python -m pytest -o addopts= benchmarks/bench_steps.py --benchmark-only --benchmark-json runs/benchmarks/steps-cpu.json
    bench leaderboard      # summarises the saved JSON as ratios to FT in a "Per-step cost" section

Not part of the test suite (pytest's testpaths is tests/); timings belong in benchmarks, not in timed tests.
"""
import pytest

from bench.benchmarking import training_step_fn

METHODS = ["ft", "lpft", "l2sp", "l1sp", "kd", "lora", "wiseft", "ftp", "flyp", "autoft", "lipsum", "spd", "carot", "r-adapter"]


@pytest.mark.parametrize("method", METHODS)
def test_training_step(benchmark, method):
    step = training_step_fn(method)
    for _ in range(5):  # warm-up: allocator, first-call paths
        step()
    benchmark.pedantic(step, rounds=30, iterations=1, warmup_rounds=2)
