"""The defining computation of each newer method on hand-made tensors (soups, Model Stock, TPGM, LiNeS, Lipsum-FT),
which runs each one takes from the store, and the engine's part: kept weights, read back only by a run's consumers."""
import hashlib
import math
from pathlib import Path

import pytest
import torch

from bench.engine.access import ProtocolViolation
from bench.errors import BenchError
from bench.methods import METHODS, Method
from bench.methods.lines import layer_scales, lines_scaled
from bench.methods.lipsum import energy_gap, random_texts
from bench.methods.modelstock import model_stock, stock_ratio
from bench.methods.soups import greedy_soup, uniform_soup
from bench.methods.tpgm import Projection, distance, learn_projection
from conftest import stored_records, run_method


def t(*values):
    return torch.tensor(values, dtype=torch.float32)


# --- model soups ----------------------------------------------------------------------------------------------------

def test_uniform_soup_is_the_plain_mean_of_every_tensor():
    states = [{"w": t(1.0, 2.0), "step": torch.tensor(3)}, {"w": t(3.0, 6.0), "step": torch.tensor(3)},
              {"w": t(8.0, 1.0), "step": torch.tensor(3)}]
    soup = uniform_soup(3, lambda i: states[i])
    assert torch.allclose(soup["w"], t(4.0, 3.0)) and soup["step"] == 3
    states[2]["step"] = torch.tensor(4)  # integer tensors must agree
    with pytest.raises(BenchError, match="non-float tensor step"):
        uniform_soup(3, lambda i: states[i])


def test_greedy_soup_adds_best_first_only_on_strict_improvement():
    # ingredient values and their own scores; a soup's score is made to be -|mean - 5|
    values, scores = [0.0, 5.0, 9.0, 7.0], [1.0, 4.0, 2.0, 3.0]
    evaluated = []

    def evaluate(state):
        value = float(state["w"][0])
        evaluated.append(value)
        return -abs(value - 5.0) + 4.0  # the soup of ingredient 1 alone would score exactly its own 4.0

    soup, kept, tried = greedy_soup(scores, lambda i: {"w": t(values[i])}, evaluate)
    # order by score: 1 (4.0), 3 (3.0), 2 (2.0), 0 (1.0); start from ingredient 1 (value 5, bar 4.0, not re-scored)
    assert evaluated[0] == pytest.approx(6.0)  # mean(5, 7): score 3.0 < 4.0, rejected
    assert evaluated[1] == pytest.approx(7.0)  # mean(5, 9): 2.0, rejected
    assert evaluated[2] == pytest.approx(2.5)  # mean(5, 0): 1.5, rejected
    assert kept == [1] and float(soup["w"][0]) == 5.0
    assert tried == [pytest.approx(1.5), None, pytest.approx(2.0), pytest.approx(3.0)]


def test_greedy_soup_keeps_an_improving_ingredient_and_refuses_a_tie():
    values, scores = [10.0, 2.0, 6.0], [3.0, 2.0, 1.0]
    targets = iter([4.0, 3.0])  # candidate scores in the order tried: mean(10, 2) = 6 -> 4.0 kept; then a tie

    soup, kept, tried = greedy_soup(scores, lambda i: {"w": t(values[i])}, lambda state: next(targets))
    assert kept == [0, 1] and float(soup["w"][0]) == pytest.approx(6.0)  # running mean of 10 and 2
    soup_tie, kept_tie, _ = greedy_soup([3.0, 2.0], lambda i: {"w": t(values[i])}, lambda state: 3.0)
    assert kept_tie == [0] and float(soup_tie["w"][0]) == 10.0  # equal is not better


# --- Model Stock ----------------------------------------------------------------------------------------------------

