"""The feature-protection study's methods: L1-SP's penalty, KD's distillation terms and teacher cache, LoRA's
adapters, merge and weight ensembling, each on hand-made tensors or against an independent computation."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.engine.run import build_engine, build_method
from bench.methods.kd import feature_distillation, logit_distillation
from bench.methods.l1sp import l1sp_penalty
from bench.methods.lora import LoRAAttention, LoRALinear, add_adapters, merge_adapters
from bench.models import load_clip
from bench.runner import RunRequest, plan
from conftest import run_method


def built(method, tmp_path, settings=()):
    request = RunRequest(method=method, out=tmp_path / "runs", settings=list(settings))
    p = plan(request)
    engine = build_engine(p, request, None)
    m = build_method(p, engine)
    return m, m.build(), engine


def test_l1sp_penalty_and_gradient_by_hand():
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    w0 = torch.tensor([0.5, 3.0])
    h = torch.tensor([3.0, -4.0], requires_grad=True)
    value = l1sp_penalty([w], [w0], [h], lam=0.1, beta=0.01)
    # 0.1 * (0.5 + 1.0) + 0.01/2 * (9 + 16)
    assert value.item() == pytest.approx(0.15 + 0.125)
    value.backward()
    assert torch.allclose(w.grad, torch.tensor([0.1, -0.1]))  # lam * sign(w - w0), whatever |w - w0|
    assert torch.allclose(h.grad, torch.tensor([0.03, -0.04]))  # beta * h


def test_l1sp_penalty_has_zero_subgradient_at_the_anchor_and_sums_over_tensors():
    ws = [torch.zeros(3, requires_grad=True), torch.ones(2, 2, requires_grad=True)]
    anchors = [torch.zeros(3), torch.full((2, 2), -1.0)]
    value = l1sp_penalty(ws, anchors, [], lam=2.0, beta=0.0)
    assert value.item() == pytest.approx(2.0 * 8.0)  # only the second tensor moved: 4 entries by 2
    value.backward()
    assert torch.equal(ws[0].grad, torch.zeros(3)) and torch.equal(ws[1].grad, torch.full((2, 2), 2.0))


def test_logit_distillation_by_hand():
    student = torch.zeros(1, 2, requires_grad=True)
    teacher = torch.tensor([[math.log(3.0), 0.0]])
    t1 = logit_distillation(student, teacher, 1.0)
    assert t1.item() == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5))  # KL([.75, .25] || [.5, .5])
    t2 = logit_distillation(student, teacher, 2.0)
    p = math.sqrt(3) / (math.sqrt(3) + 1)  # softmax([ln 3 / 2, 0])
    assert t2.item() == pytest.approx(4 * (p * math.log(2 * p) + (1 - p) * math.log(2 * (1 - p))))
    t2.backward()
    assert torch.allclose(student.grad, torch.tensor([[2 * (0.5 - p), 2 * (p - 0.5)]]))  # T (p_s - p_t)
    # averaged over the batch, not over batch x classes
    pair = logit_distillation(torch.zeros(2, 2), teacher.repeat(2, 1), 1.0)
    assert pair.item() == pytest.approx(t1.item())
    assert logit_distillation(teacher, teacher, 3.0).item() == pytest.approx(0.0, abs=1e-7)


def test_feature_distillation_by_hand():
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    t = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    assert feature_distillation(s, t).item() == pytest.approx((2.0 + 0.0) / 2)


@pytest.mark.parametrize("kind", ["logits", "features"])
def test_kd_teacher_table_equals_the_teacher_forward_and_starts_at_cross_entropy(kind, tmp_path):
    method, model, engine = built("kd", tmp_path, [f"kind={kind}"])
    assert method._table is not None  # the testbed's training inputs are in memory: deterministic
    train = engine.read("train")
    idx = torch.tensor([5, 0, 17, 3])
    method.batch_indices = idx
    cached = method._teacher_outputs(train.images[idx])
    method.batch_indices = None
    direct = method._teacher_outputs(train.images[idx])
    assert torch.allclose(cached, direct, atol=1e-5)
    with torch.no_grad():  # the student starts as the teacher: the distillation term is 0 at step 0
        loss = method.loss(model, train.images[idx], train.labels[idx])
        assert loss.item() == pytest.approx(F.cross_entropy(model(train.images[idx]), train.labels[idx]).item(),
                                            abs=1e-5)


@pytest.fixture(scope="module")
def tower():
    return load_clip("bench-tinyclip", "tinyshift")[0].visual.eval()


def test_lora_starts_exactly_at_the_pretrained_tower_and_trains_only_adapters(tower):
    x = torch.randn(3, 3, 32, 32)
    adapted = copy.deepcopy(tower)
    assert add_adapters(adapted, {"q", "k", "v", "out", "fc", "proj"}, 4, 8.0, 0.0, seed=0) == 6 * len(
        tower.transformer.resblocks)
    assert torch.equal(adapted.eval()(x), tower(x))  # B = 0
    adapted.train()
    adapted(x).sum().backward()
    trained = {n for n, p in adapted.named_parameters() if p.grad is not None}
    assert trained and all(n.split(".")[-1] in ("A", "B") for n in trained)
    assert all(p.grad is None for n, p in adapted.named_parameters() if n.split(".")[-1] not in ("A", "B"))


def test_lora_attention_equals_multihead_attention_with_merged_weights():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, batch_first=True).eval()
    gen = torch.Generator().manual_seed(1)
    from bench.methods.lora import LowRank

    adapters = {t: LowRank(8, 8, 2, 4.0, 0.0, gen) for t in "qv"}
    lora = LoRAAttention(mha, adapters, LowRank(8, 8, 2, 4.0, 0.0, gen)).eval()
    with torch.no_grad():
        for adapter in [*adapters.values(), lora.out_proj.adapter]:
            adapter.B.normal_(std=0.3)
    x = torch.randn(2, 5, 8)
    merged = lora.merged().eval()
    assert torch.allclose(lora(x, x, x)[0], merged(x, x, x, need_weights=False)[0], atol=1e-5)
    # merged by hand: the q block gains 2 B A, k is untouched
    expected_q = mha.in_proj_weight[:8] + 2.0 * adapters["q"].B @ adapters["q"].A
    assert torch.allclose(merged.in_proj_weight[:8], expected_q)
    assert torch.equal(merged.in_proj_weight[8:16], mha.in_proj_weight[8:16])


def test_lora_merge_keeps_the_plain_structure_and_output(tower):
    adapted = copy.deepcopy(tower)
    add_adapters(adapted, {"q", "k", "v", "out", "fc", "proj"}, 4, 8.0, 0.1, seed=0)
    with torch.no_grad():
        for name, p in adapted.named_parameters():
            if name.endswith(".B"):
                p.normal_(std=0.05)
    merged = merge_adapters(adapted)
    assert list(merged.state_dict()) == list(tower.state_dict())
    assert not any(isinstance(m, (LoRAAttention, LoRALinear)) for m in merged.modules())
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(adapted.eval()(x), merged.eval()(x), atol=1e-4)
    assert not torch.allclose(merged(x), tower(x), atol=1e-3)  # the adapters did change the function


def test_lora_weight_ensemble_endpoints_are_zero_shot_and_the_merged_model(tmp_path):
    lora, _ = run_method("lora", tmp_path / "runs")
    zs, _ = run_method("zeroshot", tmp_path / "runs")
    assert lora["variants"]["alpha=0"]["metrics"] == zs["metrics"]
    assert lora["variants"]["alpha=1"]["metrics"] == lora["variants"]["final"]["metrics"]
    assert lora["method_info"]["trainable_params"] < lora["method_info"]["total_params"] / 5
