"""`bench data verify`: a dataset copy checked against the release, and its data card.

The card (<data root>/bench-cards/<dataset>.card.json) says which copy of the data this is: where it came from
(the download receipts of its archives), the archive sha256s, the split counts against the release's, and, with
--checksums, the digest of a per-file sha256 manifest (<dataset>.manifest.txt beside it, hashed in parallel). A
later `verify --checksums` compares the files with that manifest and names every missing, changed or new file.
Every run records the card's sha256 (its file's bytes); the leaderboard names the copy each section used.
A verification that finds a problem writes nothing: the last good card and manifest stay as they were.
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from bench.datasets.check import Finding, failures
from bench.datasets.folders import data_root
from bench.errors import BenchError

CARDS = "bench-cards"
_BUF = 1 << 20


def card_path(root: Path, dataset: str) -> Path:
    return root / CARDS / f"{dataset}.card.json"


def manifest_path(root: Path, dataset: str) -> Path:
    return root / CARDS / f"{dataset}.manifest.txt"


@dataclass
class Verification:
    dataset: str
    findings: list[Finding]
    changes: list[str] = field(default_factory=list)  # files missing, changed or new against the stored manifest
    card: Path | None = None  # written when the copy passed
    card_sha256: str | None = None
    embedded: bool = False

    @property
    def ok(self) -> bool:
        return not self.changes and not [f for f in self.findings if f.status in ("missing", "malformed", "incomplete")]


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_BUF):
            digest.update(chunk)
    return digest.hexdigest()


def files_of(folders: list[Path], root: Path) -> list[tuple[str, Path]]:
    """(path relative to the data root, path) of every file under the dataset's folders, sorted."""
    out = []
    for folder in folders:
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath) / name
                out.append((path.relative_to(root).as_posix(), path))
    return sorted(out)


def manifest(folders: list[Path], root: Path, workers: int | None = None, progress=None, label: str = "") -> str:
    """Lines '<sha256>  <size>  <relative path>', sorted by path; files hashed in parallel threads (hashlib
    releases the GIL on large buffers, so threads scale with the disk)."""
    files = files_of(folders, root)
    workers = workers or min(32, (os.cpu_count() or 1) * 4)
    task = progress.add_task(label, total=len(files)) if progress is not None else None

    def one(entry):
        rel, path = entry
        line = f"{_file_sha256(path)}  {path.stat().st_size}  {rel}"
        if task is not None:
            progress.advance(task)
        return line

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return "".join(line + "\n" for line in pool.map(one, files, chunksize=64))


def _parse_manifest(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        sha, _size, rel = line.split("  ", 2)
        out[rel] = sha
    return out


def compare(old: str, new: str, limit: int = 5) -> list[str]:
    """Every difference between two manifests, as short lines (the first `limit` of each kind, then a count)."""
    before, after = _parse_manifest(old), _parse_manifest(new)
    kinds = {"missing": sorted(set(before) - set(after)), "new": sorted(set(after) - set(before)),
             "changed": sorted(p for p in set(before) & set(after) if before[p] != after[p])}
    lines = []
    for kind, paths in kinds.items():
        lines += [f"{kind} file: {p}" for p in paths[:limit]]
        if len(paths) > limit:
            lines.append(f"... and {len(paths) - limit} more {kind} files")
    return lines


def receipts(root: Path, dataset: str) -> dict[str, dict]:
    """The download receipts of this dataset's archives, by item."""
    out = {}
    for path in sorted((root / CARDS).glob("*.source.json")) if (root / CARDS).is_dir() else []:
        try:
            receipt = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if receipt.get("dataset") == dataset:
            out[receipt.get("item", path.stem)] = receipt
    return out


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def verify(adapter, checksums: bool = False, workers: int | None = None, progress=None) -> Verification:
    if not adapter.needs_data_root:
        return Verification(adapter.name, [], embedded=True)
    root = data_root(adapter.data_root, adapter.name)
    result = Verification(adapter.name, adapter.check(False, progress))
    if failures(result.findings):
        return result
    folders = adapter.data_folders()
    old_card = read(root, adapter.name)
    manifest_entry = (old_card or {}).get("manifest")
    if checksums:
        text = manifest(folders, root, workers, progress, f"{adapter.name} sha256")
        stored = manifest_path(root, adapter.name)
        if stored.is_file():
            result.changes = compare(stored.read_text(), text)
        manifest_entry = {"file": stored.name, "sha256": hashlib.sha256(text.encode()).hexdigest(),
                          "files": text.count("\n"), "computed": _now()}
    if not result.ok:
        return result
    card = {
        "dataset": adapter.name,
        "verified": _now(),
        "data_root": str(root),
        "folders": [f.relative_to(root).as_posix() for f in folders],
        "sources": receipts(root, adapter.name) or "not downloaded by bench (a copy installed by hand)",
        "counts": {f.split: f.count for f in result.findings if f.count is not None},
        "release_counts": {f.split: f.expected for f in result.findings if f.expected is not None},
        "notes": [n for f in result.findings for n in f.notes],
        "manifest": manifest_entry,
        "duplicate_classnames": adapter.duplicate_classnames(),
    }
    if checksums:
        _atomic_write(manifest_path(root, adapter.name), text)
    if old_card is not None and _same_copy(old_card, card):
        card = old_card  # the same copy keeps its card (and digest), so its runs stay comparable
    text_card = json.dumps(card, indent=1, sort_keys=True) + "\n"
    _atomic_write(card_path(root, adapter.name), text_card)
    result.card, result.card_sha256 = card_path(root, adapter.name), hashlib.sha256(text_card.encode()).hexdigest()
    return result


def _same_copy(old: dict, new: dict) -> bool:
    def strip(card):
        return {**card, "verified": None, "manifest": {**(card.get("manifest") or {}), "computed": None}}

    return strip(old) == strip(new)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read(root: Path, dataset: str) -> dict | None:
    path = card_path(root, dataset)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BenchError(f"the data card {path} is unreadable ({exc}); run `bench data verify {dataset}` again")


def summary(adapter) -> dict:
    """What a run records about its copy of the data: the card's sha256 and the facts the leaderboard shows."""
    if not adapter.needs_data_root:
        return {"embedded": True, "card": None, "note": "the embedded testbed, generated by bench's own code"}
    root = data_root(adapter.data_root, adapter.name)
    path = card_path(root, adapter.name)
    if not path.is_file():
        return {"card": None, "note": f"not verified: `bench data verify {adapter.name}` writes a data card"}
    card = read(root, adapter.name)
    sources = card.get("sources")
    return {"card": hashlib.sha256(path.read_bytes()).hexdigest(), "verified": card.get("verified"),
            "sources": {k: v.get("source") for k, v in sources.items()} if isinstance(sources, dict) else sources,
            "archives": {k: v.get("archive_sha256") for k, v in sources.items()} if isinstance(sources, dict) else {},
            "manifest": (card.get("manifest") or {}).get("sha256")}
