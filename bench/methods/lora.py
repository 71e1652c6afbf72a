"""LoRA (Hu et al., ICLR 2022) on CLIP's image tower, as compared in the feature-protection study (Tan et al. 2024,
arXiv 2405.16027: LoRA cannot match full fine-tuning in-domain).

Each adapted weight W (out x in) stays frozen and gains a low-rank update: y = W x + b + (alpha / r) B A dropout(x),
A (r x in) ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming-uniform with a = sqrt(5), as in the reference implementation and
peft), B (out x r) = 0, so training starts exactly at the zero-shot classifier. Targets (`targets`): the attention's
query, key and value projections (`q`, `k`, `v`, each its own A, B, as the LoRA paper treats W_q, W_k, W_v), its
output projection (`out`) and the MLP's two layers (`fc`, `proj`) in every residual block. Everything else in the
tower (embeddings, LayerNorms, the final projection) is frozen; the head is trained. AdamW with the protocol's
weight decay on the trainable tensors.

Why an in-repo adapter rather than peft: open_clip's blocks use `nn.MultiheadAttention`, whose q/k/v projection is
one fused `in_proj_weight` that PyTorch uses without calling a submodule. peft (>= 0.15) wraps the whole MHA: one
adapter over the fused (3d x d) matrix (q, k and v cannot be chosen apart, and `out_proj` only together with it),
merged into the weight before every forward and unmerged after, without LoRA dropout; and peft brings transformers
and accelerate as hard dependencies. Here the attention is computed from the frozen fused projection plus the
adapters on the activation path (scaled_dot_product_attention), so the frozen weights need no weight gradients:
the backward does less work than full fine-tuning's.

Evaluation and "+WE": `evaluation_model` merges every adapter into its weight (W + (alpha / r) B A) and returns a
plain classifier with the zero-shot model's structure, so theta_0 (B = 0: exactly the pretrained weights) and the
fine-tuned theta_1 are ordinary weights and weight ensembling interpolates the merged weights.

Defaults (ours; the study's settings could not be retrieved): r = 8, alpha = 16, dropout 0 (peft's default; with
dropout, q, k and v share one mask on their common input as loralib's fused layer does), all six targets,
learning rate 10x the protocol's full-FT rate (adapters start at zero and need larger steps).
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from bench.config import POSITIVE, HParam, Range, seed_hash
from bench.errors import BenchError
from bench.methods import register_method
from bench.methods.base import ALPHA_GRID, Method

TARGETS = ("q", "k", "v", "out", "fc", "proj")


class LowRank(nn.Module):
    """The adapter's update: (alpha / r) B A dropout(x)."""

    def __init__(self, d_in: int, d_out: int, rank: int, alpha: float, dropout: float, generator: torch.Generator):
        super().__init__()
        bound = 1.0 / math.sqrt(d_in)
        self.A = nn.Parameter((torch.rand(rank, d_in, generator=generator) * 2 - 1) * bound)
        self.B = nn.Parameter(torch.zeros(d_out, rank))
        self.scale = alpha / rank
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.update(self.dropout(x))

    def update(self, x: torch.Tensor) -> torch.Tensor:
        """(alpha / r) B A x on an input already dropped out (q, k and v share one mask, as loralib's fused layer)."""
        return F.linear(F.linear(x, self.A), self.B) * self.scale

    def delta(self) -> torch.Tensor:
        return (self.B @ self.A) * self.scale


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, adapter: LowRank):
        super().__init__()
        self.base, self.adapter = base, adapter

    def forward(self, x):
        return self.base(x) + self.adapter(x)

    def merged(self) -> nn.Linear:
        out = copy.deepcopy(self.base)
        with torch.no_grad():
            out.weight += self.adapter.delta().to(out.weight.dtype)
        return out


