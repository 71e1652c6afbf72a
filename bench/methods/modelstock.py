"""Model Stock (Jang et al., ECCV 2024; naver-ai/model-stock): merge two fine-tunes and the pretrained model with a
per-layer ratio from the angle between their updates.

For every tensor (state-dict key) with updates d1 = w1 - w0 and d2 = w2 - w0 (flattened):
    cos = <d1, d2> / (||d1|| ||d2|| + eps), clamped to [-1, 1], eps = 1e-8
    t   = k cos / ((k - 1) cos + 1 + eps), k = 2
    w   = t (w1 + w2) / 2 + (1 - t) w0
w0 is the zero-shot classifier (pretrained tower + zero-shot head); the head is merged like every tensor.
The per-tensor ratios are recorded.

Sources: the official repository held only its README ("code under internal review") in the snapshot we could
read; the formula and the per-key granularity come from the notebook as copied (and attributed) by fusion_bench
(fusion_bench/method/model_stock/model_stock.py @ 20dcc3b) — its `ignore_keys` are the text tower's leftovers,
which our image classifier does not have. The official code takes the angle through degrees (rad2deg/acos, then
deg2rad/cos); we use the clamped cosine directly, the same value up to rounding. A tensor neither fine-tune
moved (cos = 0/eps = 0) gets t = 0, the pretrained value, as there.

Ingredients: two `ft` runs with default hyperparameters and different seeds (the paper: fine-tuned "with
different random seeds"). Model Stock's run with seed s merges the ft runs of seeds 2s and 2s + 1, so its
seeds are independent replicates (seed 0 → ft seeds 0, 1; seed 1 → 2, 3; seed 2 → 4, 5).
"""
from __future__ import annotations

import torch

from bench.errors import BenchError
from bench.methods import register_method
from bench.methods.posthoc import FromFinishedRuns, load_finetuned, same_layout, runs_of_seed
from bench.weights import clone_state

EPS = 1e-8


def stock_ratio(d1: torch.Tensor, d2: torch.Tensor, k: int = 2) -> torch.Tensor:
    cos = (d1 * d2).sum() / ((d1.pow(2).sum() * d2.pow(2).sum()).sqrt() + EPS)
    cos = cos.clamp(-1.0, 1.0)
    return k * cos / ((k - 1) * cos + 1 + EPS)


def model_stock(w0: dict, w1: dict, w2: dict) -> tuple[dict, dict[str, float]]:
    """The merged state and the ratio t of every float tensor."""
    same_layout(w0, w1, "Model Stock")
    same_layout(w0, w2, "Model Stock")
    merged, ratios = {}, {}
    for key, base in w0.items():
        if not base.is_floating_point():
            merged[key] = base.clone()
            continue
        a, b = w1[key].to(base.dtype), w2[key].to(base.dtype)
        t = stock_ratio((a - base).double().flatten(), (b - base).double().flatten()).to(base.dtype)
        merged[key] = t * (a + b) / 2 + (1 - t) * base
        ratios[key] = float(t)
    return merged, ratios


@register_method("modelstock")
class ModelStock(FromFinishedRuns):
    example_inputs = ((0, 0), (1, 0))  # two fine-tuned runs of different seeds
    description = "Model Stock: two ft runs (seeds 2s, 2s+1) merged toward the pretrained weights, per-tensor ratio"
    info_key = "model_stock"

    @classmethod
    def planned_work(cls, hp, protocol, sizes):  # seeds 0, 1, 2 consume ft seeds 0-5: three beyond ft's row
        return {**super().planned_work(hp, protocol, sizes), "extra_runs": {"ft seeds 3-5": ("ft", 1)}}

    @classmethod
    def pick_inputs(cls, runs, config):
        seed = config["seed"]
        pair = [runs_of_seed(runs, s, hparams_seed=0) for s in (2 * seed, 2 * seed + 1)]
        if not all(len(p) == 1 for p in pair):
            raise BenchError(f"modelstock with seed {seed} merges the ft runs of seeds {2 * seed} and {2 * seed + 1} "
                             f"(default hyperparameters, one each); found {len(pair[0])} and {len(pair[1])}: run "
                             f"`bench sweep --method ft --seed {2 * seed} {2 * seed + 1}` first")
        return [pair[0][0], pair[1][0]]

    def build(self):
        model = self.ctx.zero_shot_classifier()
        w0 = clone_state(model)
        w1, w2 = (clone_state(load_finetuned(self.ctx, r["run_id"])) for r in self.ctx.inputs)
        merged, ratios = model_stock(w0, w1, w2)
        model.load_state_dict(merged)
        self._info = {"inputs": [r["run_id"] for r in self.ctx.inputs], "ratios": ratios,
                      "mean_ratio": sum(ratios.values()) / len(ratios)}
        return model

    @classmethod
    def selected(cls, method_info: dict) -> str | None:
        stock = method_info.get("model_stock")
        return f"mean ratio t = {stock['mean_ratio']:.3f} over {len(stock['ratios'])} tensors" if stock else None
