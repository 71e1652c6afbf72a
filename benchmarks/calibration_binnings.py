"""ECE of committed testbed runs under two binnings: ours (15 bins over (0, 1], whole split) and CaRot's official
one (`bench.methods.carot.carot_ece`: torchmetrics' 10 left-closed bins per batch of 512, weighted mean), both from
the stored probabilities of each run's reported variant.

    python benchmarks/calibration_binnings.py [--runs runs] [--methods carot flyp ft]
"""
import argparse
import json
from pathlib import Path

import numpy as np
import torch

from bench.methods.carot import carot_ece
from bench.protocols.tinyshift import TINYSHIFT
from bench.results.metrics import calibration_error


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", default="runs")
    parser.add_argument("--methods", nargs="+", default=["carot", "flyp", "ft"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args()
    for method in args.methods:
        rows = []
        for path in sorted(Path(args.runs, "tinyshift", method).glob("*/record.json")):
            record = json.loads(path.read_text())
            if record["seed"] not in args.seeds or (record.get("hparams_seed") or 0) != 0:
                continue
            stored = np.load(path.parent / record["predictions"]["file"])
            variant = record["reported_variant"]
            splits = [TINYSHIFT.id_test_split, *TINYSHIFT.ood_test_splits]  # ID first, then the OOD tests
            ours, theirs = [], []
            for split in splits:
                probs = torch.tensor(stored[f"probs|{variant}|{split}"].astype(np.float32))
                labels = torch.tensor(stored[f"labels|{split}"])
                ours.append(calibration_error(probs, labels))
                theirs.append(carot_ece(probs, labels))
            rows.append((ours[0], np.mean(ours[1:]), theirs[0], np.mean(theirs[1:])))
        if rows:
            mean = np.array(rows).mean(axis=0)
            print(f"{method:8s} {len(rows)} runs  ECE ID / OOD avg (%): ours {mean[0]:.1f} / {mean[1]:.1f}   "
                  f"CaRot's {mean[2]:.1f} / {mean[3]:.1f}")


if __name__ == "__main__":
    main()
