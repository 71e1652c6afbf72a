"""The image classifier every method fine-tunes: CLIP's image tower, L2-normalised features, a linear head."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ImageClassifier(nn.Module):
    """logits = head(normalize(visual(x))); with a zero-shot head that is 100 * cos(image, class prototype).
    `normalize=False`: the head reads the tower's raw embedding (Kumar et al.'s linear probe and LP-FT)."""

    def __init__(self, visual: nn.Module, head: nn.Module, normalize: bool = True):
        super().__init__()
        self.visual = visual
        self.head = head
        self.normalize = normalize

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.from_tower(self.visual(images))

    def from_tower(self, embedding: torch.Tensor) -> torch.Tensor:
        """What the head reads, given the image tower's raw output (cached frozen features are raw)."""
        return F.normalize(embedding, dim=-1) if self.normalize else embedding

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


def format_prompt(template: str, name: str) -> str:
    """Fill a prompt template: `{}` is the class name as given, `{spaced}` the name with '_' as spaces and
    `{article}` its indefinite article (WiSE-FT's `append_proper_article` spaces the name; its other templates do not)."""
    return template.format(name, article="an" if name[:1].lower() in "aeiou" else "a", spaced=name.replace("_", " "))


def zero_shot_weights(clip: nn.Module, tokenizer, classnames, templates, device) -> torch.Tensor:
    """(num_classes, embed_dim) class prototypes scaled by CLIP's temperature (WiSE-FT's template head)."""
    from bench.models import open_clip_module

    oc = open_clip_module()
    prompts = [lambda name, t=t: format_prompt(t, name) for t in templates]
    prototypes = oc.build_zero_shot_classifier(clip, tokenizer, list(classnames), prompts, device=device)
    with torch.no_grad():
        return (clip.logit_scale.exp() * prototypes.T).float().cpu()


def linear_head(weight: torch.Tensor, bias: torch.Tensor | None = None) -> nn.Linear:
    head = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(bias if bias is not None else torch.zeros(weight.shape[0]))
    return head
