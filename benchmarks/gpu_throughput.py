"""GPU benchmark: training-step and evaluation throughput, MFU and peak memory of each method at the protocols'
batch sizes, and the input pipeline (CPU decoding with N workers, or JPEG decoding on the GPU).

    python benchmarks/gpu_throughput.py [--model ViT-B-16] [--batches 256 512] [--methods ft flyp ...]
        [--steps 20] [--workers 8 16] [--compile] [--no-input | --input-only] [--out FILE]

Model: an open_clip CLIP (ViT-B/16, 224 px, by default) with random weights (no hub), bf16 autocast on CUDA (the
engine's path), fused AdamW. One training step = the method's loss, backward, clipping where the method clips and
the optimiser step, through the same `training_step` the trainer runs, on one synthetic batch already on the device
(the step's compute alone). Evaluation = the classifier's forward under no_grad at the same batch. FLOPs are counted
once with torch's FlopCounterMode (2 per multiply-add); MFU = FLOPs / time / the device's *measured* bf16 matmul
peak (a large square matmul timed here, not a vendor figure). `--compile` wraps each model in torch.compile.
Input pipeline: synthetic 500x375 JPEGs through bench's on-disk path (FileSplit + DataLoader, RandomResizedCrop 224,
bicubic) with N workers; the same through the prepared copy (`bench data prepare`: pixels at 224 px, no decode);
and the same images read as bytes by the workers and decoded in batches on the device, crop and resize there too
(`bench run --decode device`: torchvision.io.decode_jpeg, nvJPEG on CUDA).

Without a GPU it says so in one line and measures on the CPU instead (the test suite runs it that way with the tiny
model, so the script cannot rot); such figures are not GPU figures.
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

import torch

METHODS = ["ft", "l2sp", "l1sp", "kd", "kd-teacher", "lora", "ftp", "flyp", "autoft", "lipsum", "spd", "carot",
           "r-adapter"]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measured_peak(device: torch.device, n: int = 8192, repeats: int = 20) -> float:
    """FLOP/s of a large square matmul in the training dtype (bf16 on CUDA, fp32 on the CPU)."""
    if device.type != "cuda":
        n, repeats = 512, 5
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    for _ in range(3):
        a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def timed(fn, device, steps: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return (time.perf_counter() - start) / steps


def flops_of(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return float(counter.get_total_flops())


def figures(fn, device, batch: int, steps: int, peak: float) -> dict:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seconds = timed(fn, device, steps)
    flops = flops_of(fn)
    return {"ms": round(seconds * 1e3, 2), "images_per_s": round(batch / seconds, 1),
            "tflops": round(flops / 1e12, 6), "mfu": round(flops / seconds / peak, 4),
            "peak_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.type == "cuda" else None}


def methods_table(model: str, pretrained, methods: list[str], batches: list[int], steps: int, device, peak: float,
                  compile_model: bool) -> dict:
    sys.path.insert(0, str(Path(__file__).parent))
    from step_cost import step_fn  # methods and labelled variants (kd-teacher: KD with the teacher's forward)

    from bench.benchmarking import eval_step_fn

    out = {}
    for batch in batches:
        settings = [f"batch_size={batch}"]
        rows = {}
        for method in methods:
            step = step_fn(method, settings=settings, model=model, pretrained=pretrained, device=device.type,
                                    fixed_batch=True, sync=False, compile_model=compile_model)
            rows[method] = {"train": figures(step, device, batch, steps, peak)}
            del step
            if device.type == "cuda":
                torch.cuda.empty_cache()
            print(batch, method, rows[method], flush=True)
        evaluate = eval_step_fn(settings=settings, model=model, pretrained=pretrained, device=device.type,
                                compile_model=compile_model)
        rows["evaluation"] = {"forward": figures(evaluate, device, batch, steps, peak)}
        print(batch, "evaluation", rows["evaluation"], flush=True)
        ft = rows[methods[0]]["train"]["ms"]
        for method in methods:
            rows[method]["train"]["ratio_to_" + methods[0]] = round(rows[method]["train"]["ms"] / ft, 3)
        out[str(batch)] = rows
    return out


def jpeg_folder(images: int) -> list[Path]:
    import numpy as np
    from PIL import Image

    folder = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    paths = []
    for i in range(images):  # iWildCam-like JPEGs (camera traps are larger: a lower bound on decode cost)
        path = folder / f"{i:05d}.jpg"
        Image.fromarray(rng.integers(0, 255, (375, 500, 3), dtype=np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def _training_split(paths, size: int = 224, prepared: bool = False):
    from bench.datasets.prepared import PreparedImages, prepare_split
    from bench.datasets.transforms import FileSplit, clip_transform
    from bench.models import ModelInfo

    info = ModelInfo("ViT-B-16", None, "quick_gelu", size, (0.48, 0.46, 0.41), (0.27, 0.26, 0.28), None)
    split = FileSplit(paths, [0] * len(paths), clip_transform(info, train=True))
    if prepared:  # the one-time copy `bench data prepare` makes, then read instead of the JPEGs
        root = Path(paths[0]).parent
        folder, _ = prepare_split(split, root, "synthetic", "train", size, workers=min(16, os.cpu_count() or 1))
        split.prepared = PreparedImages(folder)
    return split


INPUT_PATHS = {"cpu": "CPU decoding", "prepared": "reading the prepared copy", "device": "decoding on the device"}
INPUT_KEYS = {"cpu": "input_cpu_decoding_images_per_s", "prepared": "input_prepared_copy_images_per_s",
              "device": "input_device_decoding_images_per_s"}


def input_rate(paths, batch: int, workers: list[int], device, timed_batches: int, path: str = "cpu") -> dict:
    """Training images per second through bench's on-disk path (FileSplit + train_batches, RandomResizedCrop):
    JPEGs decoded by the loader workers (cpu), the prepared copy's pixels (prepared), or the bytes read by the
    workers and decoded on `device` (device: `bench run --decode device`)."""
    from bench.engine.batches import train_batches

    split = _training_split(paths, prepared=path == "prepared")
    out = {}
    for n in workers:
        stream = train_batches(split, batch, 0, 0, device, n, decode="device" if path == "device" else "loader")
        for _ in range(2 * max(n, 1) + 1):  # workers start and fill their prefetch queues: not timed
            next(stream)
        count, start = 0, time.perf_counter()
        for _ in range(timed_batches):  # the steady state, past anything prefetched
            count += len(next(stream)[0])
        sync(device)
        out[f"{n}_workers"] = round(count / (time.perf_counter() - start), 1)
        print(f"{INPUT_PATHS[path]},", n, "workers:", out[f"{n}_workers"], "images/s", flush=True)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="ViT-B-16")
    parser.add_argument("--pretrained", default=None, help="a tag or file; default: random weights")
    parser.add_argument("--batches", type=int, nargs="+", default=[256, 512], help="WILDS: 256, ImageNet: 512")
    parser.add_argument("--methods", nargs="+", default=METHODS, help="the first is the ratios' base")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--images", type=int, default=1536, help="JPEGs written for the input-pipeline test")
    parser.add_argument("--workers", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--timed-batches", type=int, default=24)
    parser.add_argument("--compile", action="store_true", help="torch.compile each model")
    parser.add_argument("--no-input", action="store_true", help="skip the input pipeline")
    parser.add_argument("--input-only", action="store_true", help="only the input pipeline (e.g. per core on a CPU)")
    parser.add_argument("--out", default=None, help="JSON file for the figures (default: print only)")
    args = parser.parse_args(argv)
    if torch.cuda.is_available():
        device = torch.device("cuda")
    else:
        print("No CUDA GPU on this machine: measuring on the CPU instead (these are not GPU figures).", flush=True)
        device = torch.device("cpu")
    peak = measured_peak(device)
    result = {"device": torch.cuda.get_device_name() if device.type == "cuda" else f"cpu ({platform.machine()})",
              "torch": torch.__version__, "python": platform.python_version(), "cpu_cores": os.cpu_count(),
              "model": f"{args.model} ({args.pretrained or 'random weights'})",
              "dtype": "bf16 autocast" if device.type == "cuda" else "fp32", "compile": args.compile,
              "command": "python benchmarks/gpu_throughput.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "measured_matmul_peak_tflops": round(peak / 1e12, 2)}
    print("measured matmul peak:", result["measured_matmul_peak_tflops"], "TFLOP/s", flush=True)
    def save():  # after every stage: a later stage that fails or runs out of time loses nothing measured
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(result, indent=1) + "\n")

    result["batches"] = {}
    for batch in [] if args.input_only else args.batches:
        result["batches"].update(methods_table(args.model, args.pretrained, args.methods, [batch], args.steps, device,
                                               peak, args.compile))
        save()
    if not args.no_input:
        paths = jpeg_folder(args.images)
        for path in INPUT_PATHS:  # the device path: decode_jpeg on the GPU (nvJPEG), or on the CPU without one
            result[INPUT_KEYS[path]] = input_rate(paths, args.batches[0], args.workers, device, args.timed_batches, path)
            save()
    return result


if __name__ == "__main__":
    main()
