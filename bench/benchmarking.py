"""One training step of a method, ready to time: exactly the step the protocol's trainer runs
(bench/engine/step.py: autocast, loss, backward, clipping where the method clips, optimiser step) on the
protocol's batch. Shared by benchmarks/step_cost.py and the pytest-benchmark micro-benchmarks in
benchmarks/bench_steps.py."""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from bench.engine.batches import train_batches
from bench.engine.run import build_engine, build_method
from bench.engine.step import training_step
from bench.runner import RunRequest, plan


def training_step_fn(method_name: str, dataset: str = "tinyshift", settings: list[str] | None = None):
    """A zero-argument function that runs one more training step each call. A searching method is put in the
    state its search would leave (its `search_stand_in`), so the step times its final objective."""
    request = RunRequest(method=method_name, dataset=dataset, out=Path(tempfile.mkdtemp()), settings=settings or [])
    p = plan(request)
    engine = build_engine(p, request, None)
    method = build_method(p, engine)
    method.search_stand_in()
    model = method.build()
    optimizer = method.optimizer(model)
    batches = train_batches(engine.read(p.protocol.train_split), p.protocol.batch_size, 0, 0, engine.device)
    clip = p.protocol.grad_clip if method.clip_gradients else None
    model.train()
    counter = iter(range(10**9))

    def step():
        images, labels = next(batches)
        method.step = next(counter)
        training_step(model, method.loss, optimizer, images, labels, engine.device, engine.autocast_dtype, clip)
        if engine.device.type == "cuda":
            torch.cuda.synchronize()

    return step
