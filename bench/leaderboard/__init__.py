"""`bench leaderboard`: regenerate the leaderboard markdown, CSV/JSON exports and plots from the run store only."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError
from bench.leaderboard.aggregate import build_sections
from bench.leaderboard.bootstrap import attach
from bench.leaderboard.export import results_json, table_rows, to_csv
from bench.leaderboard.html import write_html
from bench.leaderboard.render import render, section_slug
from bench.leaderboard.timing import load_step_benchmarks
from bench.store import RunStore
from bench.results.io import atomic_write_text

ASSETS = "leaderboard"  # folder beside the markdown file for CSV, JSON and PNG files


def known_protocols() -> dict:
    from bench.datasets import DATASETS

    out = {}
    for name in DATASETS.names():
        protocol = DATASETS.get(name).protocol
        out[protocol.id] = protocol
    return out


def _unfinished(store: RunStore) -> list[dict]:
    configs = []
    for folder in store.incomplete():
        try:
            configs.append(json.loads((folder / "config.json").read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    return configs


def describe_selection(method: str, method_info: dict) -> str | None:
    """What a run selected, in the words of its method's `selected` hook (None for a method not loaded here)."""
    from bench.methods import METHODS

    try:
        cls = METHODS.get(method)
    except BenchError:
        return None
    return cls.selected(method_info)


@dataclass
class Leaderboard:
    sections: list
    records: list
    unfinished: list
    problems: list  # (run folder, reason) of finished runs whose record fails the schema

    def markdown(self, runs: Path, assets: str | None, calibration: bool = False) -> str:
        from bench.leaderboard.selection import select, selection_markdown

        text = render(self.sections, known_protocols(), len(self.records), len(self.unfinished), assets,
                      load_step_benchmarks(runs), self.problems, calibration)
        chosen = selection_markdown(select(self.records))  # only where a sweep drew several configurations
        return text + ("\n" + chosen if chosen else "")


def collect(runs: Path) -> Leaderboard:
    """The one aggregation every output is formatted from."""
    from bench.methods import BUILTIN_METHODS

    store = RunStore(runs)
    store.recover_all()  # an interrupted --force redo is finished or undone first, never shown as "0 runs"
    records, problems = store.scan()
    unfinished = _unfinished(store)
    sections = build_sections(records, known_protocols(), unfinished, BUILTIN_METHODS, describe_selection)
    attach(sections, runs)  # each row's OOD avg against FT's: paired bootstrap interval from the stored predictions
    return Leaderboard(sections, records, unfinished, problems)


def leaderboard_markdown(runs: Path, assets: str | None = None, calibration: bool = False) -> tuple[str, int]:
    board = collect(runs)
    return board.markdown(runs, assets, calibration), len(board.records)


def write_leaderboard(runs: Path, out: Path, plots: bool = True, calibration: bool = False) -> Leaderboard:
    if not Path(runs).is_dir():
        raise BenchError(f"run store {runs} does not exist; run `bench run --method ft` first or pass --runs DIR")
    out = Path(out)
    assets_dir = out.parent / ASSETS
    board = collect(runs)
    sections = board.sections
    text = board.markdown(runs, ASSETS, calibration)
    try:
        assets_dir.mkdir(parents=True, exist_ok=True)
        rows = table_rows(sections)
        atomic_write_text(assets_dir / "results.csv", to_csv(rows))
        atomic_write_text(assets_dir / "results.json", results_json(sections))
        write_html(sections, assets_dir)  # index.html: the same tables, sortable, with interactive scatters
        if plots:
            from bench.leaderboard.plots import id_ood_plot, timing_plot

            for section in sections:
                slug = section_slug(section)
                id_ood_plot(section, assets_dir / f"{slug}-id-ood.png")
                timing_plot(section, assets_dir / f"{slug}-timing.png")
        atomic_write_text(out, text)
    except OSError as exc:
        raise BenchError(f"cannot write the leaderboard to {out} ({exc.strerror or exc}); pass --out with a writable path")
    return board
