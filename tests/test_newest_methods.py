"""The defining computation of VRF, SPD, CaRot and R-Adapter on hand-made tensors, and what each run records."""
import copy
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from bench.methods.carot import CaRot, carot_ece, clip_terms, ema_momentum, orthogonality, self_distillation
from bench.methods.radapter import RAdapter, StochasticAdapter, add_adapters, merge_adapters, mpm_nce
from bench.methods.spd import AdamSPD, spd_ratio
from bench.methods.vrf import VarianceReduction, fit_temperature, kth_distance, mean_confidence, mixing_weight
from bench.results.metrics import calibration_error
from conftest import run_with_inputs, stored_records


def t(*values):
    return torch.tensor(values, dtype=torch.float32)


# --- SPD ------------------------------------------------------------------------------------------------------------

def adam_step(m, v, g, step, lr, b1=0.9, b2=0.999, eps=1e-8):
    m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
    return m, v, lr * (m / (1 - b1**step)) / (math.sqrt(v / (1 - b2**step)) + eps)


def test_spd_decays_only_a_tensor_whose_gradient_points_back_to_its_anchor_by_its_growth_share():
    p = nn.Parameter(t(3.0, 4.0))  # 5 away from its anchor at 0
    opt = AdamSPD([{"params": [p], "anchors": [torch.zeros(2)]}], lr=1.0, weight_decay=0.5)
    # step 1: g = -1 (descent moves away from the anchor): c = -sum(g * (p - 0)) = 7 >= 0, plain Adam
    p.grad = t(-1.0, -1.0)
    opt.step()
    m, v, d = adam_step(0.0, 0.0, -1.0, 1, 1.0)
    assert torch.allclose(p.detach(), t(3.0 - d, 4.0 - d))
    before = p.detach().clone()
    # step 2: g = 0.1 (descent points back): c = -0.1 * (4 + 5) < 0, but momentum still carries p outward
    p.grad = t(0.1, 0.1)
    opt.step()
    _, _, d = adam_step(m, v, 0.1, 2, 1.0)
    candidate = before - d
    ratio = (candidate.norm() - before.norm()) / candidate.norm()
    assert d < 0 and 0 < ratio < 1
    assert torch.allclose(p.detach(), candidate - 0.5 * ratio * candidate, atol=1e-6)


def test_spd_with_lambda_one_keeps_a_decayed_tensors_distance_and_never_decays_a_first_step():
    anchor = t(1.0, -2.0, 0.5)
    p = nn.Parameter(anchor.clone())
    opt = AdamSPD([{"params": [p], "anchors": [anchor]}], lr=0.1, weight_decay=1.0)
    p.grad = t(1.0, 1.0, -1.0)  # at the anchor: c = 0, no decay, whatever the gradient
    opt.step()
    assert torch.allclose(p.detach() - anchor, t(-0.1, -0.1, 0.1), atol=1e-6)
    distance = (p.detach() - anchor).norm()
    p.grad = t(-1e-3, -1e-3, 1e-3)  # along the displacement (descent points back to the anchor): c < 0
    assert float(-(p.grad * (p.detach() - anchor)).sum()) < 0
    opt.step()  # momentum still moves outward; lambda = 1 removes all of the growth
    assert torch.allclose((p.detach() - anchor).norm(), distance, atol=1e-6)


def test_spd_ratio_is_clamped_and_zero_at_the_anchor():
    assert torch.allclose(spd_ratio(t(2.0, 1.0, 0.0, 4.0), t(1.0, 3.0, 0.0, 0.0)), t(0.5, 0.0, 0.0, 1.0))


# --- CaRot ----------------------------------------------------------------------------------------------------------

def test_carot_orthogonality_is_the_frobenius_norm_not_its_square():
    w = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])  # W^T W = diag(1, 4): W^T W - I = diag(0, 3)
    assert float(orthogonality(w)) == pytest.approx(3.0)


def test_carot_self_distillation_sums_both_directions_of_soft_cross_entropy():
    uniform = torch.zeros(2, 2)
    teacher = torch.tensor([[3.0, -1.0], [0.0, 2.0]])
    # a uniform student costs log 2 per row and direction, whatever the teacher: 2 log 2
    assert float(self_distillation((uniform, uniform), (teacher, teacher.T))) == pytest.approx(2 * math.log(2))
    s = torch.tensor([[0.0, math.log(3.0)]])  # student p = (1/4, 3/4); teacher q = (1, 0) by a large margin
    q = torch.tensor([[50.0, 0.0]])
    assert float(self_distillation((s, s), (q, q))) == pytest.approx(2 * math.log(4.0), rel=1e-5)