def test_model_stock_ratio_by_hand():
    assert float(stock_ratio(t(1.0, 0.0), t(0.0, 1.0))) == pytest.approx(0.0)  # orthogonal updates: pretrained
    assert float(stock_ratio(t(1.0, 0.0), t(2.0, 0.0))) == pytest.approx(1.0)  # same direction: the average
    c = 1 / math.sqrt(2)
    assert float(stock_ratio(t(1.0, 1.0), t(1.0, 0.0))) == pytest.approx(2 * c / (c + 1))
    assert float(stock_ratio(t(0.0, 0.0), t(1.0, 0.0))) == pytest.approx(0.0)  # no update: 0 / eps


def test_model_stock_merges_each_tensor_with_its_own_ratio():
    w0 = {"a": t(0.0, 0.0), "b": t(1.0, 1.0), "n": torch.tensor(7)}
    w1 = {"a": t(1.0, 1.0), "b": t(2.0, 1.0), "n": torch.tensor(7)}
    w2 = {"a": t(1.0, 0.0), "b": t(1.0, 2.0), "n": torch.tensor(7)}
    merged, ratios = model_stock(w0, w1, w2)
    c = 1 / math.sqrt(2)
    ra = 2 * c / (c + 1)
    assert ratios["a"] == pytest.approx(ra) and ratios["b"] == pytest.approx(0.0, abs=1e-7)
    assert torch.allclose(merged["a"], ra * t(1.0, 0.5))  # t (w1 + w2) / 2 + (1 - t) w0 with w0 = 0
    assert torch.allclose(merged["b"], w0["b"]) and merged["n"] == 7 and "n" not in ratios


# --- TPGM -------------------------------------------------------------------------------------------------------------

def test_tpgm_projection_starts_halfway_and_is_clamped_to_the_fine_tuned_model():
    theta0 = {"w": t(0.0, 0.0), "v": t(1.0, 1.0)}
    theta_ft = {"w": t(3.0, 4.0), "v": t(1.0, 1.0)}
    projection = Projection(theta0, theta_ft, "l2")
    assert float(projection.gamma[0].detach()) == pytest.approx(2.5)  # ||d|| / 2
    assert torch.allclose(projection()["w"], t(1.5, 2.0))
    with torch.no_grad():
        projection.gamma[0].fill_(100.0)
    assert torch.allclose(projection()["w"], t(3.0, 4.0)) and float(projection.gamma[0].detach()) == pytest.approx(5.0)
    assert torch.equal(projection()["v"], t(1.0, 1.0))  # no update: theta_0 whatever its radius


def test_tpgm_mars_distance_is_the_absolute_sum_of_each_row():
    d = torch.tensor([[1.0, -2.0], [0.5, 0.5]])
    assert torch.equal(distance(d, "mars"), torch.tensor([[3.0], [1.0]]))
    assert float(distance(t(1.0, -2.0), "mars")) == 3.0 and float(distance(d, "l2")) == pytest.approx(math.sqrt(5.5))


def test_tpgm_learns_to_pull_a_harmful_update_back_and_only_the_radii_move():
    model = torch.nn.Linear(2, 2, bias=False)
    theta0 = {"weight": torch.eye(2)}  # classifies x by its larger coordinate: right on the data below
    theta_ft = {"weight": torch.tensor([[0.0, 1.0], [1.0, 0.0]])}  # swapped: wrong everywhere
    projection = Projection(theta0, theta_ft, "l2")
    before = model.weight.detach().clone()
    images = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    labels = torch.tensor([0, 1])
    batches = iter([(images, labels)] * 30)
    losses = learn_projection(model, projection, batches, 30, lr=0.1)
    assert losses[-1] < losses[0] and float(projection.ratios()["weight"].detach()) < 0.5  # moved toward theta_0
    assert torch.equal(model.weight.detach(), before)  # the model's own parameters never get a step


# --- LiNeS ------------------------------------------------------------------------------------------------------------

