"""Shared by the methods built from finished fine-tunes (model soups, Model Stock, TPGM, LiNeS): which runs of the
store they take, loading their weights, and the per-tensor arithmetic on state dicts. None of this reads a test
split: the engine hands a consuming method only the runs' ids, seeds, hyperparameters and ID-val selection, and
their weights through `ctx.input_state`."""
from __future__ import annotations

import re

import torch

from bench.errors import BenchError
from bench.methods.base import Method
from bench.models.classifier import ImageClassifier

BLOCK = re.compile(r"(?:^|\.)resblocks\.(\d+)\.")  # open_clip ViT residual blocks: visual.transformer.resblocks.N.


def runs_of_seed(runs: list[dict], seed: int, hparams_seed: int | None = None) -> list[dict]:
    return [r for r in runs if r["seed"] == seed and (hparams_seed is None or (r["hparams_seed"] or 0) == hparams_seed)]


def one_run(name: str, runs: list[dict], seed: int) -> list[dict]:
    """The default-hyperparameter fine-tune of this seed (what a post-hoc method post-processes)."""
    mine = runs_of_seed(runs, seed, hparams_seed=0)
    source = runs[0]["method"] if runs else "ft"
    if not mine:
        raise BenchError(f"{name} with seed {seed} post-processes the {source} run of seed {seed} (default "
                         f"hyperparameters); none is in the store: run `bench run --method {source} --seed {seed}` first")
    if len(mine) > 1:
        raise BenchError(f"{name} with seed {seed} found {len(mine)} {source} runs of seed {seed} with default "
                         f"hyperparameters but different settings ({', '.join(r['run_id'] for r in mine)}); keep one "
                         "per store (--out DIR)")
    return mine


class FromFinishedRuns(Method):
    """A method whose model is computed from finished `ft` runs, without training: by default the one run of this
    seed with default hyperparameters (TPGM, LiNeS); soups and Model Stock pick several. `build` sets `self._info`,
    recorded under `info_key`."""

    hparams = {}  # nothing trained here: the fine-tunes' hyperparameters are theirs
    trains = False
    consumes = ("ft",)
    info_key = ""

    @classmethod
    def pick_inputs(cls, runs, config):
        return one_run(cls.name, runs, config["seed"])

    def info(self) -> dict:
        return {self.info_key: self._info}


def load_finetuned(ctx, run_id: str) -> ImageClassifier:
    """A consumed fine-tune as a model on the run's device (the zero-shot classifier's layout, its weights)."""
    model = ctx.zero_shot_classifier()
    model.load_state_dict(ctx.input_state(run_id))
    return model


def same_layout(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], what: str) -> None:
    if a.keys() != b.keys() or any(a[k].shape != b[k].shape for k in a):
        raise BenchError(f"{what}: the models' tensors differ in names or shapes; were they fine-tuned from the same "
                         "model and dataset?")
    for k, v in a.items():
        if not v.is_floating_point() and not torch.equal(v, b[k]):
            raise BenchError(f"{what}: the non-float tensor {k} differs between the models")


def running_mean(mean: dict[str, torch.Tensor], count: int, new: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The mean of `count` models plus one more: mean * n/(n+1) + new/(n+1) per float tensor (the official greedy
    soup's update); non-float tensors must agree and are kept."""
    same_layout(mean, new, "averaging weights")
    return {k: (v * (count / (count + 1.0)) + new[k] * (1.0 / (count + 1.0))) if v.is_floating_point() else v.clone()
            for k, v in mean.items()}


def block_of(key: str) -> int | None:
    """The residual block a tensor belongs to (None outside the blocks)."""
    found = BLOCK.search(key)
    return int(found.group(1)) if found else None
