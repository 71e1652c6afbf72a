"""The Method interface. The protocol's trainer owns data, budget, schedule, clipping, selection and evaluation;
a method decides only what is its own: the starting model, the trainable parameters and optimiser, the loss, and
which weight-space variants of the result to evaluate (e.g. WiSE-FT's alpha grid).

A new method is one subclass in one file, registered with `@register_method("name")`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.config import HParam
from bench.models.classifier import ImageClassifier

ALPHA_GRID = tuple(round(0.1 * i, 1) for i in range(11))


class Method:
    name: str = ""  # set by the registry
    description: str = ""
    hparams: dict[str, HParam] = {
        "lr": HParam(lambda p: p.lr, "AdamW learning rate", ("log", 1e-5, 1e-2)),
        "weight_decay": HParam(lambda p: p.weight_decay, "AdamW decoupled weight decay", ("uniform", 0.0, 0.3)),
    }
    requires: frozenset[str] = frozenset()  # extra data roles the protocol must grant, e.g. {"ood_val"}
    trains: bool = True  # False: no gradient fine-tuning stage (zero-shot, LP)
    frozen_image_tower: bool = False  # True: the pretrained image tower is used as is, so cached features serve
    ensemble_alphas: tuple[float, ...] = ()  # weight-ensemble variants between the initial and trained model
    reported_alpha: float | None = None  # which variant is the method's row; None: the fine-tuned model itself
    searches: bool = False  # runs a hyperparameter/objective search in `search()` (takes --storage, --search-only)
    clip_gradients: bool = True  # the protocol's gradient clipping; False only where the official method has none
    step: int = 0  # set by the trainer before each loss call (for per-step randomness that survives resume)

    def __init__(self, hp: dict, ctx):
        self.hp = hp
        self.ctx = ctx

    def search(self, folder) -> dict:
        """Optional search before training (AutoFT); may read only what `requires` grants. Returns facts to record."""
        return {}

    def train_seed(self) -> int:
        """Seed of the training data order; the run's seed unless the method searched one (AutoFT)."""
        return self.ctx.seed

    def build(self) -> ImageClassifier:
        """The model training starts from (and the theta0 of weight ensembling): the zero-shot classifier."""
        return self.ctx.zero_shot_classifier()

    def optimizer(self, model: ImageClassifier) -> torch.optim.Optimizer:
        params = [p for p in model.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.hp["lr"], weight_decay=self.hp["weight_decay"], **self.ctx.fused_kwargs())

    def loss(self, model: ImageClassifier, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(images), labels)

    def variants(self) -> dict[str, float | None]:
        """Evaluated variants: name -> interpolation alpha toward the trained model (None = trained model)."""
        out = {"final": None}
        out.update({f"alpha={a:g}": a for a in self.ensemble_alphas})
        return out

    def info(self) -> dict:
        """Method-specific facts for the record (chosen C, learned weights, ...)."""
        return {}

    def reported_variant(self) -> str:
        return "final" if self.reported_alpha is None else f"alpha={self.reported_alpha:g}"
