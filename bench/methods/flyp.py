"""FLYP, "Finetune Like You Pretrain" (Goyal et al., CVPR 2023; official code locuslab/FLYP).

Class labels become captions and both towers keep minimising CLIP's contrastive loss: each image is paired with
its class name in one random template (a fresh draw per image per step), logits = exp(logit_scale) I T^T over the
batch, loss = symmetric InfoNCE (open_clip's ClipLoss) with the diagonal as targets, so other images of the same
class count as negatives, as in the official training path. Image tower, text tower and temperature are trained
with AdamW (weight decay on all of them); like the official code there is no gradient clipping. For evaluation the
zero-shot head is rebuilt from the fine-tuned text tower with the dataset's templates. "+WE" interpolates both
towers (and the temperature) between the zero-shot and fine-tuned model.

Official settings per dataset: lr 1e-5 on ImageNet (README: --lr=1e-5, wd 0.1, batch 512, warm-up 500; the
protocol's FT lr there is 3e-5) and on WILDS (the protocol's own). Deviation: captions use the dataset's class names
as the heads do; for FMoW these have spaces, while 14 of FLYP's 16 FMoW templates officially keep WILDS' `_`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.config import POSITIVE, HParam, seed_hash
from bench.methods import register_method
from bench.methods.base import ALPHA_GRID, Method


OFFICIAL_LR = {"imagenet": 1e-5}


def class_prompt_tokens(tokenizer, classnames, templates) -> torch.Tensor:
    """(num_classes, num_templates, context) token ids of every class in every template."""
    from bench.models.classifier import format_prompt

    texts = [format_prompt(t, c) for c in classnames for t in templates]
    tokens = tokenizer(texts)
    return tokens.view(len(classnames), len(templates), -1)


def contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over the global batch of normalised pairs (open_clip's ClipLoss). Under torchrun each rank
    holds a slice of the batch: as open_clip's distributed training does, every rank gathers all ranks' features
    with their gradients (`gather_with_grad`) and scores its own pairs against all of them (`local_loss`), so the
    mean over ranks, which the gradient averaging takes, is the one-process loss over the global batch."""
    from bench.engine import distributed
    from bench.models import open_clip_module

    world = distributed.current()
    if world.size == 1:
        return open_clip_module().ClipLoss()(image_features, text_features, scale)
    loss = open_clip_module().ClipLoss(local_loss=True, gather_with_grad=True, rank=world.rank, world_size=world.size)
    return loss(image_features, text_features, scale)


def global_logits(image_features: torch.Tensor, text_features: torch.Tensor, scale: torch.Tensor,
                  labels: torch.Tensor | None = None):
    """(per_image, per_text, targets, all_labels) over the global batch: this rank's images scored against every
    rank's captions and its captions against every rank's images (open_clip's `local_loss` with
    `gather_with_grad`), the matching pair of row i at column targets[i]; all_labels: every rank's labels (None if
    not given). The mean of a row-wise loss over ranks, which gradient averaging takes, is then the one-process
    mean over the global batch."""
    from bench.engine import distributed

    world = distributed.current()
    all_image, all_text, all_labels, offset = image_features, text_features, labels, 0
    if world.size > 1:
        import torch.distributed as dist
        from torch.distributed import nn as differentiable

        all_image = torch.cat(differentiable.all_gather(image_features))
        all_text = torch.cat(differentiable.all_gather(text_features))
        offset = world.rank * len(image_features)
        if labels is not None:
            parts = [torch.empty_like(labels) for _ in range(world.size)]
            dist.all_gather(parts, labels)
            all_labels = torch.cat(parts)
    targets = torch.arange(len(image_features), device=image_features.device) + offset
    return scale * image_features @ all_text.T, scale * text_features @ all_image.T, targets, all_labels


class CLIPClassifier(nn.Module):
    """Both CLIP towers; logits = exp(logit_scale) cos(image, class prototype from the current text tower).

    The head is derived state: rebuilt lazily after the weights may have changed (training, load_state_dict)."""

    def __init__(self, clip: nn.Module, class_tokens: torch.Tensor):
        super().__init__()
        self.clip = clip
        self.register_buffer("class_tokens", class_tokens, persistent=False)
        self._head: torch.Tensor | None = None

    def train(self, mode: bool = True):
        if mode:
            self._head = None
        return super().train(mode)

    def load_state_dict(self, *args, **kwargs):
        self._head = None
        return super().load_state_dict(*args, **kwargs)

    @torch.no_grad()
    def text_head(self) -> torch.Tensor:
        num_classes, num_templates, context = self.class_tokens.shape
        emb = self.clip.encode_text(self.class_tokens.view(-1, context), normalize=True)
        emb = F.normalize(emb.view(num_classes, num_templates, -1).mean(1), dim=-1)
        return self.clip.logit_scale.exp() * emb

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.clip.encode_image(images), dim=-1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self._head is None or self.training:
            self._head = self.text_head()
        return self.image_features(images) @ self._head.T


def clip_classifier(ctx) -> CLIPClassifier:
    """A float copy of the run's pretrained CLIP with the dataset's class prompts (FLYP's, CaRot's, R-Adapter's start)."""
    import copy

    tokens = class_prompt_tokens(ctx.tokenizer, ctx.classnames, ctx.templates)
    return CLIPClassifier(copy.deepcopy(ctx.clip).float(), tokens).to(ctx.device)


def sample_captions(class_tokens: torch.Tensor, labels: torch.Tensor, seed: int, step: int) -> torch.Tensor:
    """One random template per image, drawn from (seed, step) so that a resumed run draws the same captions; under
    torchrun the draw is for the global batch and each rank takes its slice (the captions one process would use)."""
    from bench.engine import distributed

    world = distributed.current()
    gen = torch.Generator().manual_seed(seed_hash("captions", seed, step))
    choice = torch.randint(class_tokens.shape[1], (len(labels) * world.size,), generator=gen)
    choice = choice[world.rank * len(labels) : (world.rank + 1) * len(labels)].to(labels.device)
    return class_tokens[labels, choice]


@register_method("flyp")
class FLYP(Method):
    description = "FLYP: contrastive fine-tuning of both towers on class-prompt captions; head from the text tower"
    ensemble_alphas = ALPHA_GRID
    clip_gradients = False  # the official FLYP loop does not clip
    hparams = {
        # FLYP's README trains ImageNet at --lr=1e-5 (wd 0.1, batch 512, warm-up 500), below the protocol's FT lr
        # 3e-5; on WILDS its 1e-5 is the protocol's own.
        "lr": HParam(lambda p: OFFICIAL_LR.get(p.dataset, p.lr), "AdamW learning rate", ("log", 1e-5, 1e-2), POSITIVE),
        "weight_decay": Method.hparams["weight_decay"],
    }

    def build(self):
        return clip_classifier(self.ctx)

    def loss(self, model, images, labels):
        captions = sample_captions(model.class_tokens, labels, self.ctx.seed, self.step)
        image_features = model.image_features(images)
        text_features = F.normalize(model.clip.encode_text(captions), dim=-1)
        return contrastive_loss(image_features, text_features, model.clip.logit_scale.exp())
