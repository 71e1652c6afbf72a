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


def training_step_fn(method_name: str, dataset: str = "tinyshift", settings: list[str] | None = None,
                     model: str | None = None, pretrained: str | None = None, device: str | None = None,
                     fixed_batch: bool = False, sync: bool = True, compile_model: bool = False,
                     options: dict | None = None):
    """A zero-argument function that runs one more training step each call (returning the loss tensor). A
    searching method is put in the state its search would leave (its `search_stand_in`), so the step times its
    final objective. `fixed_batch` re-uses one batch already on the device: the step's compute alone, without the
    input pipeline. `model`/`pretrained` pick another model (pretrained None: random weights); `compile_model`
    compiles the model's forward (torch.compile); `options` are the method's run options."""
    p, engine = _engine(method_name, dataset, settings, model, pretrained, device, options)
    method = build_method(p, engine)
    method.search_stand_in()
    net = method.build()
    if compile_model:
        net.compile()
    optimizer = method.optimizer(net)
    batches = train_batches(engine.read(p.protocol.train_split), p.protocol.batch_size, method.train_seed(), 0,
                            engine.device, with_indices=True)
    if fixed_batch:
        first = next(batches)
        batches = iter(lambda: first, None)
    clip = p.protocol.grad_clip if method.clip_gradients else None
    net.train()
    counter = iter(range(10**9))

    def step():
        images, labels, method.batch_indices = next(batches)
        method.step = next(counter)
        loss = training_step(net, method.loss, optimizer, images, labels, engine.device, engine.autocast_dtype, clip)
        if sync and engine.device.type == "cuda":
            torch.cuda.synchronize()
        return loss

    return step


def eval_step_fn(dataset: str = "tinyshift", settings: list[str] | None = None, model: str | None = None,
                 pretrained: str | None = None, device: str | None = None, compile_model: bool = False):
    """A zero-argument function that runs the zero-shot classifier's evaluation forward (no_grad, the engine's
    autocast) on one batch of the protocol's batch size already on the device."""
    p, engine = _engine("zeroshot", dataset, settings, model, pretrained, device)
    net = engine.zero_shot_classifier().eval()
    if compile_model:
        net.compile()
    images, _ = next(train_batches(engine.read(p.protocol.train_split), p.protocol.batch_size, 0, 0, engine.device))
    dtype = engine.autocast_dtype

    @torch.no_grad()
    def forward():
        with torch.autocast(engine.device.type, dtype=dtype, enabled=dtype is not None):
            return net(images)

    return forward


def _engine(method_name, dataset, settings, model, pretrained, device, options=None):
    request = RunRequest(method=method_name, dataset=dataset, out=Path(tempfile.mkdtemp()), settings=settings or [],
                         model=model, pretrained=pretrained, device=device, options=dict(options or {}))
    p = plan(request)
    return p, build_engine(p, request, None)
