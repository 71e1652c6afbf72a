"""Data parallelism under `torchrun` (torch.distributed): one process per device, the protocol's batch is the
global batch, each rank trains on its contiguous slice of it and the gradients are averaged before clipping and the
optimiser step, so every rank holds the same weights and a run computes what one process with the same global batch
computes (up to float rounding and per-rank randomness such as dropout masks).

Gradients are averaged by one all-reduce of a flat buffer after the backward pass, not by DDP's hooks during it:
a method's loss may call any part of the model (features, head, the text tower), which DDP's wrapper does not
support; the price is no overlap of communication with the backward. Evaluation and feature extraction shard every
split over the ranks and gather the logits in order. `local()` turns all of this off for work that stays per
process (AutoFT's search: each rank is one more worker of the shared study).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


SINGLE = World()
_current = SINGLE
_launched = SINGLE  # the world of this process as torchrun started it


def current() -> World:
    """The world collective work happens in now (SINGLE inside `local()` or without torchrun)."""
    return _current


def launched() -> World:
    return _launched


def init_from_env() -> World:
    """Join the process group torchrun describes (WORLD_SIZE > 1); gloo on the CPU, NCCL on GPUs."""
    global _current, _launched
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return SINGLE
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and os.environ.get("BENCH_DIST_BACKEND") != "gloo" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    _current = _launched = World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return _current


@contextmanager
def local():
    """Per-process work: no collectives inside (each rank computes alone)."""
    global _current
    previous, _current = _current, SINGLE
    try:
        yield
    finally:
        _current = previous


def local_slice(global_batch: int, world: World | None = None) -> slice:
    """This rank's contiguous part of a global batch (the batch size must divide evenly)."""
    world = world or current()
    size = global_batch // world.size
    return slice(world.rank * size, (world.rank + 1) * size)


def shard(n: int, world: World | None = None) -> range:
    """This rank's contiguous part of n examples for evaluation (the last ranks may get one fewer)."""
    world = world or current()
    per = -(-n // world.size)
    return range(min(n, world.rank * per), min(n, (world.rank + 1) * per))


def average_gradients(parameters) -> None:
    """Average the gradients of every parameter that has one over the ranks, in one all-reduce."""
    world = current()
    if world.size == 1:
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world.size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def mean(value: torch.Tensor) -> torch.Tensor:
    """The mean of a tensor over the ranks (the running loss: every rank then sees the same value)."""
    if current().size == 1:
        return value
    value = value.clone()
    dist.all_reduce(value)
    return value / current().size


def gather_in_order(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Concatenate each rank's CPU tensors in rank order, on every rank (shards of unequal length are fine)."""
    if current().size == 1:
        return tensors
    parts = [None] * current().size
    dist.all_gather_object(parts, tensors)
    return tuple(torch.cat([p[i] for p in parts if p[i].numel()] or [parts[0][i]]) for i in range(len(tensors)))


def broadcast(value):
    """Rank 0's picklable value, on every rank."""
    if current().size == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if current().size > 1:
        dist.barrier()
