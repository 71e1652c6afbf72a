"""The application's entry to runs: resolve method and dataset names through their registries, then let the
engine plan and execute (bench/engine/). The CLI, the benchmarks and the tests call these."""
from __future__ import annotations

from bench.engine import planning, run
from bench.engine.planning import Plan, RunRequest

__all__ = ["Plan", "RunRequest", "execute", "join_process_group", "plan", "resolve"]


def resolve(request: RunRequest) -> tuple[type, type]:
    from bench.datasets import DATASETS
    from bench.methods import METHODS

    return METHODS.get(request.method), DATASETS.get(request.dataset)


def plan(request: RunRequest) -> Plan:
    return planning.plan(request, *resolve(request))


def execute(request: RunRequest, reporter=None, stop_after: int | None = None) -> tuple[dict, str]:
    """Run (or skip) one configuration; returns (record, "done" | "skipped" | "searched")."""
    return run.execute(request, *resolve(request), reporter=reporter, stop_after=stop_after)


def join_process_group() -> bool:
    """Under torchrun (WORLD_SIZE > 1) join the process group (gloo on CPUs, NCCL on GPUs); True on the rank that
    reports and writes (rank 0, or the only process)."""
    from bench.engine import distributed

    return distributed.init_from_env().main
