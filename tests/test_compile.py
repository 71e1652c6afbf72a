"""`--compile`: the image tower trains under torch.compile (in place, so checkpoints and weights are the eager
model's), agrees with the eager run, falls back to eager where a graph does not compile, and is off by default on
the CPU. Inductor's own code generation takes minutes on this CPU, so the suite compiles with dynamo's aot_eager
backend (the same graph capture and autograd tracing, eager kernels); inductor's figures are in docs/performance.md."""
import pytest
import torch

from bench.cli import main
from conftest import run_method

SETTINGS = ["steps=4", "eval_every=2", "batch_size=16", "warmup=1"]


def _run(store, monkeypatch, mode, backend="aot_eager"):
    monkeypatch.setenv("BENCH_COMPILE_BACKEND", backend)
    return run_method("ft", store, settings=SETTINGS, base_settings=False, compile=mode)[0]


def test_a_compiled_run_agrees_with_the_eager_run(tmp_path, monkeypatch):
    eager = _run(tmp_path / "eager", monkeypatch, "auto")  # auto on the CPU: eager
    compiled = _run(tmp_path / "compiled", monkeypatch, "on")
    assert eager["timing"]["compiled"] is False and compiled["timing"]["compiled"] is True
    assert compiled["run_id"] == eager["run_id"]  # how it was computed is not what was computed
    assert compiled["selection"]["best_step"] == eager["selection"]["best_step"]
    for split, metrics in eager["metrics"].items():
        assert compiled["metrics"][split]["acc"] == pytest.approx(metrics["acc"], abs=0.5)  # fp32: a few flips at most


class _Refused(Exception):
    pass


def test_a_graph_that_does_not_compile_runs_eagerly_with_the_eager_numbers(tmp_path, monkeypatch):
    import torch._dynamo as dynamo

    def refuse(graph, example_inputs):
        raise _Refused("this backend compiles nothing")

    dynamo.reset()
    dynamo.register_backend(refuse, name="bench_test_refuse")
    eager = _run(tmp_path / "eager", monkeypatch, "off")
    fallback = _run(tmp_path / "fallback", monkeypatch, "on", backend="bench_test_refuse")
    assert fallback["metrics"] == eager["metrics"] and fallback["predictions"]["sha256"] == eager["predictions"]["sha256"]
    assert dynamo.config.suppress_errors is False  # the run's fallback setting does not outlive it


def test_the_tower_is_eager_again_after_training_and_keeps_its_state_dict_keys(monkeypatch):
    from bench.engine.compiling import compiled_tower
    from bench.models.classifier import ImageClassifier

    monkeypatch.setenv("BENCH_COMPILE_BACKEND", "aot_eager")
    model = ImageClassifier(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4)), torch.nn.Linear(4, 3))
    keys = list(model.state_dict())
    with compiled_tower(model, True) as compiled:
        assert compiled and model.visual._compiled_call_impl is not None
        assert list(model.state_dict()) == keys  # in place: no _orig_mod. prefix in checkpoints
        model(torch.randn(2, 3, 2, 2)).sum().backward()
    assert model.visual._compiled_call_impl is None


def test_an_unknown_compile_mode_is_refused_in_one_line(tmp_path, capsys):
    assert main(["run", "--method", "ft", "--compile", "maybe", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "maybe" in err and "Traceback" not in err and not any(tmp_path.iterdir())


def test_training_attention_runs_through_scaled_dot_product_attention(monkeypatch):
    """The engine's own training step reaches torch's fused attention (flash / memory-efficient kernels on CUDA)
    in every block of the image tower, with gradients: open_clip's attention asks for no weights, so
    multi_head_attention_forward takes the SDPA path instead of materialising the attention matrix. (ViT-B/16
    with random weights, the same open_clip block: 12 calls of 12 blocks, checked once; 40 s, so not here.)"""
    import torch.nn.functional as F

    from bench.benchmarking import training_step_fn

    step = training_step_fn("ft", settings=["batch_size=2"], fixed_batch=True, device="cpu")
    calls = []
    fused = F.scaled_dot_product_attention

    def spy(q, *args, **kwargs):
        calls.append(q.requires_grad)
        return fused(q, *args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    loss = step()
    assert torch.isfinite(loss) and calls == [True] * 3  # the testbed tower's 3 blocks
