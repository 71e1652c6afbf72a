"""`bench estimate`: GPU-hours from a step-cost file and the protocols' budgets, checked against hand-computed
prices; both benchmark file formats read; bad input exits 2 in one line."""
import json

import pytest

from bench.cli import main
from bench.estimate import DEFAULT_COSTS, estimate, load_costs

# iWildCam: 20 x 507 = 10,140 steps at batch 256, ID val (7,314) checked every 507 steps (20 checks), tested on
# id_test 8,154 + ood_test 42,791 = 50,945 images; 3 seeds.
STEPS, CHECKS, ID_VAL, TESTED = 10_140, 20, 7_314, 50_945


@pytest.fixture
def costs(tmp_path):
    path = tmp_path / "costs.json"  # the layout benchmarks/gpu_throughput.py --out writes
    path.write_text(json.dumps({
        "device": "Test GPU",
        "batches": {"256": {"ft": {"train": {"ms": 100.0}}, "autoft": {"train": {"ms": 200.0}},
                            "kd-teacher": {"train": {"ms": 150.0}},
                            "evaluation": {"forward": {"ms": 25.6, "images_per_s": 10_000.0}}}},
        "input_cpu_decoding_images_per_s": {"8_workers": 500.0, "16_workers": 800.0},
        "input_prepared_copy_images_per_s": {"16_workers": 1000.0}}))
    return load_costs(path)


def rows(est):
    return {(r.method, r.dataset): r for r in est.rows}


def test_prices_match_the_hand_computed_hours(costs):
    assert costs.decode_images_per_s == 1000.0 and costs.forward_images_per_s == 10_000.0 and costs.batch == 256
    got = rows(estimate(["ft", "wiseft", "autoft", "kd", "zeroshot", "lp"], ["iwildcam"], costs))
    decode = 1 / 1000  # slower than one model's forward (1 / 10,000 s), faster than 11 variants' (11 / 10,000 s)
    ft = got["ft", "iwildcam"]
    assert ft.train_h == pytest.approx(3 * STEPS * 0.1 / 3600)
    assert ft.eval_h == pytest.approx(3 * (CHECKS * ID_VAL + TESTED) * decode / 3600)
    assert ft.search_h == 0 and ft.inputs_h == 0 and ft.step_source == "measured"
    wise = got["wiseft", "iwildcam"]  # ft's step; 11 variants: forward-bound on the test splits
    assert wise.train_h == ft.train_h and wise.step_source == "as ft"
    assert wise.eval_h == pytest.approx(3 * (CHECKS * ID_VAL * decode + TESTED * 11 / 10_000) / 3600)
    auto = got["autoft", "iwildcam"]  # 30 trials x 10 inner steps, each trial scores 1,000 OOD-val images
    assert auto.train_h == pytest.approx(3 * STEPS * 0.2 / 3600)
    assert auto.search_h == pytest.approx(3 * 300 * 0.2 / 3600)
    assert auto.eval_h == pytest.approx(3 * (CHECKS * ID_VAL * decode + TESTED * 11 / 10_000 + 30_000 * decode) / 3600)
    assert got["kd", "iwildcam"].train_h == pytest.approx(3 * STEPS * 0.15 / 3600)  # priced at the teacher's step
    zs = got["zeroshot", "iwildcam"]
    assert zs.train_h == 0 and zs.eval_h == pytest.approx(3 * TESTED * decode / 3600) and zs.step_source == "no training"
    lp = got["lp", "iwildcam"]  # frozen features of train + ID val, then the test splits
    assert lp.eval_h == pytest.approx(3 * (129_809 + ID_VAL + TESTED) * decode / 3600)


def test_a_larger_protocol_batch_is_priced_linearly_and_unmeasured_steps_are_said(costs):
    est = estimate(["ft", "l1sp"], ["imagenet"], costs)
    got = rows(est)
    assert got["ft", "imagenet"].train_h == pytest.approx(3 * 24_820 * 0.2 / 3600)  # batch 512: 2 x 100 ms
    assert got["l1sp", "imagenet"].step_source == "assumed = ft"
    assert any("l1sp" in line and "priced as ft" in line for line in est.assumptions)
    assert est.totals()["imagenet"] == pytest.approx(sum(r.total_h for r in est.rows))


def test_soup_ingredients_are_charged_once_to_the_first_soup(costs):
    got = rows(estimate(["ft", "soup-greedy", "soup-uniform", "modelstock"], ["fmow"], costs))
    ft = got["ft", "fmow"]
    one_ft = ft.train_h + ft.search_h + ft.eval_h
    assert got["soup-greedy", "fmow"].inputs_h == pytest.approx(3 * one_ft)  # draws 1-3 of each seed
    assert got["soup-uniform", "fmow"].inputs_h == 0  # the same ingredients
    assert got["modelstock", "fmow"].inputs_h == pytest.approx(one_ft)  # ft seeds 3-5: one per seed, 3 seeds


def test_the_committed_h200_file_is_read():
    committed = load_costs(DEFAULT_COSTS)
    assert committed.device == "NVIDIA H200" and committed.batch == 256
    assert committed.ms_per_step["ft"] == 106.62 and committed.ms_per_step["autoft"] == 247.2  # the last run
    assert committed.decode_images_per_s == 2146.3 and committed.forward_images_per_s is None


def test_the_command_prints_the_tables_and_the_assumptions(capsys):
    assert main(["estimate", "--method", "ft", "autoft", "--dataset", "fmow"]) == 0
    out = capsys.readouterr().out
    assert "fmow:" in out and "GPU-hours on NVIDIA H200" in out and "autoft" in out
    assert "evaluation forward not measured" in out and "assumptions:" in out


@pytest.mark.parametrize("argv,words", [
    (["--dataset", "tinyshift"], "records no release split sizes"),
    (["--dataset", "iwildcm"], "did you mean iwildcam"),
    (["--method", "fx"], "did you mean ft"),
    (["--costs", "missing.json"], "not found"),
])
def test_bad_input_exits_2_in_one_line(argv, words, capsys, tmp_path):
    argv = [a if a != "missing.json" else str(tmp_path / a) for a in argv]
    assert main(["estimate", *argv]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_a_cost_file_without_ft_or_input_rates_is_refused(tmp_path, capsys):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"batches": {"256": {"lora": {"train": {"ms": 9.0}}}}}))
    assert main(["estimate", "--costs", str(path)]) == 2
    assert "lacks" in capsys.readouterr().err
    path.write_text("{not json")
    assert main(["estimate", "--costs", str(path)]) == 2
    assert "not readable JSON" in capsys.readouterr().err
