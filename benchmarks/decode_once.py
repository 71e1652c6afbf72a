"""The decode-once evaluation's speed-up: a WiSE-FT run (12 variants: the fine-tune and 11 alphas) on an
iWildCam-layout folder of 500x375 JPEGs, evaluated one model per pass over the data (BENCH_EVAL_MODELS_AT_ONCE=1,
the pre-decode-once path) and all variants per decoded batch (the default). Same metrics, asserted.

    python benchmarks/decode_once.py [--out FILE]

The tiny testbed model (32 px) keeps the forward cheap, so the figure is the decoding share a real run saves.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def folder_of_photos(root: Path) -> Path:
    from PIL import Image

    from fixtures import make_iwildcam  # the test fixture's layout and metadata, then camera-trap-sized images

    make_iwildcam(root)
    rng = np.random.default_rng(0)
    for path in sorted((root / "iwildcam_v2.0" / "train").glob("*.jpg")):
        Image.fromarray(rng.integers(0, 255, (375, 500, 3), dtype=np.uint8)).save(path, quality=90)
    return root


def one_run(data: Path, store: Path, models_at_once: str | None) -> dict:
    from bench.runner import RunRequest, execute

    if models_at_once:
        os.environ["BENCH_EVAL_MODELS_AT_ONCE"] = models_at_once
    else:
        os.environ.pop("BENCH_EVAL_MODELS_AT_ONCE", None)
    request = RunRequest(method="wiseft", dataset="iwildcam", data_root=data, model="bench-tinyclip",
                         pretrained="tinyshift", out=store, settings=["steps=1", "eval_every=1", "batch_size=8",
                                                                      "warmup=1", "eval_batch_size=16"])
    start = time.perf_counter()
    record, _ = execute(request)
    return {"eval_s": round(record["timing"]["eval_s"], 2), "eval_passes": record["timing"]["eval_passes"],
            "total_s": round(time.perf_counter() - start, 2), "variants": record["variants"]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = Path(tempfile.mkdtemp())
    data = folder_of_photos(work / "data")
    per_model = one_run(data, work / "one", "1")
    at_once = one_run(data, work / "all", None)
    assert per_model["variants"] == at_once["variants"], "decode-once changed the metrics"
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "command": "python benchmarks/decode_once.py",
              "one_model_per_pass": {k: v for k, v in per_model.items() if k != "variants"},
              "all_variants_per_pass": {k: v for k, v in at_once.items() if k != "variants"},
              "eval_speedup": round(per_model["eval_s"] / at_once["eval_s"], 2)}
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
