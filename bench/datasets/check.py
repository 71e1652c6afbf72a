"""What `bench data check` (and, fast, `bench run` before it writes anything) finds wrong with a dataset on disk.

Statuses are data, decided where a problem is found: "missing" (a folder, list or file the run needs is absent),
"malformed" (present but unusable: bad metadata, a label table that does not match, unreadable images),
"incomplete" (usable, but the split's size differs from the release's), "present", "embedded" (the testbed).
The fast check reads every metadata file and list and checks that every image file a run will read exists and is
not empty; `deep` also decodes every image (in parallel) and names each unreadable one.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from bench.errors import DataProblem

FAILING = ("missing", "malformed")


@dataclass
class Finding:
    dataset: str
    splits: list[str]
    status: str
    count: int | None = None
    expected: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def split(self) -> str:
        return ", ".join(self.splits)

    @property
    def note(self) -> str:
        return "; ".join(self.notes)


def run_splits(protocol) -> list[str]:
    """Every split a run of the protocol reads."""
    return [protocol.train_split, protocol.id_val_split, protocol.id_test_split, protocol.ood_val_split,
            *protocol.ood_test_splits]


def check_dataset(adapter, deep: bool = False, progress=None) -> list[Finding]:
    """One finding per split, with problems shared by several splits (or by the whole dataset) reported once."""
    name, splits = adapter.name, run_splits(adapter.protocol)
    try:
        notes = adapter.check_files()  # metadata, class tables, release/version files
        adapter.classnames  # noqa: B018 - reading the class list validates it
    except DataProblem as exc:
        return [Finding(name, ["all splits"], exc.status, notes=[str(exc)])]
    findings = []
    for split in splits:
        try:
            data = adapter.split(split)  # cached: a run that checked first does not read the lists twice
        except DataProblem as exc:
            findings.append(Finding(name, [split], exc.status, notes=[str(exc)]))
            continue
        findings.append(_split_finding(adapter, split, data, deep, progress))
    if notes:
        findings.insert(0, Finding(name, ["release"], "present", notes=notes))
    return _merge(findings)


def _split_finding(adapter, split: str, data, deep: bool, progress) -> Finding:
    count, expected = len(data), adapter.expected_sizes.get(split)
    finding = Finding(adapter.name, [split], "present", count, expected)
    paths = list(getattr(data, "paths", []) or [])
    absent = [p for p in paths if not os.path.isfile(p)]
    gone = set(absent)
    empty = [p for p in paths if p not in gone and os.path.getsize(p) == 0]
    if absent:
        finding.status = "missing" if len(absent) == len(paths) else "malformed"
        finding.notes.append(f"{len(absent)} of {count} image files missing, e.g. {absent[0]}")
    if empty:
        finding.status = "malformed"
        finding.notes.append(f"{len(empty)} image files are empty, e.g. {empty[0]}")
    if deep and paths and not absent:
        bad = unreadable(paths, progress, f"{adapter.name} {split}")
        if bad:
            finding.status = "malformed"
            finding.notes += [reason for _, reason in bad]
    if finding.status == "present" and expected is not None and count != expected:
        finding.status = "incomplete"
        finding.notes.append(f"{count} examples, the release has {expected}: a partial copy gives other numbers")
        if split in adapter.size_variants:
            finding.notes.append(adapter.size_variants[split])
    return finding


def unreadable(paths, progress=None, label: str = "") -> list[tuple[str, str]]:
    """(path, reason) for every image that does not decode; decoded in parallel threads."""
    from bench.datasets.images import open_image

    def probe(path):
        try:
            open_image(path)
            return None
        except DataProblem as exc:  # its message names the file and what to do
            return str(path), str(exc)

    task = progress.add_task(label, total=len(paths)) if progress is not None else None
    bad = []
    with ThreadPoolExecutor(max_workers=min(32, (os.cpu_count() or 1) * 2)) as pool:
        for result in pool.map(probe, paths, chunksize=64):
            if result is not None:
                bad.append(result)
            if task is not None:
                progress.advance(task)
    return bad


def _merge(findings: list[Finding]) -> list[Finding]:
    """Splits that share one problem (same status and notes, e.g. one missing folder) become one finding."""
    out: list[Finding] = []
    for f in findings:
        same = next((o for o in out if f.status in FAILING and o.status == f.status and o.notes == f.notes), None)
        if same is not None:
            same.splits.append(f.splits[0])
        else:
            out.append(f)
    return out


def failures(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.status in FAILING]