def test_carot_contrastive_term_is_open_clips_clip_loss():
    from open_clip import ClipLoss

    gen = torch.Generator().manual_seed(0)
    image = nn.functional.normalize(torch.randn(5, 4, generator=gen), dim=-1)
    text = nn.functional.normalize(torch.randn(5, 4, generator=gen), dim=-1)
    loss, per_image, per_text = clip_terms(image, text, torch.tensor(20.0))
    assert torch.allclose(loss, ClipLoss()(image, text, torch.tensor(20.0)))
    assert torch.allclose(per_text, per_image.T)


def test_carot_teacher_momentum_ramps_linearly_then_holds():
    assert ema_momentum(0, 100, 0.05, 0.9, 0.2) == pytest.approx(0.05)
    assert ema_momentum(10, 100, 0.05, 0.9, 0.2) == pytest.approx(0.475)
    assert ema_momentum(20, 100, 0.05, 0.9, 0.2) == 0.9 and ema_momentum(77, 100, 0.05, 0.9, 0.2) == 0.9


def test_carot_teacher_is_updated_every_ema_every_steps_from_step_zero():
    student = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        student.weight.fill_(2.0)
    method = CaRot({"ema_every": 2, "m_start": 0.05, "m_end": 0.9, "m_warmup": 0.2},
                   SimpleNamespace(protocol=SimpleNamespace(steps=100)))
    method._teacher = copy.deepcopy(student).requires_grad_(False)
    with torch.no_grad():
        method._teacher.weight.fill_(0.0)
    model = SimpleNamespace(clip=student)
    method.step = 0
    method.after_step(model)  # m = 0.05: 0.05 * 0 + 0.95 * 2
    assert float(method._teacher.weight) == pytest.approx(1.9)
    method.step = 1  # not a multiple of 2: unchanged
    method.after_step(model)
    assert float(method._teacher.weight) == pytest.approx(1.9)
    method.step = 10  # m = 0.475
    method.after_step(model)
    assert float(method._teacher.weight) == pytest.approx(0.475 * 1.9 + 0.525 * 2.0)
    assert float(method.train_state()["teacher"]["weight"]) == float(method._teacher.weight)  # resumes with it


def test_carot_ece_binning_beside_ours():
    # A: confidence 0.91, right; B: 0.95, wrong. CaRot (10 bins [0.9, 1.0) together): |0.5 - 0.93| = 43%.
    # Ours (15 bins over (0, 1]: A in (0.867, 0.933], B in (0.933, 1]): (0.09 + 0.95) / 2 = 52%.
    probs, labels = torch.tensor([[0.91, 0.09], [0.95, 0.05]]), torch.tensor([0, 1])
    assert carot_ece(probs, labels) == pytest.approx(43.0, abs=1e-4)
    assert calibration_error(probs, labels) == pytest.approx(52.0, abs=1e-4)
    # per evaluation batch: batches of one put A and B in bins of their own, weighted by size: 52% again
    assert carot_ece(probs, labels, batch_size=1) == pytest.approx(52.0, abs=1e-4)
    # a confidence of exactly 1 has a bin of its own in torchmetrics' binning (not the top bin's)
    probs, labels = torch.tensor([[1.0, 0.0], [0.95, 0.05]]), torch.tensor([0, 0])
    assert carot_ece(probs, labels) == pytest.approx(100 * (0.0 + 0.05) / 2, abs=1e-4)


# --- R-Adapter ------------------------------------------------------------------------------------------------------

def test_mpm_nce_smooths_onto_negatives_and_adds_a_margin_to_them():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    labels = torch.tensor([0, 1])
    eps, margin, scale = 0.02, 0.05, torch.tensor(100.0)
    # negatives +100 * 0.05 = 5: row [2, 5]; targets (1 - eps, eps)
    log_z = 5 + math.log(1 + math.exp(-3))
    row = -(1 - eps) * (2 - log_z) - eps * (5 - log_z)
    assert float(mpm_nce(logits, logits.T, labels, labels, scale, margin, eps)) == pytest.approx(row, rel=1e-6)
    # same class: both columns positive, no margin, half the (1 - eps) mass on each
    same = torch.tensor([0, 0])
    assert float(mpm_nce(logits, logits.T, same, same, scale, margin, eps)) == pytest.approx(
        -(1 - eps) * 0.5 * ((2 - (2 + math.log(1 + math.exp(-2)))) + (0 - (2 + math.log(1 + math.exp(-2))))), rel=1e-6)


