"""GPU benchmark: per-step cost, images/s and MFU of each method at real scale, and the input pipeline.

    python benchmarks/gpu_step_cost.py [--model ViT-B-16] [--batch 256] [--steps 20] [--out FILE]

Model: CLIP ViT-B/16 (224 px) with random weights (no hub needed), bf16 autocast (the engine's GPU path), fused
AdamW, batch 256 (the WILDS protocols' batch). One step = the method's loss, backward, clipping where the method
clips, optimiser step, through the same `training_step` the trainer runs, on one batch already on the GPU (so the
step's compute alone is timed). FLOPs per step are counted once with torch's FlopCounterMode; MFU = FLOPs /
time / the chip's dense bf16 peak. The input pipeline is timed separately: JPEG files decoded with the protocols'
training preprocessing (RandomResizedCrop 224, bicubic) through bench's DataLoader path with N workers. A check
that a resumed run on CUDA finishes (its best state on the model's device) runs last.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

METHODS = ["ft", "l2sp", "l1sp", "kd", "kd-teacher", "lora", "ftp", "flyp", "autoft"]
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense bf16 tensor-core peaks (vendor figures)


def peak_flops() -> float | None:
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def time_steps(step, steps: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def step_flops(step) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return float(counter.get_total_flops())


def methods_table(model: str, batch: int, steps: int, methods: list[str]) -> dict:
    import step_cost  # noqa: F401  registers kd-teacher (KD with the teacher's forward every step)
    from bench.benchmarking import training_step_fn

    settings = [f"batch_size={batch}"]
    out = {}
    for method in methods:
        step = training_step_fn(method, settings=settings, model=model, pretrained=None, device="cuda",
                                fixed_batch=True, sync=False)
        torch.cuda.reset_peak_memory_stats()
        seconds = time_steps(step, steps)
        flops = step_flops(step)
        peak = peak_flops()
        out[method] = {"ms_per_step": round(seconds * 1e3, 2), "images_per_s": round(batch / seconds, 1),
                       "tflops_per_step": round(flops / 1e12, 3),
                       "mfu": round(flops / seconds / peak, 4) if peak else None,
                       "peak_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2)}
        print(method, out[method], flush=True)
        del step
        torch.cuda.empty_cache()
    ft = out["ft"]["ms_per_step"]
    for values in out.values():
        values["ratio_to_ft"] = round(values["ms_per_step"] / ft, 3)
    return out


def input_pipeline(batch: int, workers: list[int], images: int, timed_batches: int = 24) -> dict:
    """Decoded training images per second through bench's on-disk path (FileSplit + DataLoader)."""
    import numpy as np
    from PIL import Image

    from bench.datasets.transforms import FileSplit, clip_transform
    from bench.engine.batches import train_batches
    from bench.models import ModelInfo

    folder = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    paths = []
    for i in range(images):  # iWildCam-like JPEGs (camera traps are larger; this is a lower bound on decode cost)
        path = folder / f"{i:05d}.jpg"
        Image.fromarray(rng.integers(0, 255, (375, 500, 3), dtype=np.uint8)).save(path, quality=90)
        paths.append(path)
    info = ModelInfo("ViT-B-16", None, "quick_gelu", 224, (0.48, 0.46, 0.41), (0.27, 0.26, 0.28), None)
    split = FileSplit(paths, [0] * len(paths), clip_transform(info, train=True))
    out = {}
    for n in workers:
        stream = train_batches(split, batch, 0, 0, torch.device("cuda"), n)
        for _ in range(2 * max(n, 1) + 1):  # workers start and fill their prefetch queues: not timed
            next(stream)
        count, start = 0, time.perf_counter()
        for _ in range(timed_batches):  # the steady state, well past anything prefetched
            x, _ = next(stream)
            count += len(x)
        torch.cuda.synchronize()
        out[f"{n}_workers"] = round(count / (time.perf_counter() - start), 1)
        print("input pipeline", n, "workers:", out[f"{n}_workers"], "images/s", flush=True)
    return out


def resume_on_cuda() -> str:
    """A WiSE-FT run interrupted after its best checkpoint and resumed on CUDA finishes (issue: theta1 on the CPU)."""
    from bench.runner import RunRequest, execute

    store = Path(tempfile.mkdtemp())
    request = RunRequest(method="wiseft", out=store, device="cuda",
                         settings=["steps=6", "eval_every=3", "batch_size=32", "warmup=2"])
    try:
        execute(request, stop_after=3)
    except KeyboardInterrupt:
        pass
    record, status = execute(request)
    return f"{status}, resumed from step {record['timing']['resumed_from_step']}, {len(record['variants'])} variants"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="ViT-B-16")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--images", type=int, default=1536)
    parser.add_argument("--workers", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "gpu_step_cost.json"))
    parser.add_argument("--input-only", action="store_true", help="only the input pipeline")
    parser.add_argument("--methods", nargs="+", default=METHODS, help="a subset (ft always runs: the ratios' base)")
    parser.add_argument("--no-input", action="store_true", help="skip the input pipeline and the resume check")
    args = parser.parse_args()
    assert torch.cuda.is_available(), "this benchmark needs a CUDA GPU"
    result = {"device": torch.cuda.get_device_name(), "argv": " ".join(__import__("sys").argv[1:]), "torch": torch.__version__, "python": platform.python_version(),
              "cpu_cores": os.cpu_count(), "model": f"{args.model} (random weights), bf16 autocast, fused AdamW",
              "batch": args.batch, "steps_timed": args.steps,
              "command": "python benchmarks/gpu_step_cost.py", "peak_bf16_tflops": (peak_flops() or 0) / 1e12}
    if not args.input_only:
        methods = ["ft"] + [m for m in args.methods if m != "ft"]
        result["methods"] = methods_table(args.model, args.batch, args.steps, methods)
    if not args.no_input:
        result["input_pipeline_images_per_s"] = input_pipeline(args.batch, args.workers, args.images)
    if not args.input_only and not args.no_input:
        result["resume_on_cuda"] = resume_on_cuda()
        print("resume on cuda:", result["resume_on_cuda"])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
