"""The run record's written schema (JSON Schema, versioned), its validation and the migration of older records.

Every record is validated against it before it is stored, and every record read from a store is validated (after
migrating an older version in memory); a record that fails is reported by path and reason, never used silently.
`python -m bench.results migrate DIR` rewrites a store's records to the current version in place (atomically).

Version history: 1 - the first records. 2 - `evaluation`: the variants and the reported variant, fixed when the
run is planned (before any test split is opened). 3 - `predictions.layout` is the predictions file's layout number
(bench/results/predictions.py; 2 adds group ids and class probabilities), its text in `predictions.description`.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.errors import BenchError

SCHEMA_VERSION = 3

_NUMBER_OR_NULL = {"type": ["number", "null"]}
_METRICS = {"type": "object", "additionalProperties": {"type": "object", "additionalProperties": _NUMBER_OR_NULL}}
_SUMMARY = {
    "type": "object",
    "required": ["id", "ood", "ood_avg"],
    "properties": {"id": {"type": "number"}, "ood": {"type": "object", "additionalProperties": {"type": "number"}},
                   "ood_avg": {"type": "number"}},
}
_NAME = {"type": "string", "pattern": "^[a-z0-9][a-z0-9_.-]*$"}

RECORD_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "bench run record",
    "type": "object",
    "required": ["schema", "run_id", "bench_version", "method", "dataset", "protocol", "official", "config", "hparams",
                 "seed", "model", "selection", "evaluation", "reported_variant", "metric", "metrics", "summary",
                 "variants", "method_info", "history", "timing", "data_access", "env"],
    "properties": {
        "schema": {"const": SCHEMA_VERSION},
        "run_id": {"type": "string", "pattern": "^[0-9a-f]{12}$"},
        "bench_version": {"type": "string"},
        "method": _NAME,
        "method_description": {"type": "string"},
        "dataset": _NAME,
        "protocol": {"type": "object", "required": ["name", "version", "id"],
                     "properties": {"name": {"type": "string"}, "version": {"type": "integer"}, "id": {"type": "string"}}},
        "official": {"type": "boolean"},
        "config": {"type": "object", "required": ["method", "dataset", "protocol", "model", "seed", "hparams", "budget"],
                   "properties": {"model": {"type": "object", "required": ["arch", "pretrained"]},
                                  "budget": {"type": "object"}, "hparams": {"type": "object"},
                                  "seed": {"type": "integer", "minimum": 0}}},
        "hparams": {"type": "object"},
        "hparams_seed": {"type": "integer"},
        "seed": {"type": "integer", "minimum": 0},
        "model": {"type": "object", "required": ["arch", "pretrained", "activation", "image_size", "mean", "std",
                                                 "weights_sha256"],
                  "properties": {"arch": {"type": "string"}, "activation": {"type": "string"},
                                 "image_size": {"type": "integer"}}},
        "selection": {"type": "object", "required": ["rule"]},
        # the class names and prompt templates of every head the run built (records before them have none)
        "classes": {"type": "object", "required": ["names", "source"],
                    "properties": {"names": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                                   "source": {"type": "string"}}},
        "templates": {"type": "array", "items": {"type": "string"}},
        # per-example predictions, in a side file of the run folder (records before them have none)
        "predictions": {"type": "object", "required": ["file", "sha256", "layout"],
                        "properties": {"file": {"type": "string", "pattern": "^[a-z0-9_.-]+$"},
                                       "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                                       "layout": {"type": "integer", "minimum": 1}, "description": {"type": "string"}}},
        # the selected model's weights (runs that trained; records before it have none): what soups and post-hoc methods read
        "weights": {"type": "object", "required": ["file", "sha256"],
                    "properties": {"file": {"type": "string", "pattern": "^[a-z0-9_.-]+$"},
                                   "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}},
        "evaluation": {"type": "object", "required": ["variants", "reported"],
                       "properties": {"variants": {"type": "object", "minProperties": 1,
                                                   "additionalProperties": _NUMBER_OR_NULL},
                                      "reported": {"type": "string"}}},
        "reported_variant": {"type": "string"},
        "metric": {"type": "string"},
        "metrics": _METRICS,
        "summary": _SUMMARY,
        "variants": {"type": "object", "minProperties": 1, "additionalProperties": {
            "type": "object", "required": ["alpha", "metrics", "summary"],
            "properties": {"alpha": _NUMBER_OR_NULL, "metrics": _METRICS, "summary": _SUMMARY}}},
        "split_sizes": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
        # the copy of the data: the data card's sha256, or null with why (records older than data cards have none)
        "data": {"type": "object", "required": ["card"],
                 "properties": {"card": {"type": ["string", "null"], "pattern": "^[0-9a-f]{64}$"},
                                # split -> the resolution of the prepared copy it was read from (absent: the files)
                                "prepared": {"type": "object",
                                             "additionalProperties": {"type": "string", "pattern": "^[0-9]+px$"}},
                                # "device": the training JPEGs were decoded on the device (absent: by the loader)
                                "decode": {"enum": ["device"]}}},
        "method_info": {"type": "object"},
        "history": {"type": "array", "items": {"type": "object"}},
        "timing": {"type": "object", "required": ["setup_s", "train_s", "eval_s", "total_s"],
                   "properties": {k: {"type": "number", "minimum": 0} for k in ("setup_s", "train_s", "eval_s", "total_s")}},
        "data_access": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
        "env": {"type": "object", "required": ["python", "packages", "git", "device", "device_kind"]},
    },
}


class RecordError(BenchError):
    def __init__(self, where: str, reason: str):
        super().__init__(f"{where}: {reason}")
        self.where, self.reason = where, reason


def _validator():
    from jsonschema import Draft202012Validator

    return Draft202012Validator(RECORD_SCHEMA)


def problems(record) -> list[str]:
    """Every way `record` breaks the schema, as 'path: reason' (empty when valid), plus cross-field checks."""
    if not isinstance(record, dict):
        return [f"(record): expected a JSON object, got {type(record).__name__}"]
    out = []
    for error in sorted(_validator().iter_errors(record), key=lambda e: list(map(str, e.absolute_path))):
        where = "/".join(map(str, error.absolute_path)) or "(record)"
        out.append(f"{where}: {error.message[:200]}")
    if out:
        return out
    if record["reported_variant"] != record["evaluation"]["reported"]:
        out.append("reported_variant: differs from the variant fixed when the run was planned (evaluation/reported)")
    if set(record["variants"]) != set(record["evaluation"]["variants"]):
        out.append("variants: differ from the variants fixed when the run was planned (evaluation/variants)")
    if record["reported_variant"] not in record["variants"]:
        out.append(f"reported_variant: {record['reported_variant']!r} is not an evaluated variant")
    return out


def validate(record, where: str = "record") -> dict:
    found = problems(record)
    if found:
        raise RecordError(where, found[0] + (f" (and {len(found) - 1} more)" if len(found) > 1 else ""))
    return record


def _to_2(record: dict) -> dict:
    out = dict(record)
    variants = record.get("variants") or {}
    if isinstance(variants, dict) and all(isinstance(v, dict) for v in variants.values()):
        out["evaluation"] = {"variants": {name: v.get("alpha") for name, v in variants.items()},
                             "reported": record.get("reported_variant")}
    return out


def _to_3(record: dict) -> dict:
    out = dict(record)
    info = record.get("predictions")
    if isinstance(info, dict) and not isinstance(info.get("layout"), int):  # version 2 kept the layout as text
        out["predictions"] = {**{k: v for k, v in info.items() if k != "layout"}, "layout": 1,
                              **({"description": info["layout"]} if isinstance(info.get("layout"), str) else {})}
    return out


_STEPS = {1: _to_2, 2: _to_3}


def migrate(record: dict) -> dict:
    """A record of an older schema version brought to the current one (a new dict; unknown versions unchanged)."""
    if not isinstance(record, dict):
        return record
    while record.get("schema") in _STEPS:
        version = record["schema"]
        record = {**_STEPS[version](record), "schema": version + 1}
    return record


def load(path: Path) -> dict:
    """Read, migrate and validate one record file; every failure is a RecordError naming the file."""
    try:
        record = json.loads(Path(path).read_text())
    except OSError as exc:
        raise RecordError(str(path), f"unreadable ({exc.strerror or exc})")
    except json.JSONDecodeError as exc:
        raise RecordError(str(path), f"not valid JSON ({exc.msg} at line {exc.lineno}), e.g. a truncated write")
    return validate(migrate(record), str(path))


def migrate_store(root: Path) -> list[Path]:
    """Rewrite every record under `root` whose version is older than the current one; returns the files changed."""
    from bench.results.io import atomic_write_json

    changed = []
    for path in sorted(Path(root).rglob("record.json")):
        record = json.loads(path.read_text())
        if record.get("schema") != SCHEMA_VERSION:
            atomic_write_json(path, validate(migrate(record), str(path)))
            changed.append(path)
    return changed


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "migrate":
        print("usage: python -m bench.results migrate STORE_DIR", file=sys.stderr)
        return 2
    changed = migrate_store(Path(args[1]))
    print(f"migrated {len(changed)} record(s) to schema {SCHEMA_VERSION}")
    return 0

