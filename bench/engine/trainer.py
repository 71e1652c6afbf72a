"""The protocol's fine-tuning loop: AdamW from the method, linear warm-up then cosine decay to 0 (per step),
gradient-norm clipping, periodic ID-val evaluation keeping the best checkpoint, and resumable checkpoints."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from bench.engine import distributed
from bench.errors import BenchError
from bench.engine.batches import train_batches
from bench.engine.compiling import compiled_tower
from bench.engine.device_decode import decodes_on_device
from bench.engine.evaluation import predict
from bench.engine.step import training_step
from bench.results.io import atomic_torch_save
from bench.weights import clone_state


LOG_EVERY = 10  # steps between host reads of the running loss (finiteness check and progress)


def cosine_factor(step: int, warmup: int, total: int) -> float:
    """lr multiplier at a 0-based step: (step+1)/warmup during warm-up, then half a cosine down to 0."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


class Diverged(BenchError):
    """The loss stopped being finite: the same configuration would diverge again, so its folder is not kept."""


class NullReporter:
    def start(self, total: int, done: int) -> None: ...
    def step(self, step: int, loss: float) -> None: ...
    def evaluated(self, step: int, score: float) -> None: ...
    def stop(self) -> None: ...


@dataclass
class TrainResult:
    best_state: dict
    best_step: int
    best_score: float
    history: list = field(default_factory=list)
    steps: int = 0
    images: int = 0
    seconds: float = 0.0
    resumed_from: int = 0
    compiled: bool = False  # the image tower ran under torch.compile


def on_device(state: dict, device) -> dict:
    return {key: value.to(device) for key, value in state.items()}


def _load_checkpoint(path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BenchError(f"checkpoint {path} is corrupt or unreadable ({type(exc).__name__}); re-run with --force to start this run over")


def fine_tune(method, model, ctx, checkpoint_path=None, reporter=None, stop_after: int | None = None,
              compile_tower: bool = False) -> TrainResult:
    """Train `model` with `method` under ctx.protocol (`ctx`: the engine's context). `stop_after` interrupts
    (tests of resume); `compile_tower` runs the image tower under torch.compile (bench.engine.compiling)."""
    with compiled_tower(model, compile_tower) as compiled:
        result = _fine_tune(method, model, ctx, checkpoint_path, reporter, stop_after)
    result.compiled = compiled
    return result


def _fine_tune(method, model, ctx, checkpoint_path, reporter, stop_after) -> TrainResult:
    p = ctx.protocol
    reporter = reporter or NullReporter()
    optimizer = method.optimizer(model)
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
    train = ctx.read(p.train_split)
    id_val = ctx.read(p.id_val_split)
    ctx.decoded_on_device = decodes_on_device(train, ctx.decode)  # recorded as data.decode
    result = TrainResult(best_state=clone_state(model), best_step=0, best_score=-math.inf)
    start, running = 0, None
    if checkpoint_path is not None and checkpoint_path.is_file():
        ckpt = _load_checkpoint(checkpoint_path)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        torch.set_rng_state(ckpt["rng"])
        start = result.resumed_from = ckpt["step"]
        # Checkpoints load to the CPU; the best state must live where the model does, or weight ensembling of
        # theta0 (on the device) and a never-beaten pre-interruption best state fails after training.
        device = next(model.parameters()).device
        result.best_state = on_device(ckpt["best_state"], device)
        result.best_step, result.best_score = ckpt["best_step"], ckpt["best_score"]
        result.history, result.seconds, result.images = ckpt["history"], ckpt["seconds"], ckpt["images"]
        running = torch.tensor(ckpt["running_loss"], device=ctx.device)
        method.load_train_state(ckpt.get("method") or {})
    batches = train_batches(train, p.batch_size, method.train_seed(), start, ctx.device, ctx.num_workers,
                            with_indices=True, decode=ctx.decode)
    model.train()
    reporter.start(p.steps, start)
    clock = time.perf_counter()
    checked = start  # the loss was last read on the host before this step
    for step in range(start, p.steps):
        factor = cosine_factor(step, p.warmup, p.steps)
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor
        images, labels, method.batch_indices = next(batches)
        method.step = step
        loss = training_step(model, method.loss, optimizer, images, labels, ctx.device, ctx.autocast_dtype,
                             p.grad_clip if method.clip_gradients else None)
        method.after_step(model)  # after the optimiser step (an EMA of the weights updates here)
        result.images += len(labels)
        # The running loss stays on the device (a NaN or inf poisons it for good), so the host waits for it only
        # every LOG_EVERY steps and at evaluations, not after every step.
        loss = loss.float()
        running = loss if running is None else 0.9 * running + 0.1 * loss
        evaluate_now = (step + 1) % p.eval_every == 0 or step + 1 == p.steps
        if evaluate_now or (step + 1) % LOG_EVERY == 0:
            value = distributed.mean(running).item()  # the global batch's running loss, the same on every rank
            if not math.isfinite(value):
                raise Diverged(f"the loss became {value} between steps {checked} and {step}; lower the learning rate "
                               f"(--set lr=...)")
            reporter.step(step + 1, value)
            checked = step + 1
        if evaluate_now:
            logits, y = predict(model, id_val, p.eval_batch_size, ctx.device, ctx.autocast_dtype, ctx.num_workers)
            score = ctx.metrics(p.id_val_split, logits, y)[p.metric]
            result.history.append({"step": step + 1, "loss": round(value, 5), f"id_val_{p.metric}": score})
            reporter.evaluated(step + 1, score)
            if score > result.best_score:
                result.best_state, result.best_step, result.best_score = clone_state(model), step + 1, score
            if ctx.device.type == "cuda":
                torch.cuda.synchronize()
            result.seconds += time.perf_counter() - clock
            clock = time.perf_counter()
            if checkpoint_path is not None and step + 1 < p.steps and distributed.current().main:
                atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                   "rng": torch.get_rng_state(), "step": step + 1, "best_state": result.best_state,
                                   "best_step": result.best_step, "best_score": result.best_score,
                                   "history": result.history, "seconds": result.seconds, "images": result.images,
                                   "running_loss": value, "method": method.train_state()},
                                  checkpoint_path)
            if stop_after is not None and step + 1 >= stop_after:
                reporter.stop()
                raise KeyboardInterrupt(f"stopped after step {step + 1}")
    reporter.stop()
    result.steps = p.steps
    return result