def test_lines_scales_grow_linearly_with_depth():
    keys = ["visual.conv1.weight", "visual.transformer.resblocks.0.attn.in_proj_weight",
            "visual.transformer.resblocks.1.ln_1.bias", "visual.transformer.resblocks.2.mlp.c_fc.weight",
            "visual.ln_post.weight", "visual.proj", "head.weight"]
    scales = layer_scales(keys, alpha=0.2, beta=0.8)
    assert [scales[k] for k in keys] == pytest.approx([0.2, 0.2, 0.6, 1.0, 0.2, 0.2, 1.0])


def test_lines_applies_theta0_plus_scaled_update():
    theta0 = {"visual.transformer.resblocks.0.w": t(1.0), "visual.transformer.resblocks.1.w": t(1.0),
              "head.weight": t(0.0), "n": torch.tensor(2)}
    theta_ft = {"visual.transformer.resblocks.0.w": t(3.0), "visual.transformer.resblocks.1.w": t(3.0),
                "head.weight": t(4.0), "n": torch.tensor(2)}
    out = lines_scaled(theta0, theta_ft, 0.5, 0.5)
    assert float(out["visual.transformer.resblocks.0.w"]) == pytest.approx(2.0)  # 1 + 0.5 * 2
    assert float(out["visual.transformer.resblocks.1.w"]) == pytest.approx(3.0)  # 1 + 1.0 * 2
    assert float(out["head.weight"]) == pytest.approx(4.0) and out["n"] == 2
    same = lines_scaled(theta0, theta_ft, 1.0, 0.0)  # alpha = 1: the fine-tuned model
    assert all(torch.equal(same[k], theta_ft[k]) for k in theta0)


# --- Lipsum-FT --------------------------------------------------------------------------------------------------------

def test_random_texts_have_sot_random_ids_eot_and_padding():
    tokens = random_texts(80, 8, sot=49406, eot=49407, context=77, seed=3)
    assert tokens.shape == (80, 77)
    assert (tokens[:, 0] == 49406).all() and (tokens[:, 9] == 49407).all() and (tokens[:, 10:] == 0).all()
    body = tokens[:, 1:9]
    assert (body >= 0).all() and (body < 49406).all() and len(body.unique()) > 500  # spread over the vocabulary
    assert torch.equal(tokens, random_texts(80, 8, 49406, 49407, 77, seed=3))
    assert not torch.equal(tokens, random_texts(80, 8, 49406, 49407, 77, seed=4))


def test_energy_gap_by_hand():
    features, prior = t(1.0, 0.0).reshape(1, 2), t(0.0, 1.0).reshape(1, 2)
    texts = torch.eye(2)
    # source = 2 * [1, 0], target = 2 * [0, 1]; sum of squares 8, over 2M = 4
    assert float(energy_gap(features, prior, texts, torch.tensor(2.0))) == pytest.approx(2.0)
    two = torch.cat([features, prior])  # second image: equal to its prior, gap 0; mean over images
    assert float(energy_gap(two, torch.cat([prior, prior]), texts, torch.tensor(2.0))) == pytest.approx(1.0)


def test_lipsum_regulariser_is_zero_at_the_start_and_never_trains_the_text_tower(store):
    from bench.engine.batches import train_batches
    from bench.engine.run import build_engine, build_method
    from bench.runner import RunRequest, plan

    request = RunRequest(method="lipsum", out=store, settings=["texts=8"])
    p = plan(request)
    engine = build_engine(p, request, None)
    method = build_method(p, engine)
    model = method.build()
    images, labels = next(train_batches(engine.read("train"), 16, 0, 0, engine.device))
    method.step = 0
    loss = method.loss(model, images, labels)
    ce = torch.nn.functional.cross_entropy(model(images), labels)
    assert float(loss.detach()) == pytest.approx(float(ce.detach()), abs=1e-5)  # the fine-tuned tower starts at the pretrained one
    loss.backward()
    assert all(p.grad is None for p in method._clip.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.visual.parameters())


