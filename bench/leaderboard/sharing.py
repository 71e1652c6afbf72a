"""Results shared between machines and people: bundles (`bench bundle`) and merged stores (`bench leaderboard
--runs A --runs B.tar.gz`).

A bundle is a gzipped tar of finished run folders (config, record, `done`, predictions; weights only when asked)
with a MANIFEST.json of every file's sha256. Merging copies each source's runs into one temporary store: a run id
found twice must carry the same record and predictions (else the merge is refused, naming both), and every number a
row shows must recompute from its stored predictions (the shared metric code, bench.results.metrics) before the
leaderboard is made from it — a bundle whose numbers do not recompute is refused with the path and the difference.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
from pathlib import Path

from bench.errors import BenchError
from bench.results import metrics as M
from bench.results.predictions import StoredPredictions
from bench.store import RunStore

BUNDLE_SCHEMA = 1
MANIFEST = "MANIFEST.json"
TOLERANCE = 1e-3  # percentage points, as the bootstrap's check: above float32 rounding, below one example in 100k
RUN_FILES = ("config.json", "record.json", "done")


def _sha256(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def _run_files(root: Path, record, weights: bool) -> list[str]:
    """Paths (relative to the store) of what a bundle carries of one run."""
    names = list(RUN_FILES)
    if record.predictions:
        names.append(record.predictions["file"])
    if weights and record.weights and record.weights.get("file"):
        names.append(record.weights["file"])
    return [f"{record.path}/{name}" for name in names if (root / record.path / name).is_file()]


def _records(root: Path, what: str) -> list:
    records, problems = RunStore(root).scan()
    if problems:
        where, reason = problems[0]
        raise BenchError(f"{what}: record {root / where} fails the schema ({reason}); fix or remove that run first")
    return records


def bundle(sources: list[Path], out: Path, weights: bool = False) -> int:
    """Writes the bundle (checked before anything is written; renamed into place) and returns its number of runs."""
    out = Path(out)
    if out.exists():
        raise BenchError(f"{out} already exists; pass a new --out file (a bundle is never overwritten)")
    files: dict[str, bytes] = {}
    seen: dict[str, tuple[Path, str]] = {}
    for source in sources:
        source = Path(source)
        if not source.is_dir():
            raise BenchError(f"run store {source} does not exist; pass folders made by `bench run --out`")
        for record in _records(source, f"bundling {source}"):
            digest = _sha256((source / record.path / "record.json").read_bytes())
            if record.run_id in seen:
                if seen[record.run_id][1] != digest:
                    raise BenchError(f"run {record.run_id} is in {seen[record.run_id][0]} and {source} with different "
                                     "records; bundle one of them")
                continue
            seen[record.run_id] = (source, digest)
            for name in _run_files(source, record, weights):
                files[name] = (source / name).read_bytes()
    if not seen:
        raise BenchError(f"no finished runs in {', '.join(map(str, sources))}; nothing to bundle")
    manifest = {"schema": BUNDLE_SCHEMA, "runs": len(seen), "files": {n: _sha256(b) for n, b in sorted(files.items())}}
    partial = out.with_name(out.name + ".partial")
    with open(partial, "wb") as raw, gzip.GzipFile("", "wb", fileobj=raw, mtime=0) as packed, \
            tarfile.open(fileobj=packed, mode="w") as tar:  # no file name or time in the gzip header either
        for name, blob in [(MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode()), *sorted(files.items())]:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(blob), 0, 0o644  # no clock or owner: the same runs, the same bytes
            tar.addfile(info, io.BytesIO(blob))
    os.replace(partial, out)
    return len(seen)


def open_bundle(path: Path, into: Path) -> Path:
    """Extracts a bundle into `into` after checking its manifest: every member listed with a matching sha256,
    nothing else, no path leaving the folder."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            members = {m.name: m for m in tar.getmembers()}
            if MANIFEST not in members:
                raise BenchError(f"{path} has no {MANIFEST}; it is not a bench bundle (make one with `bench bundle`)")
            manifest = json.loads(tar.extractfile(members[MANIFEST]).read())
            listed = manifest.get("files", {})
            extra = sorted(set(members) - set(listed) - {MANIFEST})
            if manifest.get("schema") != BUNDLE_SCHEMA or extra:
                raise BenchError(f"{path}: bundle schema {manifest.get('schema')!r}"
                                 + (f", unlisted member {extra[0]}" if extra else "") + "; re-make it with `bench bundle`")
            for name, digest in listed.items():
                member = members.get(name)
                if member is None or not member.isfile():
                    raise BenchError(f"{path}: {name} is listed in the manifest but not in the bundle")
                blob = tar.extractfile(member).read()
                if _sha256(blob) != digest:
                    raise BenchError(f"{path}: {name} does not match its sha256 in the manifest; the bundle is "
                                     "damaged or was edited")
                target = (into / name).resolve()
                if not target.is_relative_to(into.resolve()):
                    raise BenchError(f"{path}: member {name} would be written outside the store; refused")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(blob)
    except (tarfile.TarError, OSError, EOFError, json.JSONDecodeError) as exc:
        raise BenchError(f"{path} is not a readable bundle ({type(exc).__name__}); re-make it with `bench bundle`")
    return into


