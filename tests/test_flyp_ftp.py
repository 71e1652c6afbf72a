import copy
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from bench.methods.flyp import FLYP, CLIPClassifier, class_prompt_tokens, contrastive_loss, sample_captions
from bench.methods.ftp import AdamP, row_l1
from bench.models import load_clip, open_clip_module
from bench.models.classifier import ImageClassifier, linear_head, zero_shot_weights

CLASSES = ("zero", "one", "two")
TEMPLATES = ("a photo of the number {}.", "a sketch of the number {}.")


def test_contrastive_loss_is_symmetric_infonce_by_hand():
    g = torch.Generator().manual_seed(0)
    img = F.normalize(torch.randn(5, 8, generator=g), dim=-1)
    txt = F.normalize(torch.randn(5, 8, generator=g), dim=-1)
    scale = torch.tensor(7.0)
    logits = scale * img @ txt.T
    by_rows = -torch.stack([logits[i, i] - torch.logsumexp(logits[i], 0) for i in range(5)]).mean()
    by_cols = -torch.stack([logits[i, i] - torch.logsumexp(logits[:, i], 0) for i in range(5)]).mean()
    assert contrastive_loss(img, txt, scale).item() == pytest.approx(((by_rows + by_cols) / 2).item(), rel=1e-6)


@pytest.fixture(scope="module")
def tiny():
    clip, info = load_clip("bench-tinyclip", "tinyshift")
    tokens = class_prompt_tokens(open_clip_module().get_tokenizer("bench-tinyclip"), CLASSES, TEMPLATES)
    return clip, tokens


def test_text_head_equals_the_zero_shot_head_until_the_text_tower_changes(tiny):
    clip, tokens = tiny
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    model = CLIPClassifier(copy.deepcopy(clip), tokens).eval()
    weights = zero_shot_weights(clip, open_clip_module().get_tokenizer("bench-tinyclip"), CLASSES, TEMPLATES, "cpu")
    reference = ImageClassifier(copy.deepcopy(clip.visual), linear_head(weights)).eval()
    with torch.no_grad():
        assert torch.allclose(model(images), reference(images), atol=1e-4)
        before = model(images)
        state = model.state_dict()
        state["clip.token_embedding.weight"] = state["clip.token_embedding.weight"] + 0.5 * torch.randn_like(state["clip.token_embedding.weight"])
        model.load_state_dict(state)  # a new text tower must give a new head
        assert not torch.allclose(model(images), before, atol=1e-3)


def test_flyp_loss_reaches_the_text_tower_and_temperature(tiny):
    clip, tokens = tiny
    model = CLIPClassifier(copy.deepcopy(clip), tokens).train()
    method = FLYP({}, SimpleNamespace(seed=0))
    method.step = 3
    loss = method.loss(model, torch.randn(6, 3, 32, 32), torch.tensor([0, 1, 2, 0, 1, 2]))
    loss.backward()
    assert model.clip.token_embedding.weight.grad.abs().sum() > 0
    assert model.clip.transformer.resblocks[0].attn.in_proj_weight.grad.abs().sum() > 0
    assert model.clip.logit_scale.grad is not None and model.clip.logit_scale.grad != 0
    assert model.clip.visual.conv1.weight.grad.abs().sum() > 0


def test_captions_are_one_template_per_image_and_reproducible_per_step(tiny):
    _, tokens = tiny
    labels = torch.tensor([0, 1, 2, 2, 1, 0, 0, 1])
    a = sample_captions(tokens, labels, seed=0, step=5)
    assert torch.equal(a, sample_captions(tokens, labels, seed=0, step=5))
    assert any(not torch.equal(a, sample_captions(tokens, labels, seed=0, step=s)) for s in range(6, 10))
    for caption, label in zip(a, labels):
        assert any(torch.equal(caption, tokens[label, t]) for t in range(len(TEMPLATES)))


def _toy(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))


def _batches(n=40):
    g = torch.Generator().manual_seed(3)
    return [(torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)) for _ in range(n)]