def test_lipsum_head_is_the_official_unit_prototypes_times_the_fixed_scale():
    """Lipsum-FT.py 186-187: logits = exp(logit_scale) * f @ W, W = unit-length prototypes, no bias; its AdamW step
    is the same size per entry as FT's, so relative to the head it is s times larger."""
    from bench.methods.lipsum import PrototypeHead

    scaled = torch.tensor([[3.0, 4.0], [0.0, 200.0]])  # FT's head: s * prototypes (here not yet unit-length)
    head = PrototypeHead(scaled, torch.tensor(100.0))
    assert torch.allclose(head.weight.detach(), torch.tensor([[0.6, 0.8], [0.0, 1.0]]))
    assert [name for name, _ in head.named_parameters()] == ["weight"]  # no bias; the scale is a buffer
    f = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    assert torch.allclose(head(f), torch.tensor([[60.0, 0.0], [100.0, 80.0]]))
    # one AdamW step (lr 1e-3, no decay) moves every entry by ~lr: a relative change of 1e-3, against 1e-5 for a
    # head that holds s * W, as FT's does
    plain = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        plain.weight.copy_(100.0 * head.weight)
    for module in (head, plain):
        optimiser = torch.optim.AdamW(module.parameters(), lr=1e-3, weight_decay=0.0)
        before = module.weight.detach().clone()
        module(f).sum().backward()
        optimiser.step()
        relative = ((module.weight.detach() - before).abs().max() / before.abs().max()).item()
        assert relative == pytest.approx(1e-3 if module is head else 1e-5, rel=1e-3)


def test_lipsum_evaluates_a_plain_head_with_the_same_logits(store):
    from bench.engine.run import build_engine, build_method
    from bench.methods.lipsum import PrototypeHead
    from bench.runner import RunRequest, plan

    request = RunRequest(method="lipsum", out=store, settings=["texts=8"])
    p = plan(request)
    method = build_method(p, build_engine(p, request, None))
    model = method.build()
    assert isinstance(model.head, PrototypeHead)
    plain = method.evaluation_model(model)
    assert isinstance(model.head, PrototypeHead) and type(plain.head) is torch.nn.Linear  # the model is unchanged
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(plain(images), model(images), atol=1e-4)
        zero_shot = method.ctx.zero_shot_classifier()
        assert torch.allclose(model(images), zero_shot(images), atol=1e-4)  # it starts as the zero-shot model


# --- which runs each consumer takes --------------------------------------------------------------------------------

def _runs(*pairs):
    return [{"run_id": f"r{s}{h}", "method": "ft", "seed": s, "hparams_seed": h, "hparams": {}, "selection": {}}
            for s, h in pairs]


def test_each_consumer_picks_its_runs():
    runs = _runs((0, 0), (0, 1), (0, 2), (1, 0), (2, 0), (3, 0))
    pick = lambda name, seed: [r["run_id"] for r in METHODS.get(name).pick_inputs(runs, {"seed": seed})]
    assert pick("soup-greedy", 0) == ["r00", "r01", "r02"] == pick("soup-uniform", 0)
    assert pick("modelstock", 0) == ["r00", "r10"] and pick("modelstock", 1) == ["r20", "r30"]
    assert pick("tpgm", 2) == ["r20"] == pick("lines", 2)
    with pytest.raises(BenchError, match="seeds 4 and 5"):
        pick("modelstock", 2)
    with pytest.raises(BenchError, match="1 found"):
        pick("soup-greedy", 1)
    with pytest.raises(BenchError, match="run `bench run --method ft --seed 7`"):
        pick("lines", 7)


# --- the engine's part ----------------------------------------------------------------------------------------------

def test_a_trained_run_keeps_its_selected_weights(store):
    from safetensors.torch import load_file

    record, _ = run_method("ft", store)
    from bench.store import RunStore

    folder = Path(store) / stored_records(store)[0]["path"]
    blob = (folder / record["weights"]["file"]).read_bytes()
    assert hashlib.sha256(blob).hexdigest() == record["weights"]["sha256"]
    state = load_file(folder / record["weights"]["file"])
    assert {k.split(".")[0] for k in state} == {"visual", "head"}
    zs, _ = run_method("zeroshot", store)
    assert "weights" not in zs  # nothing trained, nothing kept


