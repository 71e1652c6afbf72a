"""A protocol fixes, per dataset, everything that makes results comparable; methods cannot change it.

Splits and their roles, the official metrics, the model, the optimiser schedule, the budget, the seeds, the model
selection rule and which extra data a method may be granted. Overriding a protocol-fixed setting is allowed for
quick experiments, but the run is then marked unofficial.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

from bench.errors import BenchError

# Settings a user may override with --set (the run becomes unofficial); the rest are not tunable at all.
OVERRIDABLE = ("steps", "batch_size", "eval_every", "warmup", "grad_clip", "eval_batch_size", "ood_val_size",
               "prompts", "budget_rule")
BUDGET_RULES = ("equal", "official")


def _ranges() -> dict:
    from bench.config import Range

    return {"steps": Range(0, 10_000_000), "batch_size": Range(1, 1_000_000), "eval_every": Range(1),
            "warmup": Range(0), "grad_clip": Range(0), "eval_batch_size": Range(1, 1_000_000),
            "ood_val_size": Range(1)}


SETTING_RANGES = _ranges()  # valid values of the overridable numbers (grad_clip 0 = no clipping)


@dataclass(frozen=True)
class Protocol:
    name: str
    version: int
    dataset: str
    description: str
    # model
    model: str
    pretrained: str
    # splits and their roles
    train_split: str
    id_val_split: str
    id_test_split: str
    ood_val_split: str  # granted only to methods that declare they search on OOD validation data
    ood_test_splits: tuple[str, ...]
    # metrics: the headline one selects models and heads the tables
    metric: str
    metric_label: str
    # optimiser schedule and budget (AdamW, linear warm-up then cosine to 0, gradient clipping)
    steps: int
    batch_size: int
    warmup: int
    grad_clip: float
    eval_every: int
    eval_batch_size: int
    lr: float  # default learning rate; methods may scale it (LP-FT)
    weight_decay: float
    reduced: tuple = ()  # (key, value) overrides of the documented quick budget (`--reduced`; runs are unofficial)
    prompts: str = "default"  # prompt-template set; a smaller one (e.g. ImageNet's "simple") makes runs unofficial
    ood_val_size: int = 1000  # OOD-val examples a searching method (AutoFT) scores each trial on; all if fewer
    # True: every run's final evaluation also scores the whole OOD-val split, for the record and for submissions
    # that need it (WILDS' leaderboard takes `val`); after the model is fixed, so never for selection
    report_ood_val: bool = False
    # "equal": every method's fine-tune runs `steps` steps (the comparison this suite exists for). "official": a
    # method whose official code trains longer declares it (`Method.official_steps`, e.g. AutoFT's epochs over its
    # image x template caption loader) and trains that long; such runs are unofficial here.
    budget_rule: str = "equal"
    seeds: tuple[int, ...] = (0, 1, 2)
    selection: str = "best checkpoint on id_val by the headline metric"
    papers_report: bool = True  # papers publish numbers under it (the leaderboard shows their reported rows)

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def test_splits(self) -> tuple[str, ...]:
        return (self.id_test_split, *self.ood_test_splits)

    @staticmethod
    def overridable() -> tuple[str, ...]:
        return OVERRIDABLE

    def with_overrides(self, overrides: dict) -> "Protocol":
        from bench.config import coerce

        values = {}
        for key, value in overrides.items():
            if key not in OVERRIDABLE:
                raise BenchError(f"protocol setting {key!r} cannot be overridden; overridable: {', '.join(OVERRIDABLE)}")
            values[key] = coerce(key, value, getattr(self, key))
            if key == "budget_rule" and values[key] not in BUDGET_RULES:
                raise BenchError(f"--set budget_rule={value} is unknown; use one of {', '.join(BUDGET_RULES)}")
            if key in SETTING_RANGES:
                try:
                    SETTING_RANGES[key].check(key, values[key])
                except BenchError as exc:
                    raise BenchError(f"--set {exc} (protocol {self.id} uses {getattr(self, key)})")
        return replace(self, **values)

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def budget(self, reads_ood_val: bool = False) -> dict:
        """The overridable settings a run depends on, and so its hash: the OOD-val subset size only for methods that
        read OOD val, the prompt set and budget rule only when not the default (older runs keep their hashes)."""
        out = {key: getattr(self, key) for key in OVERRIDABLE}
        if not reads_ood_val:
            del out["ood_val_size"]
        if out["prompts"] == "default":
            del out["prompts"]
        if out["budget_rule"] == "equal":
            del out["budget_rule"]
        return out
