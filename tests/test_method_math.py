import math

import numpy as np
import pytest
import torch

from bench.methods.l2sp import l2sp_penalty
from bench.methods.lp import fit_linear_probe
from bench.engine.trainer import cosine_factor


def test_l2sp_penalty_and_gradient_by_hand():
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    w0 = torch.tensor([0.5, -1.0])
    h = torch.tensor([3.0, -4.0], requires_grad=True)
    value = l2sp_penalty([w], [w0], [h], alpha=0.1, beta=0.01)
    # 0.1/2 * (0.5^2 + 3^2) + 0.01/2 * (9 + 16) = 0.4625 + 0.125
    assert value.item() == pytest.approx(0.5875)
    value.backward()
    assert torch.allclose(w.grad, torch.tensor([0.05, 0.3]))  # alpha * (w - w0)
    assert torch.allclose(h.grad, torch.tensor([0.03, -0.04]))  # beta * h


def test_cosine_schedule_values():
    assert cosine_factor(0, 2, 6) == 0.5
    assert cosine_factor(1, 2, 6) == 1.0
    assert cosine_factor(2, 2, 6) == 1.0
    assert cosine_factor(4, 2, 6) == pytest.approx(0.5)
    assert cosine_factor(5, 2, 6) == pytest.approx(0.5 * (1 + math.cos(3 * math.pi / 4)))


def _blobs(rng, n, flip=False):
    y = rng.integers(0, 3, n)
    x = rng.normal(size=(n, 4)) * 1.5
    x[np.arange(n), y] += 1.0
    return x.astype(np.float32), (2 - y if flip else y)


def test_linear_probe_picks_c_by_id_val_only():
    rng = np.random.default_rng(0)
    tx, ty = _blobs(rng, 150)
    vx, vy = _blobs(rng, 80)
    grid = np.logspace(-4, 2, 12)
    w, b, c, curve = fit_linear_probe(tx, ty, vx, vy, 3, grid)
    accs = [acc for _, acc in curve]
    assert c == curve[int(np.argmax(accs))][0]  # the first C with the best ID-val accuracy
    assert w.shape == (3, 4) and b.shape == (3,)
    pred = (torch.from_numpy(vx) @ w.T + b).argmax(1).numpy()
    assert (pred == vy).mean() * 100 == pytest.approx(max(accs))
    # the choice follows the validation labels: scrambled ones pick by a different curve
    _, _, _, curve2 = fit_linear_probe(tx, ty, vx, rng.permutation(vy), 3, grid)
    assert [a for _, a in curve2] != accs


def test_linear_probe_standardises_by_one_overall_mean_and_std():
    """Kumar et al. fit on (x - m) / s with scalar m, s from the training features, so the C sweep is the same
    for any affine rescaling of the features, and the returned weights act on the raw features."""
    rng = np.random.default_rng(2)
    tx, ty = _blobs(rng, 120)
    vx, vy = _blobs(rng, 60)
    grid = np.logspace(-3, 1, 6)
    w, b, c, curve = fit_linear_probe(tx, ty, vx, vy, 3, grid)
    k, shift = 1e-3, 7.0  # unit-norm CLIP features are tiny: unstandardised, the grid would mean other C values
    w2, b2, c2, curve2 = fit_linear_probe(tx * k + shift, ty, vx * k + shift, vy, 3, grid)
    assert c2 == c and [a for _, a in curve2] == pytest.approx([a for _, a in curve], abs=1e-9)
    logits = torch.from_numpy(vx) @ w.T + b
    logits2 = torch.from_numpy(vx * k + shift).float() @ w2.T + b2
    assert torch.allclose(logits, logits2, atol=1e-3)  # the mapped-back head is the same classifier


def test_linear_probe_pads_classes_absent_from_train():
    rng = np.random.default_rng(1)
    tx, ty = _blobs(rng, 90)
    keep = ty != 1
    w, b, _, _ = fit_linear_probe(tx[keep], ty[keep], tx, ty, 3, [1.0])
    assert torch.count_nonzero(w[1]) == 0 and b[1] == 0
    assert torch.count_nonzero(w[0]) > 0


def test_expected_calibration_error_by_hand():
    """4 examples, 2 classes: two at confidence 0.9 (one right), two at 0.6 (both right). Bins (0.8, 0.867]...:
    ECE = 0.5 * |0.5 - 0.9| + 0.5 * |1.0 - 0.6| = 0.4, i.e. 40 %."""
    from bench.results.metrics import classification_metrics, expected_calibration_error

    def logits_for(p):
        return [math.log(p), math.log(1 - p)]

    logits = torch.tensor([logits_for(0.9), logits_for(0.9), logits_for(0.6), logits_for(0.6)])
    labels = torch.tensor([0, 1, 0, 0])
    assert expected_calibration_error(logits, labels) == pytest.approx(40.0, abs=1e-4)
    assert classification_metrics(logits, labels) == pytest.approx({"acc": 75.0, "ece": 40.0}, abs=1e-4)
    perfect = torch.tensor([[0.0, -100.0], [-100.0, 0.0]])  # confidence 1, always right
    assert expected_calibration_error(perfect, torch.tensor([0, 1])) == pytest.approx(0.0, abs=1e-6)
