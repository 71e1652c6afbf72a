"""R-Adapter (Kim et al., "Efficient and Versatile Robust Fine-Tuning of Zero-shot Models", ECCV 2024,
arXiv 2408.05749; official code tjddus9597/R-Adapter-ECCV2024 @ 9680117: `clip/loralib/adapter_layers.py`
StochasticAdapter l.98-137, `clip/loralib/utils.py` set_Adapter l.60-80, Rep_AdaptWeight l.83-145, ema_update
l.163-174, the loss in `clip/loss.py` l.220-244).

Every residual block of both CLIP towers gets two adapters, on the attention's output (after out_proj) and on the
MLP's output (after c_proj), before the residual add: A(h) = h + s * DropPath(W h), W (d x d, full rank as the
official default, since d < r there) zero-initialised, s a learned scalar starting at 0.1. DropPath drops the
adapter's branch with probability p (0.2) per token position, one mask shared by the whole batch (the official
DropPath acts on dim 0 of CLIP's sequence-first tensors), kept ones scaled by 1/(1-p). Only the adapters train
(the towers and the temperature, 100, stay frozen); AdamW, no weight decay on s.

An exponential moving average of every adapter (W and s; m = 0.999 per step from the initial adapter) is what is
evaluated: in eval mode a block uses h + eval_scale * s_ema * W_ema h with eval_scale 0.5 (hard-coded officially),
and `evaluation_model` re-parameterises it into the frozen layer, W_o <- (I + 0.5 s_ema W_ema) W_o and
b_o <- (I + 0.5 s_ema W_ema) b_o, so the evaluated model is a plain CLIP. That 0.5 is WiSE-FT's closed form (the
point halfway to the adapted weights); "+WE" interpolates further between the pretrained and these merged
weights, as for LoRA. The head is rebuilt from the merged text tower with the dataset's templates.

Loss (MPM-NCE, the official `label_smoothing` branch): over the global batch, S = 100 cos(image, caption) with one
random template per image, P_ij = [y_i = y_j]; negatives get a margin, S~ = S + 100 m (1 - P) (m = 0.05); soft
targets q_ij = (1 - eps) P_ij / |P_i| + eps (1 - P_ij) / (B - |P_i|) (eps = 0.02); the loss is half the sum of
the soft cross-entropy of the rows of S~ (image -> text) and of its transpose (text -> image).

Official ImageNet settings: AdamW lr 5e-4, weight decay 0, cosine with 500 warm-up steps, clipping 1, 10 epochs
at batch 512; elsewhere (not given for our datasets) the default lr is 10x the protocol's full-FT rate, as LoRA's.
Deviation: the EMA momentum's default keeps the official averaging horizon relative to the run, 1 - 25 / steps
(0.999 at ImageNet's 25,020 steps), since the protocol's budgets are much shorter; DropPath masks are drawn from
(seed, step, adapter) so that a resumed or multi-process run draws the same ones.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from bench.config import FRACTION, NON_NEGATIVE, POSITIVE, HParam, Range, seed_hash
from bench.errors import BenchError
from bench.methods import register_method
from bench.methods.base import ALPHA_GRID, Method
from bench.methods.flyp import clip_classifier, global_logits, sample_captions

OFFICIAL_LR = {"imagenet": 5e-4}


class StochasticAdapter(nn.Module):
    """h + s * DropPath(W h) in training; h + eval_scale * s_ema * W_ema h in eval mode (the evaluated EMA)."""

    def __init__(self, dim: int, drop_path: float, eval_scale: float, token_dim: int, index: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(dim, dim))
        self.scale = nn.Parameter(torch.full((1,), 0.1))
        self.register_buffer("ema_weight", torch.zeros(dim, dim))
        self.register_buffer("ema_scale", torch.full((1,), 0.1))
        self.drop_path, self.eval_scale, self.token_dim, self.index = drop_path, eval_scale, token_dim, index
        self.draw: tuple[int, int] = (0, 0)  # (seed, step) of this step's DropPath mask, set by the method

    def keep_mask(self, x: torch.Tensor) -> torch.Tensor:
        """1/(1-p) or 0 per token position, shared over the batch (broadcastable to x)."""
        keep = 1.0 - self.drop_path
        gen = torch.Generator().manual_seed(seed_hash("r-adapter", *self.draw, self.index))
        shape = [1] * x.dim()
        shape[self.token_dim] = x.shape[self.token_dim]
        mask = (torch.rand(x.shape[self.token_dim], generator=gen) < keep).to(x.dtype) / keep
        return mask.view(shape).to(x.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x + F.linear(x, self.ema_weight.to(x.dtype)) * (self.ema_scale * self.eval_scale).to(x.dtype)
        z = F.linear(x, self.weight.to(x.dtype))
        if self.drop_path > 0:
            z = z * self.keep_mask(x)
        return x + z * self.scale.to(x.dtype)

    def merge_matrix(self) -> torch.Tensor:
        """I + eval_scale * s_ema * W_ema: the evaluated adapter as one linear map."""
        eye = torch.eye(self.ema_weight.shape[0], device=self.ema_weight.device)
        return eye + self.eval_scale * self.ema_scale * self.ema_weight


def adapter_blocks(clip: nn.Module) -> list[nn.Module]:
    """The residual blocks of both towers (attention + MLP with c_proj), in module order."""
    return [m for m in clip.modules() if isinstance(getattr(m, "attn", None), nn.MultiheadAttention)
            and hasattr(m, "ls_1") and isinstance(getattr(getattr(m, "mlp", None), "c_proj", None), nn.Linear)]


def add_adapters(clip: nn.Module, drop_path: float, eval_scale: float) -> list[StochasticAdapter]:
    """Freeze `clip` and put an adapter in place of each block's (identity) layer scales; returns the adapters."""
    clip.requires_grad_(False)
    device = next(clip.parameters()).device
    adapters = []
    for block in adapter_blocks(clip):
        if not (isinstance(block.ls_1, nn.Identity) and isinstance(block.ls_2, nn.Identity)):
            raise BenchError("R-Adapter supports CLIP blocks without layer scale (ls_1 / ls_2 identities)")
        token_dim = 1 if block.attn.batch_first else 0
        dim = block.attn.embed_dim
        block.ls_1 = StochasticAdapter(dim, drop_path, eval_scale, token_dim, len(adapters))
        block.ls_2 = StochasticAdapter(dim, drop_path, eval_scale, token_dim, len(adapters) + 1)
        adapters += [block.ls_1, block.ls_2]
    clip.to(device)
    return adapters


