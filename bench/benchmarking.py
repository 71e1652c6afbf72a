"""One training step of a method, ready to time: the loss, backward, clipping (where the method clips) and optimiser
step the protocol's trainer runs, on the protocol's batch. Shared by benchmarks/step_cost.py and the
pytest-benchmark micro-benchmarks in benchmarks/bench_steps.py."""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from bench.protocols.batches import train_batches
from bench.runner import RunRequest, build_context, plan

# autoft/hparams/iwildcam.json of the official repository (CE = 1): every term of the objective is active.
RELEASED_IWILDCAM = {"ce": 1.0, "dcm": 0.622, "entropy": 4.7e-4, "flyp": 1.906, "hinge": 1.6e-4, "l1init": 1.5e-3,
                     "l1zero": 1.9e-4, "l2init": 1.7e-4, "l2zero": 1.1e-4}


def training_step(method_name: str, dataset: str = "tinyshift", settings: list[str] | None = None):
    """A zero-argument function that runs one more training step each call."""
    request = RunRequest(method=method_name, dataset=dataset, out=Path(tempfile.mkdtemp()), settings=settings or [])
    p = plan(request)
    ctx, method = build_context(p, request, None)
    if method_name == "autoft":
        method.best = {"weights": RELEASED_IWILDCAM, "lr": p.protocol.lr, "weight_decay": 0.1, "seed": 0}
    model = method.build()
    optimizer = method.optimizer(model)
    batches = train_batches(ctx.data.role("train"), p.protocol.batch_size, 0, 0, ctx.device)
    model.train()
    counter = iter(range(10**9))

    def step():
        images, labels = next(batches)
        method.step = next(counter)
        loss = method.loss(model, images, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if method.clip_gradients and p.protocol.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), p.protocol.grad_clip)
        optimizer.step()
        if ctx.device.type == "cuda":
            torch.cuda.synchronize()

    return step
