"""Lipsum-FT (Nam et al., ICLR 2024; cs-giung/lipsum-ft @ 1331873, scripts/Lipsum-FT.py, JAX): fine-tuning with a
regulariser that keeps the image tower's energies against random texts close to the pretrained model's.

Each step draws M = 80 random texts, each [SOT, L = 8 tokens uniform over the ids below SOT, EOT] (official:
`randint(0, 49406)`, new texts every step, the same on every device), and encodes them with the frozen pretrained
text tower (projected, L2-normalised). With s = exp(logit_scale) of the pretrained model, f the fine-tuned and f0
the pretrained image tower's normalised embeddings of the same (augmented) training batch:

    loss = CE(head(f(x)), y) + lam * mean_x [ sum_m (s <f(x), t_m> - s <f0(x), t_m>)^2 / (2M) ]

lam = 1 (official default). The pretrained image tower, the text tower and s get no gradient; the image tower
and the head train. The head is the official one (Lipsum-FT.py 121-132, 186-187; setup.py 91-93): a matrix W of
unit-length class prototypes (the zero-shot head's rows, normalised), logits = s <f, w_k>, no bias, W trained as
it is. (FT's head holds s * W and a bias; under AdamW, whose steps do not scale with the parameter, the official
head moves ~s = 100 times faster relative to its size on OpenAI CLIP.) For evaluation and weight ensembling the
trained model becomes a plain classifier with weight s * W and zero bias: the same logits.

Deviations: the optimiser, schedule, budget, clipping and weight decay are the protocol's, as for FT (official:
AdamW lr 1e-5, wd 0, 10 % warm-up then cosine, no clipping, bf16 moments); open_clip's text tower pads the
sequence to its context length after EOT, which the causal mask keeps from changing the EOT embedding the
official (unpadded) sequence gives; the random tokens come from torch's generator seeded by (run seed, step), so
a resumed run draws the same texts.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.config import AT_LEAST_ONE, NON_NEGATIVE, HParam, seed_hash
from bench.errors import BenchError
from bench.methods import register_method
from bench.methods.base import Method
from bench.models.classifier import ImageClassifier, linear_head


def random_texts(count: int, length: int, sot: int, eot: int, context: int, seed: int) -> torch.Tensor:
    """`count` token sequences [SOT, `length` ids drawn uniformly from [0, min(SOT, EOT)), EOT, 0 ...]."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.zeros(count, context, dtype=torch.long)
    tokens[:, 0] = sot
    tokens[:, 1 : length + 1] = torch.randint(0, min(sot, eot), (count, length), generator=generator)
    tokens[:, length + 1] = eot
    return tokens


def energy_gap(features: torch.Tensor, prior: torch.Tensor, texts: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """mean over images of sum over texts of (s <f, t> - s <f0, t>)^2 / (2M): the official regulariser."""
    source = scale * features.float() @ texts.float().T
    target = scale * prior.float() @ texts.float().T
    return ((source - target).pow(2).sum(dim=-1) / (2 * texts.shape[0])).mean()


class PrototypeHead(nn.Module):
    """logits = scale * features @ W.T with W (classes x dim) initialised to unit-length prototypes; no bias; the
    scale is the pretrained exp(logit_scale), fixed."""

    def __init__(self, scaled_weight: torch.Tensor, scale: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(F.normalize(scaled_weight.float(), dim=-1).clone())
        self.register_buffer("scale", scale.detach().float().reshape(()).clone())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.scale * features @ self.weight.T


@register_method("lipsum")
class LipsumFT(Method):
    description = "Lipsum-FT: cross-entropy + keep image-text energies on random texts near the pretrained model's"
    hparams = {
        **Method.hparams,
        "lam": HParam(1.0, "weight of the random-text energy regulariser", ("log", 1e-2, 1e1), NON_NEGATIVE),
        "texts": HParam(80, "random texts per step (M)", None, AT_LEAST_ONE),
        "text_length": HParam(8, "random tokens per text (L)", None, AT_LEAST_ONE),
    }

    def __init__(self, hp, ctx):
        super().__init__(hp, ctx)  # checked here, before the run takes its lock or writes anything
        context = int(ctx.clip.context_length)
        if int(hp["text_length"]) + 2 > context:
            raise BenchError(f"--set text_length={hp['text_length']} does not fit the model's context of {context} "
                             f"tokens with SOT and EOT; use at most {context - 2}")

    def build(self):
        model = super().build()
        model.head = PrototypeHead(model.head.weight.detach(), self.ctx.clip.logit_scale.detach().exp())
        # the method's own copy of the pretrained CLIP (image tower, text tower, scale), frozen, on the run's device
        clip = self.ctx.clip.float().to(self.ctx.device)
        clip.eval().requires_grad_(False)
        self._clip = clip
        self._scale = clip.logit_scale.detach().exp()
        tokenizer = self.ctx.tokenizer
        self._sot, self._eot = int(tokenizer.sot_token_id), int(tokenizer.eot_token_id)
        self._context = int(clip.context_length)
        return model

    def evaluation_model(self, model):
        if not isinstance(model.head, PrototypeHead):
            return model
        head = linear_head(model.head.scale * model.head.weight.detach()).to(model.head.weight.device)
        return ImageClassifier(model.visual, head)  # a new model (the tower shared): `model` stays as it is

    def text_features(self) -> torch.Tensor:
        tokens = random_texts(int(self.hp["texts"]), int(self.hp["text_length"]), self._sot, self._eot, self._context,
                              seed_hash("lipsum-texts", self.ctx.seed, self.step))
        with torch.no_grad():
            return F.normalize(self._clip.encode_text(tokens.to(self._scale.device)).float(), dim=-1)

    def loss(self, model, images, labels):
        features = model.features(images)
        with torch.no_grad():
            prior = F.normalize(self._clip.visual(images), dim=-1)
        gap = energy_gap(features, prior, self.text_features(), self._scale)
        return F.cross_entropy(model.head(features), labels) + self.hp["lam"] * gap
