"""Selection across a sweep's hyperparameter draws (DomainBed's training-domain validation): per dataset, protocol,
model and method, the configuration whose mean ID-validation score over its seeds is highest. Only ID validation
data enters; test splits never do."""
from __future__ import annotations

import json
from dataclasses import dataclass

from bench.config import short_value


@dataclass(frozen=True)
class Candidate:
    hparams: str  # canonical JSON of the hyperparameters
    hparams_seeds: tuple[int, ...]
    seeds: tuple[int, ...]
    id_val: float  # mean over seeds of the ID-val headline metric of the reported variant


@dataclass(frozen=True)
class Selection:
    dataset: str
    protocol: str
    model: str
    method: str
    metric: str
    chosen: Candidate
    candidates: tuple[Candidate, ...]

    @property
    def draws(self) -> int:
        return len(self.candidates)

    @property
    def hparams_text(self) -> str:
        """The chosen hyperparameters as tables print them (floats to 3 significant digits)."""
        return ", ".join(f"{k}={short_value(v)}" for k, v in json.loads(self.chosen.hparams).items())


def id_val_score(record) -> float | None:
    """The record's ID-val headline metric (None where it has none: it cannot be selected by ID val)."""
    split = record.selection.get("split", "id_val")
    value = record.metrics.get(split, {}).get(record.metric)
    return None if value is None else float(value)


def select(records: list) -> list[Selection]:
    """`records`: bench.results.record.RunRecord of one store."""
    groups: dict[tuple, dict[str, list]] = {}
    for r in records:
        if id_val_score(r) is None:
            continue
        model = f"{r.arch} ({r.model['pretrained']})"
        key = (r.dataset, r.protocol_id, model, r.method, r.metric, r.official)
        groups.setdefault(key, {}).setdefault(json.dumps(r.hparams, sort_keys=True), []).append(r)
    out = []
    for (dataset, protocol, model, method, metric, _), configs in sorted(groups.items()):
        candidates = []
        for hparams, runs in sorted(configs.items()):
            scores = [id_val_score(r) for r in runs]
            candidates.append(Candidate(hparams, tuple(sorted({r.hparams_seed for r in runs})),
                                        tuple(sorted(r.seed for r in runs)), sum(scores) / len(scores)))
        # highest mean ID-val; ties: more seeds, then the earliest draw
        chosen = max(candidates, key=lambda c: (c.id_val, len(c.seeds), -min(c.hparams_seeds)))
        out.append(Selection(dataset, protocol, model, method, metric, chosen, tuple(candidates)))
    return out


def selection_markdown(selections: list[Selection]) -> str:
    """A table of the methods chosen from several draws ('' when no method has more than one)."""
    several = [s for s in selections if s.draws > 1]
    if not several:
        return ""
    lines = ["## Selection across hyperparameter draws", "",
             "Per dataset, protocol, model and method: the draw with the highest mean ID-val score over its seeds "
             "(training-domain validation, as DomainBed; no test data). `bench select` prints the same.", "",
             "| dataset | protocol | model | method | draws | chosen draw | seeds | mean ID-val | hyperparameters |",
             "|---|---|---|---|---|---|---|---|---|"]
    for s in several:
        c = s.chosen
        hp = s.hparams_text
        lines.append(f"| {s.dataset} | {s.protocol} | {s.model} | {s.method} | {s.draws} | "
                     f"{', '.join(map(str, c.hparams_seeds))} | {len(c.seeds)} | {c.id_val:.2f} {s.metric} | {hp} |")
    return "\n".join(lines) + "\n"
