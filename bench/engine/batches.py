"""Deterministic, resumable batch streams: the batch at step s depends only on (seed, s).

Each epoch is a fresh permutation seeded by (seed, epoch), with the last partial batch dropped, so a resumed run
sees exactly the batches an uninterrupted one would. In-memory splits are indexed directly (no worker start-up);
on-disk splits go through one persistent DataLoader that is never rebuilt.
"""
from __future__ import annotations

from typing import Iterator

import torch

from bench.config import seed_hash
from bench.engine import distributed
from bench.engine.device_decode import decodes_on_device, device_decoded_batches


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed_hash("batches", seed, epoch)))


class StepSampler(torch.utils.data.Sampler):
    """Yields sample indices for steps start, start+1, ... forever."""

    def __init__(self, n: int, batch_size: int, seed: int, start_step: int, part: slice = slice(None)):
        self.n, self.batch_size, self.seed, self.start_step, self.part = n, batch_size, seed, start_step, part

    def __iter__(self):
        per_epoch = self.n // self.batch_size
        step = self.start_step
        while True:
            epoch, pos = divmod(step, per_epoch)
            perm = epoch_permutation(self.n, self.seed, epoch)
            for p in range(pos, per_epoch):
                yield from perm[p * self.batch_size : (p + 1) * self.batch_size][self.part].tolist()
            step = (epoch + 1) * per_epoch


def train_batches(split, batch_size: int, seed: int, start_step: int = 0, device=None,
                  num_workers: int = 0, with_indices: bool = False,
                  decode: str = "loader") -> Iterator[tuple[torch.Tensor, ...]]:
    """(images, labels) per step; with `with_indices` also the examples' positions in the split (CPU tensor).
    `batch_size` is the global batch: under torchrun each rank gets its contiguous slice of every batch.
    `decode="device"`: on-disk JPEGs are decoded on `device` (bench.engine.device_decode)."""
    part = distributed.local_slice(batch_size)
    local = part.stop - part.start
    n = len(split)
    if n < batch_size:
        from bench.errors import BenchError

        raise BenchError(f"the training split has {n} examples, fewer than batch_size={batch_size}; lower it with --set batch_size=N")
    if getattr(split, "images", None) is not None:  # in memory: index directly
        per_epoch = n // batch_size
        step, epoch, perm = start_step, None, None
        while True:
            e, pos = divmod(step, per_epoch)
            if e != epoch:
                epoch, perm = e, epoch_permutation(n, seed, e)
            idx = perm[pos * batch_size : (pos + 1) * batch_size][part]
            batch = split.images[idx].to(device), split.labels[idx].to(device)
            yield (*batch, idx) if with_indices else batch
            step += 1
    elif decodes_on_device(split, decode):
        sampler = StepSampler(n, batch_size, seed, start_step, part)
        for images, labels, positions in device_decoded_batches(split, sampler, local, seed, start_step, device,
                                                                num_workers):
            yield (images, labels, positions) if with_indices else (images, labels)
    else:
        sampler = StepSampler(n, batch_size, seed, start_step, part)
        loader = torch.utils.data.DataLoader(
            split, batch_size=local, sampler=sampler, drop_last=True,
            num_workers=num_workers, pin_memory=device is not None and device.type == "cuda",
            persistent_workers=num_workers > 0)
        positions = iter(sampler)  # the same deterministic index stream the loader draws from
        for images, labels in loader:
            batch = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            if with_indices:
                batch = (*batch, torch.tensor([next(positions) for _ in range(local)]))
            yield batch


def eval_batches(split, batch_size: int, device=None, num_workers: int = 0):
    """Batches in order; on-disk splits through a DataLoader with workers and pinned memory on CUDA."""
    if getattr(split, "images", None) is not None:
        for start in range(0, len(split), batch_size):
            yield split.images[start : start + batch_size].to(device), split.labels[start : start + batch_size]
        return
    loader = torch.utils.data.DataLoader(split, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                                         pin_memory=device is not None and device.type == "cuda")
    for images, labels in loader:
        yield images.to(device, non_blocking=True), labels
