"""The Method interface. The protocol's engine owns data, budget, schedule, clipping, selection and evaluation;
a method decides only what is its own: the starting model, the trainable parameters and optimiser, the loss, an
optional search before training, and which weight-space variants of the result are evaluated (fixed before any
test split is opened). It sees the run through a read-only `MethodView` (`self.ctx`), never the dataset.

A new method is one subclass in one file, registered with `@register_method("name")`; everything specific to it
(its command-line flags, its search, how the leaderboard describes what it selected) is a hook here.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.config import NON_NEGATIVE, POSITIVE, HParam, Option
from bench.models.classifier import ImageClassifier

ALPHA_GRID = tuple(round(0.1 * i, 1) for i in range(11))


class Method:
    name: str = ""  # set by the registry
    description: str = ""
    hparams: dict[str, HParam] = {
        "lr": HParam(lambda p: p.lr, "AdamW learning rate", ("log", 1e-5, 1e-2), POSITIVE),
        "weight_decay": HParam(lambda p: p.weight_decay, "AdamW decoupled weight decay", ("uniform", 0.0, 0.3),
                               NON_NEGATIVE),
    }
    requires: frozenset[str] = frozenset()  # extra data roles the protocol must grant, e.g. {"ood_val"}
    trains: bool = True  # False: no gradient fine-tuning stage (zero-shot, LP)
    frozen_image_tower: bool = False  # True: the pretrained image tower is used as is, so cached features serve
    ensemble_alphas: tuple[float, ...] = ()  # weight-ensemble variants between the initial and trained model
    reported_alpha: float | None = None  # which variant is the method's row; None: the fine-tuned model itself
    clip_gradients: bool = True  # the protocol's gradient clipping; False only where the official method has none
    options: tuple[Option, ...] = ()  # extra `bench run` flags (see bench.config.Option)
    consumes: tuple[str, ...] = ()  # methods whose finished runs this one starts from (soups, post-hoc methods)
    # (seed, hparams_seed) of the consumed runs a smallest run of it needs: what the conformance tests make first
    example_inputs: tuple[tuple[int, int], ...] = ((0, 0),)
    step_cost_as: str | None = None  # `bench estimate` prices a step at this benchmark label's (None: the name)
    leaderboard_reference: bool = False  # the row others are measured against (paired interval, timing ratios)
    trend_baseline: bool = False  # its runs fit the effective-robustness baseline trend (Taori et al.)
    step: int = 0  # set by the trainer before each loss call (for per-step randomness that survives resume)
    batch_indices: torch.Tensor | None = None  # set with `step`: the batch's positions in the training split (CPU)

    def __init__(self, hp: dict, ctx):
        self.hp = hp
        self.ctx = ctx  # a bench.engine.view.MethodView

    # -- before training -------------------------------------------------------------------------------------
    @classmethod
    def has_search(cls) -> bool:
        return cls.search is not Method.search

    @classmethod
    def check_hparams(cls, hp: dict) -> None:
        """Checks across hyperparameters (each one's own range is its HParam's `valid`); raise BenchError."""

    @classmethod
    def check_options(cls, options: dict) -> None:
        """Validate the run options (flags without `setting`) before anything is written; raise BenchError."""

    @classmethod
    def pick_inputs(cls, runs: list[dict], config: dict) -> list[dict]:
        """Which of the finished runs of `consumes` (same dataset, protocol, model and budget; sorted by seed,
        hparams_seed, run id; fields: run_id, method, seed, hparams_seed, hparams, selection) this run starts from, given its
        planned `config` (seed, hparams). Raise BenchError when the store lacks what the method needs."""
        return runs

    def search(self, workdir, run_id: str) -> dict:
        """Optional search before training (AutoFT). `workdir` is a folder of the run for the search's own files;
        `run_id` names the run (its configuration hash). May read only what `requires` grants. Returns facts for
        the record (`method_info`)."""
        return {}

    def search_stand_in(self) -> None:
        """Leave the state a finished search would, without searching (step-cost benchmarks time the objective)."""

    def train_seed(self) -> int:
        """Seed of the training data order; the run's seed unless the method searched one (AutoFT)."""
        return self.ctx.seed

    def build(self) -> ImageClassifier:
        """The model training starts from (and the theta0 of weight ensembling): the zero-shot classifier."""
        return self.ctx.zero_shot_classifier()

    @classmethod
    def planned_work(cls, hp: dict, protocol, sizes: dict[str, int]) -> dict:
        """`bench estimate`: what one run does beyond the engine's share (its training steps, ID-val checks and
        final evaluation), in priced units: search steps (at this method's step cost), images through a forward
        pass, and other methods' runs it needs beyond their own leaderboard rows ({which: (method, runs per seed)},
        runs named alike are charged once). `sizes`: split sizes."""
        return {"search_steps": 0, "forward_images": 0, "extra_runs": {}}

    @classmethod
    def official_steps(cls, protocol, templates: tuple[str, ...]) -> int:
        """Fine-tuning steps of the official code, used only under the protocol setting budget_rule=official."""
        return protocol.steps

    # -- training ----------------------------------------------------------------------------------------------
    def optimizer(self, model: ImageClassifier) -> torch.optim.Optimizer:
        params = [p for p in model.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.hp["lr"], weight_decay=self.hp["weight_decay"], **self.ctx.fused_kwargs())

    def loss(self, model: ImageClassifier, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(images), labels)

    def after_step(self, model: ImageClassifier) -> None:
        """Called by the trainer after every optimiser step (e.g. to update an exponential moving average of the
        weights); whatever it keeps must be in `train_state` to survive an interrupted run's resume."""

    def train_state(self) -> dict:
        """The method's own training state (tensors, numbers) for the checkpoint; restored by `load_train_state`."""
        return {}

    def load_train_state(self, state: dict) -> None:
        """Restore what `train_state` returned when an interrupted run resumes (an empty dict: nothing saved)."""

    def evaluation_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model whose weights are evaluated and weight-ensembled: `model` itself, or a new, equivalent plain
        model (LoRA merges its adapters, so theta_0 and theta_1 are ordinary weights and "+WE" is linear in them).
        Called on the starting model before training and on the selected one after; must not change `model`."""
        return model

    def score(self, model: torch.nn.Module, role: str = "id_val") -> float:
        """The protocol's metric of `model` on a readable split (ID val by default): how soups, TPGM and LiNeS
        choose among candidate models without any test data."""
        from bench.engine.evaluation import predict

        ctx = self.ctx
        if getattr(self, "_scored_split", (None,))[0] != role:  # one copy of the split for every candidate scored
            self._scored_split = (role, ctx.split(role))
        split = self._scored_split[1]
        logits, labels = predict(model, split, ctx.protocol.eval_batch_size, ctx.device, ctx.autocast_dtype,
                                 ctx.num_workers)
        return float(ctx.metrics(role, logits, labels, split.metadata)[ctx.protocol.metric])

    def info(self) -> dict:
        """Method-specific facts for the record (chosen C, learned weights, ...); asked before the test splits open."""
        return {}

    # -- fixed at planning time, from the hyperparameters alone -------------------------------------------------
    @classmethod
    def variants(cls, hp: dict) -> dict[str, float | None]:
        """Evaluated variants: name -> interpolation alpha toward the trained model (None = trained model)."""
        out = {"final": None}
        out.update({f"alpha={a:g}": a for a in cls.ensemble_alphas})
        return out

    @classmethod
    def reported_variant(cls, hp: dict) -> str:
        return "final" if cls.reported_alpha is None else f"alpha={cls.reported_alpha:g}"

    # -- reporting -----------------------------------------------------------------------------------------------
    @classmethod
    def selected(cls, method_info: dict) -> str | None:
        """What a finished run selected or learned, in one line (leaderboard's hyperparameter table)."""
        return None

    @classmethod
    def search_summary(cls, search_info: dict) -> str | None:
        """One line on a finished search (CLI), from what `search()` returned."""
        return None