@torch.no_grad()
def merge_adapters(model: nn.Module) -> nn.Module:
    """A copy with every adapter folded into the layer before it (out_proj, c_proj): a plain CLIP."""
    model = copy.deepcopy(model)
    for block in adapter_blocks(model):
        for name, layer in (("ls_1", block.attn.out_proj), ("ls_2", block.mlp.c_proj)):
            adapter = getattr(block, name)
            if isinstance(adapter, StochasticAdapter):
                a = adapter.merge_matrix().to(layer.weight.dtype)
                layer.weight.copy_(a @ layer.weight)
                if layer.bias is not None:
                    layer.bias.copy_(a @ layer.bias)
                setattr(block, name, nn.Identity())
    return model


def mpm_nce(per_image: torch.Tensor, per_text: torch.Tensor, labels: torch.Tensor, all_labels: torch.Tensor,
            scale: torch.Tensor, margin: float, smoothing: float) -> torch.Tensor:
    """R-Adapter's multi-positive margin NCE on (local rows x global columns) logit matrices."""
    positive = (labels[:, None] == all_labels[None, :]).float()
    num_pos = positive.sum(1, keepdim=True)
    num_neg = (positive.shape[1] - num_pos).clamp_min(1.0)  # 0 negatives: their (zero) target mass is moot
    target = (1 - smoothing) * positive / num_pos + smoothing * (1 - positive) / num_neg
    offset = (1 - positive) * margin * scale
    total = 0.0
    for logits in (per_image, per_text):
        total = total + -(target * F.log_softmax(logits.float() + offset, dim=1)).sum(1).mean()
    return total / 2


