import pytest
import torch

from bench.errors import BenchError
from bench.weights import interpolate


def test_interpolation_endpoints_are_exact_and_midpoint_is_the_mean():
    g = torch.Generator().manual_seed(0)
    a = {"w": torch.randn(5, 3, generator=g), "b": torch.randn(3, generator=g), "n": torch.tensor(4)}
    b = {"w": torch.randn(5, 3, generator=g), "b": torch.randn(3, generator=g), "n": torch.tensor(4)}
    assert all(torch.equal(interpolate(a, b, 0.0)[k], a[k]) for k in a)
    assert all(torch.equal(interpolate(a, b, 1.0)[k], b[k]) for k in a)
    mid = interpolate(a, b, 0.5)
    assert torch.allclose(mid["w"], (a["w"] + b["w"]) / 2)
    assert torch.allclose(interpolate(a, b, 0.3)["b"], 0.7 * a["b"] + 0.3 * b["b"])


def test_interpolation_refuses_mismatches():
    with pytest.raises(BenchError, match="different tensors"):
        interpolate({"a": torch.zeros(1)}, {"b": torch.zeros(1)}, 0.5)
    with pytest.raises(BenchError, match="shapes"):
        interpolate({"a": torch.zeros(1)}, {"a": torch.zeros(2)}, 0.5)
    with pytest.raises(BenchError, match="disagree"):
        interpolate({"a": torch.tensor(1)}, {"a": torch.tensor(2)}, 0.5)
