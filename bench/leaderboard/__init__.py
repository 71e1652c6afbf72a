"""`bench leaderboard`: regenerate the leaderboard markdown from the run store only."""
from __future__ import annotations

from pathlib import Path

from bench.errors import BenchError
from bench.leaderboard.aggregate import build_sections
from bench.leaderboard.render import render
from bench.store import RunStore, atomic_write_text


def known_protocols() -> dict:
    from bench.datasets import DATASETS

    out = {}
    for name in DATASETS.names():
        protocol = DATASETS.get(name).protocol
        out[protocol.id] = protocol
    return out


def leaderboard_markdown(runs: Path) -> tuple[str, int]:
    store = RunStore(runs)
    records = store.records()
    sections = build_sections(records, known_protocols())
    return render(sections, known_protocols(), len(records), len(store.incomplete())), len(records)


def write_leaderboard(runs: Path, out: Path) -> int:
    if not Path(runs).is_dir():
        raise BenchError(f"run store {runs} does not exist; run `bench run --method ft` first or pass --runs DIR")
    text, count = leaderboard_markdown(runs)
    try:
        atomic_write_text(Path(out), text)
    except OSError as exc:
        raise BenchError(f"cannot write {out} ({exc.strerror or exc}); pass --out with a writable path")
    return count