def test_ftp_keeps_every_row_within_its_radius_after_every_step():
    model = _toy()
    pretrained = [p.detach().clone() for p in model[0].parameters()]
    opt = AdamP([{"params": list(model[0].parameters()), "anchors": pretrained},
                 {"params": list(model[2].parameters()), "anchors": None}], lr=0.05)
    moved_head = False
    head0 = model[2].weight.detach().clone()
    for x, y in _batches():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        for p, w0 in zip(model[0].parameters(), pretrained):
            gamma = opt.state[p]["gamma"]
            assert (row_l1(p.detach() - w0) - 1e-8 <= gamma * (1 + 1e-5) + 1e-7).all()
        moved_head |= not torch.allclose(model[2].weight, head0)
    assert moved_head  # the excluded head is trained without projection
    assert any(opt.state[p]["gamma"] > 1e-6 for p in model[0].parameters())  # radii grow from 1e-8


def test_ftp_first_step_stays_at_the_anchor():
    model = _toy()
    anchor = [p.detach().clone() for p in model.parameters()]
    opt = AdamP([{"params": list(model.parameters()), "anchors": anchor}], lr=0.1)
    x, y = _batches(1)[0]
    F.cross_entropy(model(x), y).backward()
    opt.step()
    for p, a in zip(model.parameters(), anchor):
        assert row_l1(p.detach() - a).max() <= 1e-6  # gamma = 1e-8 plus float32 rounding; unprojected Adam moves ~0.1


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_ftp_without_projection_is_adamw_step_for_step(weight_decay):
    a, b = _toy(), _toy()
    anchors = [p.detach().clone() for p in a.parameters()]
    ftp = AdamP([{"params": list(a.parameters()), "anchors": anchors}], lr=0.01, weight_decay=weight_decay, project=False)
    adamw = torch.optim.AdamW(b.parameters(), lr=0.01, weight_decay=weight_decay, foreach=False)
    for x, y in _batches(15):
        for model, opt in ((a, ftp), (b, adamw)):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        for p, q in zip(a.parameters(), b.parameters()):
            assert torch.allclose(p, q, atol=1e-6, rtol=1e-5)


def test_official_per_dataset_settings_of_flyp_and_autoft():
    """FLYP's README: ImageNet lr 1e-5; AutoFT's imagenet.sh: base lr 1e-5, 100 inner steps, no clipping;
    its iwildcam.sh/fmow.sh clip. Elsewhere the protocol's values stand (the testbed's runs keep their hashes)."""
    from types import SimpleNamespace

    from bench.config import resolve_hparams
    from bench.methods.autoft import AutoFT
    from bench.protocols.imagenet import IMAGENET
    from bench.protocols.tinyshift import TINYSHIFT
    from bench.protocols.wilds import IWILDCAM

    assert IMAGENET.lr == 3e-5
    assert resolve_hparams(FLYP, IMAGENET, {})["lr"] == 1e-5
    assert resolve_hparams(FLYP, TINYSHIFT, {})["lr"] == TINYSHIFT.lr
    hp = resolve_hparams(AutoFT, IMAGENET, {})
    assert (hp["base_lr"], hp["inner_steps"]) == (1e-5, 100)
    hp = resolve_hparams(AutoFT, IWILDCAM, {})
    assert (hp["base_lr"], hp["inner_steps"]) == (1e-5, 10)
    assert AutoFT({}, SimpleNamespace(protocol=IMAGENET)).clip_gradients is False
    assert AutoFT({}, SimpleNamespace(protocol=IWILDCAM)).clip_gradients is True


def test_ftp_projects_a_1d_tensor_as_one_row_and_does_not_clip():
    """The official `_mars_norm` sums over dims 1.. ; for a 1-D tensor that is the whole vector (one norm)."""
    from bench.methods.ftp import FTP, row_dot

    v = torch.tensor([3.0, -4.0, 1.0])
    assert row_l1(v).shape == (1,) and row_l1(v).item() == pytest.approx(8.0 + 1e-8)
    assert row_dot(v, torch.ones(3)).tolist() == [0.0]
    m = torch.tensor([[1.0, -2.0], [3.0, 0.0]])
    assert row_l1(m).flatten().tolist() == pytest.approx([3.0, 3.0])
    assert FTP.clip_gradients is False
