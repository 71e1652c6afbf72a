"""TPGM, trainable projected gradient method (Tian et al., CVPR 2023; PotatoTian/TPGM @ 8d18db0,
ImageNet_ViT_Exp/utils/tpgm.py), as its README applies it to CLIP ViTs: fine-tune without TPGM, then learn one
projection radius per tensor between the pretrained and the fine-tuned model on a validation split, and apply the
projection once.

For every parameter (exclude list empty, as the ViT run: tower, embeddings, layer norms, biases and head):
    d = theta_ft - theta_0,  ratio = min(1, gamma / (||d|| + 1e-8)),  theta = theta_0 + ratio * d
theta_0 is the zero-shot classifier (pretrained tower + zero-shot head: the official anchor). gamma is a raw
scalar per tensor, set to ||d|| / 2 at the start (`norms.min() / 2`) and clamped to [1e-8, ||d||] before each use
(so the starting ratio is 0.5). The gammas are learned with Adam (lr 1e-2) for 200 iterations of cross-entropy on
shuffled batches of 64 validation images, the model in eval mode, gradients reaching gamma only through the
ratio; then the projection is written into the model. `norm=l2` (the ViT default) uses the Frobenius norm of
the whole tensor; `norm=mars` (the DomainNet ResNet runs) the absolute sum of each output row (a per-row ratio,
one gamma per tensor; a 1-D tensor is one row).

Which split: the official ViT code learns the radii on `imagenet_val`, the split it also reports as ImageNet
accuracy. Under our protocol TPGM learns them on ID val (the selection split), never on a test split. The
learned gamma and the ratio of each tensor are recorded.
How it differs from FTP (same authors, 2024): FTP projects during training, every step, and sets each radius
from the training gradients' agreement with the previous update, without validation data; TPGM here learns
the radii after training on held-out ID data by their effect on the loss, and projects once.
Ingredient: the `ft` run with this run's seed and default hyperparameters.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call

from bench.config import POSITIVE, AT_LEAST_ONE, HParam
from bench.errors import BenchError
from bench.engine import distributed
from bench.engine.batches import train_batches
from bench.methods import register_method
from bench.methods.posthoc import FromFinishedRuns, load_finetuned

NORMS = ("l2", "mars")


def distance(d: torch.Tensor, norm: str) -> torch.Tensor:
    if norm == "l2":
        return d.norm()
    return d.abs().sum(dim=tuple(range(1, d.dim())), keepdim=True) if d.dim() > 1 else d.abs().sum()


class Projection(torch.nn.Module):
    """One learnable radius per tensor between theta_0 and theta_ft (TPGM's `tpgm.py`)."""

    def __init__(self, theta0: dict[str, torch.Tensor], theta_ft: dict[str, torch.Tensor], norm: str):
        super().__init__()
        self.names = list(theta0)
        self.theta0 = {k: v.detach() for k, v in theta0.items()}
        self.delta = {k: (theta_ft[k] - theta0[k]).detach() for k in self.names}
        self.norms = {k: distance(self.delta[k], norm) for k in self.names}
        self.gamma = torch.nn.ParameterList([torch.nn.Parameter(self.norms[k].min().reshape(1) / 2) for k in self.names])

    def clamp_(self) -> None:
        with torch.no_grad():
            for k, g in zip(self.names, self.gamma):
                g.copy_(torch.clamp(g, 1e-8, self.norms[k].max()))

    def ratios(self) -> dict[str, torch.Tensor]:
        return {k: torch.clamp(g / (self.norms[k] + 1e-8), 0.0, 1.0) for k, g in zip(self.names, self.gamma)}

    def forward(self) -> dict[str, torch.Tensor]:
        self.clamp_()
        ratios = self.ratios()
        return {k: self.theta0[k] + ratios[k] * self.delta[k] for k in self.names}


def learn_projection(model, projection: Projection, batches, iters: int, lr: float, autocast=None) -> list[float]:
    """Adam on the radii for `iters` batches of (images, labels); returns the loss per iteration."""
    optimizer = torch.optim.Adam(projection.parameters(), lr=lr)
    model.eval()
    losses = []
    for _ in range(iters):
        images, labels = next(batches)
        params = projection()
        device = images.device
        with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
            logits = functional_call(model, params, (images,))
        loss = F.cross_entropy(logits.float(), labels.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    return [float(x) for x in losses]


@register_method("tpgm")
class TPGM(FromFinishedRuns):
    description = "TPGM: per-tensor projection radii between pretrained and ft weights learned on ID val (post hoc)"
    hparams = {
        "proj_lr": HParam(1e-2, "Adam learning rate of the radii", ("log", 1e-3, 1e-1), POSITIVE),
        "iters": HParam(200, "Adam iterations on ID-val batches", None, AT_LEAST_ONE),
        "proj_batch": HParam(64, "ID-val images per iteration", None, AT_LEAST_ONE),
        "norm": HParam("l2", "distance of each tensor: l2 (ViT runs) or mars (per-row absolute sum)"),
    }

    @classmethod
    def planned_work(cls, hp, protocol, sizes):  # the radii's Adam iterations: forward + backward on ID-val batches
        return {**super().planned_work(hp, protocol, sizes),
                "search_steps": hp["iters"] * hp["proj_batch"] / protocol.batch_size}
    info_key = "tpgm"

    @classmethod
    def check_hparams(cls, hp):
        if hp["norm"] not in NORMS:
            raise BenchError(f"--set norm={hp['norm']!r} is not a TPGM norm; use one of: {', '.join(NORMS)}")

    def build(self):
        ctx, hp = self.ctx, self.hp
        model = ctx.zero_shot_classifier()
        theta0 = {k: v.detach().clone() for k, v in model.named_parameters()}
        finetuned = dict(load_finetuned(ctx, ctx.inputs[0]["run_id"]).named_parameters())
        projection = Projection(theta0, finetuned, hp["norm"])
        val = ctx.split("id_val")
        size = min(int(hp["proj_batch"]), len(val))
        with distributed.local():  # every rank learns the same radii on the same batches
            batches = train_batches(val, size, ctx.seed, 0, ctx.device, ctx.num_workers)
            losses = learn_projection(model, projection, batches, int(hp["iters"]), hp["proj_lr"], ctx.autocast_dtype)
        with torch.no_grad():
            model.load_state_dict({**model.state_dict(), **projection()})
            ratios = projection.ratios()
        self._info = {"input": ctx.inputs[0]["run_id"], "loss_first": losses[0], "loss_last": losses[-1],
                      "gamma": {k: float(g.detach()) for k, g in zip(projection.names, projection.gamma)},
                      "ratio": {k: float(r.mean()) for k, r in ratios.items()},
                      "distance": {k: float(n.sum()) for k, n in projection.norms.items()}}
        return model

    @classmethod
    def selected(cls, method_info: dict) -> str | None:
        tpgm = method_info.get("tpgm")
        if not tpgm:
            return None
        ratios = list(tpgm["ratio"].values())
        return f"mean ratio {sum(ratios) / len(ratios):.3f} over {len(ratios)} tensors (min {min(ratios):.3f})"
