"""`bench export wilds`: a method's runs as a WILDS leaderboard submission, from the stored predictions.

The layout WILDS' evaluator (examples/evaluate.py) reads: one CSV per split and seed, named
`{dataset}_split:{split}_seed:{k}.csv`, one predicted class per line in the order of the split's rows in the
release's metadata (the order bench reads them in), for every split but train (id_val, id_test, val, test) and
seeds 0-2. The predictions are each run's reported variant (e.g. WiSE-FT's alpha = 0.5). Everything is checked
before the first file is written, and the files appear together (a temporary folder renamed into place).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from bench.errors import BenchError
from bench.results.predictions import StoredPredictions
from bench.store import RunStore

DATASETS = ("iwildcam", "fmow")
SEEDS = (0, 1, 2)  # WILDS' replicates for both datasets
SPLITS = {"id_val": "id_val", "id_test": "id_test", "ood_val": "val", "ood_test": "test"}  # bench -> WILDS


def file_name(dataset: str, wilds_split: str, seed: int) -> str:
    return f"{dataset}_split:{wilds_split}_seed:{seed}.csv"


def _runs_by_seed(root: Path, dataset: str, method: str, hparams_seed: int) -> dict:
    runs = [r for r in RunStore(root).records()
            if r.dataset == dataset and r.method == method and (r.hparams_seed or 0) == hparams_seed]
    by_seed: dict[int, list] = {}
    for record in runs:
        by_seed.setdefault(record.seed, []).append(record)
    missing = [s for s in SEEDS if s not in by_seed]
    if missing:
        raise BenchError(f"{root} has no finished {method} run on {dataset} (hparams seed {hparams_seed}) for seed(s) "
                         f"{', '.join(map(str, missing))}; WILDS takes seeds 0-2: `bench run --method {method} "
                         f"--dataset {dataset} --seed {' '.join(map(str, missing))} --out {root}`")
    several = {s: [r.path for r in by_seed[s]] for s in SEEDS if len(by_seed[s]) > 1}
    if several:
        seed, paths = next(iter(several.items()))
        raise BenchError(f"{root} has {len(paths)} {method} runs on {dataset} for seed {seed} ({', '.join(paths)}); "
                         "export from a store with one configuration per seed")
    return {s: by_seed[s][0] for s in SEEDS}


def export_wilds(root: Path, dataset: str, method: str, out: Path, hparams_seed: int = 0) -> list[Path]:
    """Writes the submission files into `out` (absent or empty) and returns them."""
    if dataset not in DATASETS:
        raise BenchError(f"WILDS submissions exist for {' and '.join(DATASETS)}, not {dataset!r}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BenchError(f"{out} exists and is not an empty folder; pass a new --out folder (nothing was written)")
    files: dict[str, list[str]] = {}
    for seed, record in _runs_by_seed(Path(root), dataset, method, hparams_seed).items():
        stored = StoredPredictions(Path(root), record.path, record.predictions)
        if stored.problem:
            raise BenchError(f"{record.path}: {stored.problem}; re-run it with --force")
        for split, wilds_split in SPLITS.items():
            top1 = stored.top1(record.reported_variant, split)
            if top1 is None:
                raise BenchError(f"{record.path} has no predictions on {split} (WILDS' {wilds_split}); runs before "
                                 "every run scored OOD val lack it: re-run it with --force")
            if len(top1) != record.split_sizes.get(split, -1):
                raise BenchError(f"{record.path}: {len(top1)} predictions on {split}, but the record scored "
                                 f"{record.split_sizes.get(split)} examples; re-run it with --force")
            files[file_name(dataset, wilds_split, seed)] = [str(int(c)) for c in top1]
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name, lines in files.items():
        (staging / name).write_text("\n".join(lines) + "\n")
    if out.exists():
        out.rmdir()  # empty, checked above
    os.replace(staging, out)
    return [out / name for name in files]