def blocks(width=8):
    from open_clip.transformer import ResidualAttentionBlock

    torch.manual_seed(0)
    return nn.Sequential(ResidualAttentionBlock(width, 2), ResidualAttentionBlock(width, 2))


def test_r_adapter_eval_forward_is_the_merged_plain_block():
    model = blocks()
    adapters = add_adapters(model, drop_path=0.2, eval_scale=0.5)
    assert len(adapters) == 4 and not any(p.requires_grad for n, p in model.named_parameters() if "ls_" not in n)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for a in adapters:
            a.ema_weight.copy_(torch.randn(8, 8, generator=gen) * 0.3)
            a.ema_scale.fill_(0.7)
    x = torch.randn(3, 5, 8, generator=gen)
    merged = merge_adapters(model.eval())
    assert not any(isinstance(m, StochasticAdapter) for m in merged.modules())
    assert torch.allclose(model(x), merged(x), atol=1e-5)
    first = model[0]  # W_o <- (I + 0.5 s W) W_o
    a = torch.eye(8) + 0.5 * 0.7 * first.ls_1.ema_weight
    assert torch.allclose(merged[0].attn.out_proj.weight, a @ first.attn.out_proj.weight, atol=1e-6)
    assert torch.allclose(merged[0].attn.out_proj.bias, a @ first.attn.out_proj.bias, atol=1e-6)


def test_r_adapter_drops_token_positions_for_the_whole_batch_and_draws_again_the_same():
    adapter = StochasticAdapter(4, drop_path=0.5, eval_scale=0.5, token_dim=1, index=3)
    with torch.no_grad():
        adapter.weight.copy_(torch.eye(4))
        adapter.scale.fill_(1.0)
    adapter.draw = (0, 7)
    x = torch.ones(2, 16, 4)
    out = adapter(x)  # x + mask * x: 1 where dropped, 1 + 2 = 3 where kept (scaled by 1 / (1 - p))
    assert set(out.unique().tolist()) == {1.0, 3.0}
    assert torch.equal(out[0], out[1])  # one mask for the batch, per token position
    assert torch.equal(adapter(x), out)  # the same (seed, step) draws the same mask
    adapter.draw = (0, 8)
    assert not torch.equal(adapter(x), out)


def test_r_adapter_ema_moves_each_adapter_toward_its_weights():
    adapter = StochasticAdapter(2, drop_path=0.0, eval_scale=0.5, token_dim=1, index=0)
    with torch.no_grad():
        adapter.weight.fill_(2.0)
        adapter.scale.fill_(0.3)
    method = RAdapter({"ema": 0.75}, None)
    method._adapters = [adapter]
    method.after_step(None)
    assert torch.allclose(adapter.ema_weight, torch.full((2, 2), 0.5))
    assert torch.allclose(adapter.ema_scale, t(0.75 * 0.1 + 0.25 * 0.3))


# --- VRF ------------------------------------------------------------------------------------------------------------

def test_vrf_distance_is_the_squared_l2_to_the_kth_nearest_failure():
    bank = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    x = torch.tensor([[1.0, 0.0]])
    assert kth_distance(x, bank, 1).tolist() == [0.0]
    assert kth_distance(x, bank, 2).tolist() == pytest.approx([2.0])
    assert kth_distance(x, bank, 3).tolist() == pytest.approx([4.0])
    assert kth_distance(x, bank[:0], 0).tolist() == [math.inf]  # no failures: w = 0, the zero-shot prediction
    assert float(mixing_weight(kth_distance(x, bank[:0], 0), 1.5, 0.6)) == 0.0


def test_vrf_weight_is_a_falling_sigmoid_of_the_distance():
    assert float(mixing_weight(t(1.5), 1.5, 0.6)) == pytest.approx(0.5)
    assert float(mixing_weight(t(1.5 + 0.6 * math.log(3)), 1.5, 0.6)) == pytest.approx(0.25)