def test_a_consumer_reads_its_inputs_weights_and_nothing_else(store):
    ft, _ = run_method("ft", store)
    other, _ = run_method("ft", store, seed=1)
    seen = {}

    class Reader(Method):
        consumes = ("ft",)
        trains = False
        hparams = {}

        @classmethod
        def pick_inputs(cls, runs, config):
            return [r for r in runs if r["seed"] == 0]

        def build(self):
            seen["inputs"] = [dict(r) for r in self.ctx.inputs]
            seen["state"] = self.ctx.input_state(ft["run_id"])
            with pytest.raises(ProtocolViolation, match="not an input"):
                self.ctx.input_state(other["run_id"])
            return super().build()

    METHODS.add("test-weights-reader", Reader)
    record, _ = run_method("test-weights-reader", store)
    assert record["config"]["inputs"] == [ft["run_id"]]
    assert set(seen["inputs"][0]) == {"run_id", "method", "seed", "hparams_seed", "hparams", "selection"}  # no path
    assert record["timing"]["inputs_total_s"] == {ft["run_id"]: ft["timing"]["total_s"]}
    assert set(seen["state"]) and all(isinstance(v, torch.Tensor) for v in seen["state"].values())


def test_a_consumer_of_runs_without_weights_or_with_changed_weights_fails_cleanly(store):
    from bench.store import RunStore

    ft, _ = run_method("ft", store)
    folder = Path(store) / stored_records(store)[0]["path"]
    weights = folder / "weights.safetensors"
    blob = weights.read_bytes()
    weights.write_bytes(blob[:-4] + b"\0\0\0\0")  # edited after the run
    with pytest.raises(BenchError, match="do not match its record"):
        run_method("lines", store)
    weights.unlink()  # as a run finished before weights were kept
    with pytest.raises(BenchError, match="has no saved weights"):
        run_method("lines", store)
    assert [r["method"] for r in stored_records(store)] == ["ft"]  # nothing of the failed runs stored


# --- reported rows beside ours ------------------------------------------------------------------------------------

def test_reported_soups_tpgm_and_lipsum_rows_sit_in_the_section_of_our_runs(tmp_path):
    from bench.leaderboard import leaderboard_markdown
    from bench.protocols.domainnet import DOMAINNET
    from bench.protocols.imagenet import IMAGENET
    from test_leaderboard import fill, real_dataset_record

    def ours(method, dataset, protocol, splits, arch):
        record = real_dataset_record(dataset, protocol, "acc", list(splits), arch=arch)
        record["method"] = record["config"]["method"] = method
        return record

    fill(tmp_path, [ours("tpgm", "imagenet", "imagenet-shifts@1", IMAGENET.ood_test_splits, "ViT-B-16"),
                    ours("lipsum", "imagenet", "imagenet-shifts@1", IMAGENET.ood_test_splits, "ViT-B-16"),
                    ours("soup-greedy", "imagenet", "imagenet-shifts@1", IMAGENET.ood_test_splits, "ViT-B-32"),
                    ours("lipsum", "domainnet", "domainnet@1", DOMAINNET.ood_test_splits, "ViT-B-16")])
    text, _ = leaderboard_markdown(tmp_path)
    sections = {part.splitlines()[0]: part for part in text.split("\n## ")[1:]}

    def section(dataset, arch):
        return next(body for title, body in sections.items() if title.startswith(dataset) and f"model {arch} " in title)

    b16, b32, dn = section("imagenet", "ViT-B-16"), section("imagenet", "ViT-B-32"), section("domainnet", "ViT-B-16")
    for body, ours_rows, reported in ((b16, ("tpgm", "lipsum"), ("TPGM", "Lipsum-FT")),
                                      (b32, ("soup-greedy",), ("greedy soup", "uniform soup (72 models)")),
                                      (dn, ("lipsum",), ("Lipsum-FT",))):
        lines = body.splitlines()
        assert all(any(line.startswith(f"| {m} ") for line in lines) for m in ours_rows)
        assert all(any(line.startswith(f"| reported: {r} ") for line in lines) for r in reported)
    assert "reported: greedy soup" not in b16 and "reported: TPGM" not in b32  # each model's own numbers only
    greedy = next(line for line in b32.splitlines() if line.startswith("| reported: greedy soup "))
    assert [c.strip() for c in greedy.split("|")[2:8]] == ["81.03", "69.55", "64.20", "27.89", "47.77", "44.90"]


