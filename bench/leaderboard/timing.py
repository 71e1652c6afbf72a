"""Timing tables: per method and device, means over seeds, each figure also as a ratio to FT on the same device.
Timings from different devices are never divided by each other. Per-step micro-benchmarks (pytest-benchmark JSON
saved in the run store under benchmarks/) are summarised the same way."""
from __future__ import annotations

import json
from pathlib import Path

from tabulate import tabulate

from bench.leaderboard.aggregate import TIMING_KEYS, Section

LABELS = {"train_s": "train s", "search_s": "search s", "eval_s": "eval s", "total_s": "total s",
          "train_images_per_s": "train images/s"}


def _with_ratio(value, reference, digits=1):
    if value is None:
        return "–"
    text = f"{value:.{digits}f}"
    if reference and round(reference, digits):  # no ratio to a reference that shows as 0 (FT's search: none)
        text += f" ({value / reference:.2f}×)"
    return text


def timing_table(section: Section) -> str:
    ft = {e.device: e for e in section.timing if e.method == section.roles.reference}
    headers = ["method", "n", *[LABELS[key] for key in TIMING_KEYS], "device-hours (all seeds)", "of which consumed runs",
               "peak memory MB", "device"]
    body = []
    for e in section.timing:
        ref = ft.get(e.device)
        body.append([e.label, str(e.n),
                     *[_with_ratio(e.means[key], ref and ref.means[key], 0 if key == "train_images_per_s" else 1)
                       for key in TIMING_KEYS],
                     _with_ratio(e.device_hours, ref and ref.device_hours, 4),
                     f"{e.input_hours:.4f}" if e.input_hours else "–",
                     _with_ratio(e.peak_mb, ref and ref.peak_mb, 0), e.device])
    return tabulate(body, headers=headers, tablefmt="github", disable_numparse=True)


def load_step_benchmarks(runs: Path) -> list[dict]:
    """pytest-benchmark files saved as <runs>/benchmarks/*.json: one entry per method and machine."""
    out = []
    for path in sorted((Path(runs) / "benchmarks").glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        machine = data.get("machine_info", {})
        device = f"{machine.get('cpu', {}).get('brand_raw', machine.get('processor', '?'))}"
        device = data.get("bench_device", device)
        for bench in data.get("benchmarks", []):
            method = bench.get("params", {}).get("method")
            if method:
                out.append({"method": method, "device": device, "mean_ms": bench["stats"]["mean"] * 1000,
                            "min_ms": bench["stats"]["min"] * 1000, "rounds": bench["stats"]["rounds"],
                            "file": path.name})
    return out


def step_benchmark_table(entries: list[dict], reference: str | None) -> str:
    ft = {(e["device"], e["file"]): e["mean_ms"] for e in entries if e["method"] == reference}
    headers = ["method", "ms / step (mean)", "ms / step (min)", "rounds", "ratio to FT", "device", "file"]
    body = []
    for e in sorted(entries, key=lambda e: (e["file"], e["device"], e["mean_ms"])):
        ref = ft.get((e["device"], e["file"]))
        body.append([e["method"], f"{e['mean_ms']:.1f}", f"{e['min_ms']:.1f}", str(e["rounds"]),
                     f"{e['mean_ms'] / ref:.2f}×" if ref else "–", e["device"], e["file"]])
    return tabulate(body, headers=headers, tablefmt="github", disable_numparse=True)