@register_method("r-adapter")
class RAdapter(Method):
    description = "R-Adapter: EMA'd stochastic adapters in both towers, multi-positive margin NCE; merged for evaluation"
    ensemble_alphas = ALPHA_GRID  # "+WE" on the merged weights
    hparams = {
        "lr": HParam(lambda p: OFFICIAL_LR.get(p.dataset, 10 * p.lr), "AdamW learning rate of the adapters",
                     ("log", 1e-5, 1e-2), POSITIVE),
        "weight_decay": HParam(0.0, "AdamW weight decay of the adapter matrices (official 0; never on s)",
                               ("uniform", 0.0, 0.3), NON_NEGATIVE),
        "drop_path": HParam(0.2, "probability of dropping an adapter's branch per token position", None,
                            Range(0.0, 1.0, high_open=True)),
        "ema": HParam(lambda p: max(0.0, 1.0 - 25.0 / max(p.steps, 1)), "EMA momentum of the adapters per step "
                      "(official 0.999 over 25,020 steps)", None, FRACTION),
        "eval_scale": HParam(0.5, "share of the EMA adapter merged for evaluation (official 0.5)", None, FRACTION),
        "margin": HParam(0.05, "MPM-NCE margin on negatives (times the temperature)", None, NON_NEGATIVE),
        "smoothing": HParam(0.02, "MPM-NCE label smoothing onto negatives", None, Range(0.0, 1.0, high_open=True)),
    }

    def build(self):
        hp = self.hp
        model = clip_classifier(self.ctx)
        self._adapters = add_adapters(model.clip, hp["drop_path"], hp["eval_scale"])
        if not self._adapters:
            raise BenchError("R-Adapter found no residual attention blocks to adapt in this CLIP model")
        return model

    def optimizer(self, model):
        weights = [a.weight for a in self._adapters]
        scales = [a.scale for a in self._adapters]
        groups = [{"params": weights, "weight_decay": self.hp["weight_decay"]}, {"params": scales, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=self.hp["lr"], **self.ctx.fused_kwargs())

    def loss(self, model, images, labels):
        for adapter in self._adapters:
            adapter.draw = (self.ctx.seed, self.step)
        captions = sample_captions(model.class_tokens, labels, self.ctx.seed, self.step)
        image_features = model.image_features(images)
        text_features = F.normalize(model.clip.encode_text(captions), dim=-1)
        scale = model.clip.logit_scale.exp()
        per_image, per_text, _, all_labels = global_logits(image_features, text_features, scale, labels)
        return mpm_nce(per_image, per_text, labels, all_labels, scale, self.hp["margin"], self.hp["smoothing"])

    @torch.no_grad()
    def after_step(self, model):
        m = self.hp["ema"]
        for adapter in self._adapters:
            adapter.ema_weight.mul_(m).add_(adapter.weight.detach(), alpha=1 - m)
            adapter.ema_scale.mul_(m).add_(adapter.scale.detach(), alpha=1 - m)

    def evaluation_model(self, model):
        return merge_adapters(model)

    def info(self):
        return {"adapters": len(self._adapters),
                "trainable_params": sum(a.weight.numel() + a.scale.numel() for a in self._adapters),
                "mean_ema_scale": sum(float(a.ema_scale) for a in self._adapters) / len(self._adapters)}

    @classmethod
    def selected(cls, method_info):
        if "adapters" in method_info:
            return (f"{method_info['adapters']} adapters, {method_info['trainable_params']:,} parameters; "
                    f"mean EMA scale {method_info['mean_ema_scale']:.3f}")
        return None