class LoRAAttention(nn.Module):
    """Self-attention of an `nn.MultiheadAttention` (fused in_proj) with adapters on q, k, v and the output."""

    def __init__(self, base: nn.MultiheadAttention, adapters: dict[str, LowRank], out: LowRank | None):
        super().__init__()
        if not base._qkv_same_embed_dim or base.bias_k is not None or base.add_zero_attn:
            raise BenchError("LoRA supports self-attention with one fused q/k/v projection only")
        self.base = base
        self.adapters = nn.ModuleDict(adapters)
        self.out_proj = LoRALinear(base.out_proj, out) if out is not None else base.out_proj
        self.batch_first = base.batch_first

    def forward(self, query, key=None, value=None, need_weights=False, attn_mask=None, key_padding_mask=None, **_):
        if (key is not None and key is not query) or (value is not None and value is not query) or need_weights \
                or key_padding_mask is not None:
            raise BenchError("LoRA attention computes self-attention only (no attention weights or padding masks)")
        x = query if self.batch_first else query.transpose(0, 1)  # (N, L, E)
        n, length, dim = x.shape
        heads = self.base.num_heads
        qkv = F.linear(x, self.base.in_proj_weight, self.base.in_proj_bias)
        if self.adapters:  # all q/k/v adapters in two matmuls: stacked A's, block-diagonal B's (zeros elsewhere)
            parts = [self.adapters[name] if name in self.adapters else None for name in "qkv"]
            first = next(a for a in parts if a is not None)
            a_all = torch.cat([a.A for a in parts if a is not None])
            b_all = torch.block_diag(*[a.B * a.scale if a is not None else first.B.new_zeros(dim, 0) for a in parts])
            qkv = qkv + F.linear(F.linear(first.dropout(x), a_all), b_all)
        qkv = qkv.chunk(3, dim=-1)
        q, k, v = (t.reshape(n, length, heads, dim // heads).transpose(1, 2) for t in qkv)
        if attn_mask is not None and attn_mask.dtype != torch.bool:
            attn_mask = attn_mask.to(q.dtype)
        dropout = self.base.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout)
        out = self.out_proj(out.transpose(1, 2).reshape(n, length, dim))
        return (out if self.batch_first else out.transpose(0, 1)), None

    def merged(self) -> nn.MultiheadAttention:
        out = copy.deepcopy(self.base)
        dim = out.embed_dim
        with torch.no_grad():
            for i, name in enumerate("qkv"):
                if name in self.adapters:
                    out.in_proj_weight[i * dim : (i + 1) * dim] += self.adapters[name].delta().to(out.in_proj_weight.dtype)
            if isinstance(self.out_proj, LoRALinear):
                out.out_proj = self.out_proj.merged()
        return out


def add_adapters(tower: nn.Module, targets, rank: int, alpha: float, dropout: float, seed: int) -> int:
    """Freeze `tower` and put adapters on its attention and MLP layers; returns how many weights were adapted."""
    tower.requires_grad_(False)
    device = next(tower.parameters()).device
    gen = torch.Generator().manual_seed(seed_hash("lora", seed))  # on the CPU: the same draws on every device
    adapted = 0
    for _, block in list(tower.named_modules()):
        attn, mlp = getattr(block, "attn", None), getattr(block, "mlp", None)
        if isinstance(attn, nn.MultiheadAttention):
            d = attn.embed_dim
            qkv = {t: LowRank(d, d, rank, alpha, dropout, gen) for t in "qkv" if t in targets}
            out = LowRank(d, d, rank, alpha, dropout, gen) if "out" in targets else None
            if qkv or out is not None:
                block.attn = LoRAAttention(attn, qkv, out)
                adapted += len(qkv) + (out is not None)
        for target, name in (("fc", "c_fc"), ("proj", "c_proj")):
            layer = getattr(mlp, name, None)
            if target in targets and isinstance(layer, nn.Linear):
                setattr(mlp, name, LoRALinear(layer, LowRank(layer.in_features, layer.out_features, rank, alpha,
                                                             dropout, gen)))
                adapted += 1
    tower.to(device)  # the new adapters join the tower's device
    return adapted


def merge_adapters(model: nn.Module) -> nn.Module:
    """A copy of `model` with every adapter merged into its weight: the plain structure the adapters wrapped."""
    model = copy.deepcopy(model)
    for _, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, (LoRAAttention, LoRALinear)):
                setattr(parent, name, child.merged())
    return model


@register_method("lora")
class LoRA(Method):
    description = "LoRA: frozen image tower + low-rank adapters on attention (q, k, v, out) and MLP; head trained"
    ensemble_alphas = ALPHA_GRID  # "+WE" on the merged weights
    hparams = {
        "lr": HParam(lambda p: 10 * p.lr, "AdamW learning rate of the adapters and head", ("log", 1e-5, 1e-1), POSITIVE),
        "weight_decay": Method.hparams["weight_decay"],
        "rank": HParam(8, "rank r of each adapter", ("choice", [4, 8, 16, 32]), Range(1, 1024)),
        "alpha": HParam(16.0, "adapter scale numerator: updates are multiplied by alpha / r", None, POSITIVE),
        "dropout": HParam(0.0, "dropout on the adapters' input", ("uniform", 0.0, 0.3), Range(0.0, 1.0, high_open=True)),
        "targets": HParam(TARGETS, f"adapted weights in each block, any of: {', '.join(TARGETS)}"),
    }

    @classmethod
    def check_hparams(cls, hp):
        unknown = [t for t in hp["targets"] if t not in TARGETS]
        if unknown or not hp["targets"]:
            raise BenchError(f"--set targets={list(hp['targets'])} must name some of: {', '.join(TARGETS)} "
                             f"(e.g. --set targets='[\"q\",\"v\"]')")

    def build(self):
        model = super().build()
        adapted = add_adapters(model.visual, set(self.hp["targets"]), self.hp["rank"], self.hp["alpha"],
                               self.hp["dropout"], self.ctx.seed)
        if not adapted:
            raise BenchError("LoRA found no attention or MLP layers to adapt in this image tower "
                             "(it supports open_clip ViTs: nn.MultiheadAttention and mlp.c_fc / mlp.c_proj)")
        self._counts = {"adapted_weights": adapted,
                        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
                        "total_params": sum(p.numel() for p in model.parameters())}
        return model

    def evaluation_model(self, model):
        return merge_adapters(model)

    def info(self):
        return dict(self._counts)

    @classmethod
    def selected(cls, method_info):
        if "trainable_params" in method_info:
            return f"{method_info['trainable_params']:,} of {method_info['total_params']:,} parameters trained"
        return None