def test_imagenet_r_a_and_objectnet_store_predictions_in_their_metrics_label_space(tmp_path):
    """Stored top-1 classes score the same accuracy as the split's metric (R/A over their class subset, ObjectNet
    over its class groups), so the paired bootstrap can recompute every ImageNet number."""
    from bench.datasets.imagenet import ImageNet
    from bench.models import load_clip
    from fixtures import make_imagenet_family

    ds = ImageNet(load_clip("bench-tinyclip", "tinyshift")[1], make_imagenet_family(tmp_path))
    generator = torch.Generator().manual_seed(0)
    for name in ("imagenet-r", "imagenet-a", "objectnet", "imagenet-v2"):
        labels = ds.split(name).labels
        logits = torch.randn(len(labels), 1000, generator=generator)
        top1 = ds.top1(name, logits)
        assert 100.0 * float((top1 == labels).float().mean()) == pytest.approx(ds.metrics(name, logits, labels)["acc"])
        if name != "imagenet-v2":  # the argmax over all 1000 classes is another prediction there
            assert not torch.equal(top1, logits.argmax(dim=1))


def test_a_consumer_takes_only_runs_of_its_own_budget(store):
    run_method("ft", store)  # steps=6
    with pytest.raises(BenchError, match="same budget settings.*none are in"):
        run_method("lines", store, settings=["steps=5", "eval_every=5", "batch_size=32", "warmup=2"], base_settings=False)


def test_the_timing_table_counts_each_consumed_run_once(tmp_path):
    from bench.leaderboard import leaderboard_markdown
    from test_leaderboard import fake_record, fill

    soups = []
    for seed, inputs in ((0, {"a": 100.0, "b": 200.0}), (1, {"b": 200.0, "c": 50.0})):  # run b feeds both seeds
        record = fake_record("soup-uniform", seed, 70.0, [40.0] * 5, hparams={})
        record["timing"]["inputs_total_s"] = inputs
        soups.append(record)
    fill(tmp_path, [fake_record("ft", 0, 70.0, [40.0] * 5), *soups])
    text, _ = leaderboard_markdown(tmp_path)
    timing = next(line for line in text.splitlines() if line.startswith("| soup-uniform ") and "cpu" in line)
    cells = [c.strip() for c in timing.split("|")]
    own = 3.5 + 4.5  # the two soups' total_s (fake_record: 3.5 + seed)
    assert cells[8].startswith(f"{(own + 350.0) / 3600:.4f}")  # device-hours: a, b, c once each
    assert cells[9] == f"{350.0 / 3600:.4f}"


def test_lines_with_a_fixed_alpha_applies_it_without_scoring_and_refuses_a_bad_one(store):
    from bench.store import RunStore

    run_method("ft", store)
    fixed, _ = run_method("lines", store, settings=["alpha=0.25"])
    chosen, _ = run_method("lines", store)
    assert fixed["method_info"]["lines"]["alpha"] == 0.25 and fixed["method_info"]["lines"]["id_val_by_alpha"] == {}
    assert len(chosen["method_info"]["lines"]["id_val_by_alpha"]) == 11 and fixed["run_id"] != chosen["run_id"]
    for bad in ("alpha=1.5", "alpha=best", "alpha=true"):
        with pytest.raises(BenchError, match="is not a LiNeS alpha"):
            run_method("lines", store, settings=[bad])
    assert len(stored_records(store)) == 3