def recompute_problem(root: Path, record) -> str | None:
    """Why a record's numbers do not recompute from its stored predictions, or None: on every split of every
    variant its predictions hold, the headline metric and every other metric bench implements (bench.results.metrics:
    accuracy, macro-F1, worst-region accuracy); ECE and WILDS' per-group numbers are not recomputed."""
    stored = StoredPredictions(root, record.path, record.predictions)
    if stored.problem:
        return stored.problem
    for variant, entry in record.variants.items():
        for split, values in (entry.get("metrics") or {}).items():
            top1, labels = stored.top1(variant, split), stored.labels(split)
            if top1 is None:
                continue  # an alias of another variant (evaluation.same_model) or a split without predictions
            if labels is None:
                return stored.missing("true labels")
            groups = stored.groups(split)
            if record.metric not in values:
                return f"{variant} {split} has no {record.metric}, the record's headline metric"
            for metric in [m for m in M.RECOMPUTABLE if m in values]:  # the headline one and the others bench has
                if M.NEEDS_GROUPS.get(metric) and groups is None:
                    if metric == record.metric:
                        return stored.missing(f"group ids for {metric}")
                    continue
                ours, theirs = M.point(metric, labels, top1, groups), values[metric]
                if abs(ours - theirs) > TOLERANCE:
                    return (f"{variant} {split} {metric}: the record says {theirs}, its predictions give {ours:.6f} "
                            f"(difference {ours - theirs:+.6f})")
    return None


def merged_store(sources: list[Path], into: Path) -> Path:
    """One store in `into` with the runs of every source (a store folder or a bundle file), checked."""
    into.mkdir(parents=True, exist_ok=True)
    seen: dict[str, tuple[str, str]] = {}  # run id -> (source, sha256 of its record and predictions)
    for i, source in enumerate(map(Path, sources)):
        if source.is_file():
            root = open_bundle(source, into.parent / f".source-{i}")
        elif source.is_dir():
            root = source
        else:
            raise BenchError(f"{source} is neither a run store folder nor a bundle file; pass --runs DIR or FILE")
        for record in _records(root, f"merging {source}"):
            problem = recompute_problem(root, record)
            if problem:
                raise BenchError(f"{source}: run {record.path} does not recompute from its predictions: {problem}; "
                                 "refused")
            folder = root / record.path
            pred = (record.predictions or {}).get("sha256", "")
            digest = _sha256((folder / "record.json").read_bytes()) + pred
            if record.run_id in seen:
                first, first_digest = seen[record.run_id]
                if first_digest != digest:
                    raise BenchError(f"run {record.run_id} is in {first} and {source} with different records or "
                                     "predictions; merge only one of them")
                continue
            seen[record.run_id] = (str(source), digest)
            for name in _run_files(root, record, weights=False):  # what the leaderboard reads; not weights
                (into / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(root / name, into / name)
        for bench_file in sorted((root / "benchmarks").glob("*.json")) if (root / "benchmarks").is_dir() else []:
            (into / "benchmarks").mkdir(exist_ok=True)
            shutil.copy2(bench_file, into / "benchmarks" / f"{i}-{bench_file.name}")
    return into
