"""The benchmark scripts run (on the CPU, with the tiny model), so they cannot rot; their figures are not asserted."""
import importlib.util
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load(name):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_throughput_runs_on_the_cpu_with_the_tiny_model(capsys):
    script = load("gpu_throughput")
    result = script.main(["--model", "bench-tinyclip", "--pretrained", "tinyshift", "--batches", "8", "--methods",
                          "ft", "lora", "kd-teacher", "--steps", "2", "--images", "16", "--workers", "0",
                          "--timed-batches", "1"])
    out = capsys.readouterr().out
    if not torch.cuda.is_available():
        assert out.startswith("No CUDA GPU on this machine: measuring on the CPU instead")
    rows = result["batches"]["8"]
    assert set(rows) == {"ft", "lora", "kd-teacher", "evaluation"}
    assert rows["ft"]["train"]["ratio_to_ft"] == 1.0 and all(0 < r["train"]["mfu"] for k, r in rows.items() if k != "evaluation")
    # a training step is forward + backward (~3x a forward); the teacher adds one more forward; LoRA skips the
    # frozen weights' gradients
    assert rows["evaluation"]["forward"]["tflops"] < rows["ft"]["train"]["tflops"] < rows["kd-teacher"]["train"]["tflops"]
    assert rows["lora"]["train"]["tflops"] < rows["ft"]["train"]["tflops"]
    assert result["input_cpu_decoding_images_per_s"]["0_workers"] > 0 and result["measured_matmul_peak_tflops"] > 0
    assert result["input_prepared_copy_images_per_s"]["0_workers"] > 0
    assert result["input_device_decoding_images_per_s"]["0_workers"] > 0  # the engine's --decode device path


@pytest.mark.parametrize("name", ["eval_cost", "step_cost", "testbed_leaderboard", "decode_once"])
def test_benchmark_scripts_import(name):
    assert callable(load(name).main)
