"""torch.compile of the image tower while it trains: on by default on CUDA (where it pays: fused kernels, fewer
launches), off by default on the CPU, `--compile on|off` to choose. The tower is compiled in place
(`Module.compile`), so its parameters and state-dict keys are the eager model's and checkpoints are unchanged; a
graph that does not compile runs eagerly (dynamo's suppress_errors), so compiling never fails a run. Only the
protocol's fine-tuning loop is compiled (AutoFT's inner search loop and the final evaluation run eagerly)."""
from __future__ import annotations

import os
from contextlib import contextmanager

import torch

from bench.errors import BenchError

MODES = ("auto", "on", "off")


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise BenchError(f"--compile {mode!r} is not one of {', '.join(MODES)}; auto compiles on CUDA only")
    return mode


def wanted(mode: str, device: torch.device) -> bool:
    return mode == "on" or (mode == "auto" and device.type == "cuda")


@contextmanager
def compiled_tower(model, enabled: bool):
    """Within the block the model's image tower (`model.visual`) runs compiled; after it, eagerly again. Yields
    whether it was compiled."""
    tower = getattr(model, "visual", None)
    if not enabled or not isinstance(tower, torch.nn.Module):
        yield False
        return
    import torch._dynamo as dynamo

    previous = dynamo.config.suppress_errors
    dynamo.config.suppress_errors = True  # the clean fallback: an uncompilable graph runs eagerly
    tower.compile(backend=os.environ.get("BENCH_COMPILE_BACKEND", "inductor"))  # another backend: tests, debugging
    try:
        yield True
    finally:
        tower._compiled_call_impl = None  # what Module.compile set: the tower's calls are eager again
        dynamo.config.suppress_errors = previous
