"""The run record as a typed object: what a run writes (`RunRecord(...).to_dict()` is record.json) and what every
reader gets back (`RunRecord.from_dict`, after migration and validation against bench/results/schema.py)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields

from bench.results.schema import SCHEMA_VERSION, migrate, validate

#: the weight-ensemble variant the leaderboard shows as a method's '+WE' row (WiSE-FT's alpha = 0.5)
WEIGHT_ENSEMBLE_VARIANT = "alpha=0.5"


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    bench_version: str
    method: str  # as planned: a method cannot rename itself afterwards
    dataset: str
    protocol: dict  # name, version, id
    official: bool
    config: dict  # the resolved configuration the run id hashes
    hparams: dict
    seed: int
    model: dict  # arch, pretrained, activation, image_size, mean, std, weights_sha256
    selection: dict
    evaluation: dict  # the variants and the reported one, fixed when the run was planned
    reported_variant: str
    metric: str
    metrics: dict  # split -> metric -> value, of the reported variant
    summary: dict  # id, ood (split -> value), ood_avg
    variants: dict  # name -> alpha, metrics, summary
    method_info: dict
    history: list
    timing: dict
    data_access: dict
    env: dict
    schema: int = SCHEMA_VERSION
    method_description: str | None = None
    hparams_seed: int | None = None
    classes: dict | None = None
    templates: list | None = None
    split_sizes: dict | None = None
    data: dict | None = None  # the copy of the data: its data card's sha256
    predictions: dict | None = None  # file, sha256, layout (bench/results/predictions.py)
    weights: dict | None = None
    path: str | None = field(default=None, compare=False)  # where a store found it, relative to its root; not written

    @classmethod
    def from_dict(cls, record: dict, where: str = "record", path: str | None = None) -> "RunRecord":
        """A stored record, migrated to the current schema and validated (a RecordError names `where`)."""
        return cls.from_valid(validate(migrate(record), where), path)

    @classmethod
    def from_valid(cls, record: dict, path: str | None = None) -> "RunRecord":
        """A record already migrated and validated (what bench.results.schema.load returns)."""
        known = {f.name for f in fields(cls)} - {"path"}
        return cls(**{k: v for k, v in record.items() if k in known}, path=path)

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "path"}
        return {k: v for k, v in out.items() if v is not None}  # optional fields: absent, as older records have them

    def replace(self, **changes) -> "RunRecord":
        return dataclasses.replace(self, **changes)

    # the few derived values readers ask for
    @property
    def ood_avg(self) -> float:
        return self.summary["ood_avg"]

    @property
    def id_score(self) -> float:
        return self.summary["id"]

    @property
    def arch(self) -> str:
        return self.model["arch"]

    @property
    def protocol_id(self) -> str:
        return self.protocol["id"]