def test_vrf_temperature_makes_mean_confidence_the_accuracy():
    logits = torch.tensor([[4.0, 0.0, 0.0], [3.0, 1.0, 0.0], [0.0, 5.0, 0.0], [2.0, 0.0, 1.0]])
    labels = torch.tensor([0, 1, 1, 2])  # accuracy 0.5; confidence at T = 1 is above it
    temperature = fit_temperature(logits, labels)
    assert temperature > 1 and abs(mean_confidence(logits, temperature) - 0.5) <= 1e-3
    overconfident = fit_temperature(logits, torch.tensor([0, 0, 1, 0]))  # accuracy 1: T below 1
    assert overconfident < 1 and abs(mean_confidence(logits, overconfident) - 1.0) <= 1e-3


class Fixed(nn.Module):
    def __init__(self, features, logits):
        super().__init__()
        self._features, self._logits = features, logits
        self.head = lambda f: self._logits

    def features(self, images):
        return self._features

    def forward(self, images):
        return self._logits


def test_vrf_mixes_the_two_models_probabilities_per_example():
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # example 0 is on the failure, example 1 at distance 2
    zs, ft = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([[0.0, 3.0], [1.0, 0.0]])
    model = VarianceReduction(Fixed(features, zs), Fixed(features, ft), torch.tensor([[1.0, 0.0]]), k=1, a=1.5, b=0.6,
                              t_zs=2.0, t_ft=0.5)
    out = model(torch.zeros(2, 3)).exp()
    for i, d in enumerate((0.0, 2.0)):
        w = 1 / (1 + math.exp((d - 1.5) / 0.6))
        expected = (1 - w) * (zs[i] / 2.0).softmax(0) + w * (ft[i] / 0.5).softmax(0)
        assert torch.allclose(out[i], expected, atol=1e-6)


# --- whole runs -----------------------------------------------------------------------------------------------------

def test_vrf_and_r_adapter_record_what_they_did(store):
    run_with_inputs("vrf", store)
    run_with_inputs("r-adapter", store)
    run_with_inputs("zeroshot", store)
    records = {r["method"]: r for r in stored_records(store)}
    vrf = records["vrf"]["method_info"]["vrf"]
    assert vrf["input"] == records["ft"]["run_id"] and 1 <= vrf["k"] <= vrf["failures"] <= vrf["train_size"]  # testbed
    assert vrf["k"] == min(max(1, round(1000 * vrf["failures"] / vrf["train_size"])), vrf["failures"])
    assert vrf["temperature_zs"] > 0 and vrf["temperature_ft"] > 0
    assert set(records["vrf"]["variants"]) == {"final"}  # one model: no weight-space variants
    assert set(records["vrf"]["data_access"]["train"]) == {"train", "id_val"}  # all it read before the seal
    info = records["r-adapter"]["method_info"]
    assert info["adapters"] % 2 == 0 and info["trainable_params"] % (info["adapters"] // 2) == 0
    # theta_0 of "+WE" is the merge of the initial (zero) EMA adapters: exactly the zero-shot model
    start = records["r-adapter"]["variants"]["alpha=0"]["summary"]
    zeroshot = records["zeroshot"]["variants"]["final"]["summary"]
    assert start["id"] == pytest.approx(zeroshot["id"]) and start["ood_avg"] == pytest.approx(zeroshot["ood_avg"])


@pytest.mark.parametrize("method", ["carot", "r-adapter"])
def test_an_interrupted_ema_method_resumes_to_the_uninterrupted_numbers(tmp_path, method):
    """CaRot's teacher (its train_state) and R-Adapter's EMA adapters and DropPath draws survive a resume."""
    from bench.runner import RunRequest, execute
    from conftest import TINY

    request = RunRequest(method=method, out=tmp_path / "a", settings=list(TINY) + ["ema_every=2"] * (method == "carot"))
    with pytest.raises(KeyboardInterrupt):
        execute(request, stop_after=3)
    resumed, status = execute(request)
    assert status == "done" and resumed["timing"]["resumed_from_step"] == 3
    fresh, _ = execute(RunRequest(method=method, out=tmp_path / "b", settings=request.settings))
    assert resumed["metrics"] == fresh["metrics"] and resumed["history"] == fresh["history"]
