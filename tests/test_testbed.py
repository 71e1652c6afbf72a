"""The embedded testbed: deterministic, disjoint, shipped weights intact, and informative by design."""
import json

import numpy as np
import pytest
import torch

from bench.testbed import data
from bench.testbed.render import STYLES, load_digits, render
from bench.models import ASSET_DIR, load_clip, sha256_file
from bench.models.classifier import zero_shot_weights


def test_partition_is_disjoint_and_sized():
    parts = data.partition()
    assert {k: len(v) for k, v in parts.items()} == data.PARTITION
    all_idx = np.concatenate(list(parts.values()))
    assert len(np.unique(all_idx)) == len(all_idx) == 1797


def test_rendering_is_deterministic_per_seed_and_styles_differ():
    images8, _ = load_digits()
    x = torch.from_numpy(images8[:16])
    a = render(x, "sketch", torch.Generator().manual_seed(5))
    b = render(x, "sketch", torch.Generator().manual_seed(5))
    c = render(x, "sketch", torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (16, 3, 32, 32) and a.min() >= 0 and a.max() <= 1
    means = [render(x, s, torch.Generator().manual_seed(0)).mean().item() for s in STYLES]
    assert len({round(m, 3) for m in means}) == len(STYLES)


def test_splits_have_the_declared_roles():
    assert data.SPLITS["train"][1] == data.ID_STYLE == "photo"
    assert data.SPLITS["ood_val"][1] == "clipart"
    assert set(data.OOD_TEST_STYLES).isdisjoint({"photo", "clipart"})
    from bench.protocols.tinyshift import TINYSHIFT

    assert TINYSHIFT.ood_test_splits == data.OOD_TEST_STYLES  # the protocol (data) names the renderer's test styles
    images, labels = data.render_split("id_val")
    assert images.shape == (200, 3, 32, 32) and set(labels.tolist()) == set(range(10))


def test_shipped_weights_match_their_sha256_and_card():
    weights = ASSET_DIR / "tinyclip-tinyshift.safetensors"
    recorded = (ASSET_DIR / "tinyclip-tinyshift.sha256").read_text().split()[0]
    card = json.loads((ASSET_DIR / "tinyclip-tinyshift.json").read_text())
    assert sha256_file(weights) == recorded == card["sha256"]


@pytest.fixture(scope="module")
def zero_shot_accuracy():
    from bench.models import open_clip_module

    clip, info = load_clip("bench-tinyclip", "tinyshift")
    head = zero_shot_weights(clip, open_clip_module().get_tokenizer("bench-tinyclip"), data.CLASSNAMES, data.TEMPLATES, "cpu")
    mean, std = torch.tensor(info.mean).view(1, 3, 1, 1), torch.tensor(info.std).view(1, 3, 1, 1)
    out = {}
    with torch.no_grad():
        for split in ["id_test", *data.OOD_TEST_STYLES]:
            images, labels = data.render_split(split)
            feats = torch.nn.functional.normalize(clip.encode_image((images - mean) / std), dim=-1)
            out[split] = float(((feats @ head.T).argmax(1) == labels).float().mean()) * 100
    return out


def test_zero_shot_is_well_above_chance_and_below_ceiling(zero_shot_accuracy):
    assert 30 <= zero_shot_accuracy["id_test"] <= 85
    ood = [zero_shot_accuracy[s] for s in data.OOD_TEST_STYLES]
    assert 25 <= sum(ood) / len(ood) <= 85
    assert min(ood) > 15  # every OOD domain is known to the pretrained model (chance is 10 %)
