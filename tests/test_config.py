import pytest

from bench.config import HParam, coerce, config_hash, draw, parse_assignments, resolve_hparams, split_overrides
from bench.errors import BenchError
from bench.methods import METHODS
from bench.protocols.tinyshift import TINYSHIFT


def test_parse_assignments_reads_json_values_and_text():
    assert parse_assignments(["lr=1e-4", "steps=10", "flag=true", "name=abc", "xs=[1,2]"]) == {
        "lr": 1e-4, "steps": 10, "flag": True, "name": "abc", "xs": [1, 2]}


@pytest.mark.parametrize("bad", ["lr", "=3", "lr=", " = "])
def test_malformed_assignment(bad):
    with pytest.raises(BenchError, match="malformed --set"):
        parse_assignments([bad])


def test_coerce_types():
    assert coerce("steps", 10.0, 5) == 10 and isinstance(coerce("steps", 10.0, 5), int)
    assert coerce("lr", 1, 0.1) == 1.0
    with pytest.raises(BenchError, match="wrong type"):
        coerce("steps", 2.5, 5)
    with pytest.raises(BenchError, match="wrong type"):
        coerce("lr", "fast", 0.1)


def test_defaults_come_from_the_protocol_and_lpft_scales_lr():
    ft = resolve_hparams(METHODS.get("ft"), TINYSHIFT, {})
    lpft = resolve_hparams(METHODS.get("lpft"), TINYSHIFT, {})
    assert ft == {"lr": TINYSHIFT.lr, "weight_decay": TINYSHIFT.weight_decay}
    assert lpft["lr"] == pytest.approx(TINYSHIFT.lr * 0.1)
    assert resolve_hparams(METHODS.get("ft"), TINYSHIFT, {"lr": 0.5})["lr"] == 0.5


def test_overrides_split_between_method_and_protocol_and_unknown_keys_fail():
    ft = METHODS.get("ft")
    assert split_overrides({"lr": 1, "steps": 3}, ft, TINYSHIFT) == ({"lr": 1}, {"steps": 3})
    with pytest.raises(BenchError, match="did you mean steps"):
        split_overrides({"stepz": 3}, ft, TINYSHIFT)


def test_seeded_draws_are_deterministic_in_range_and_independent_of_other_names():
    spec = HParam(1e-3, space=("log", 1e-5, 1e-1))
    a = draw("lr", spec, 7, "ft", "tinyshift")
    assert a == draw("lr", spec, 7, "ft", "tinyshift")
    assert 1e-5 <= a <= 1e-1
    assert a != draw("lr", spec, 8, "ft", "tinyshift")
    # the draw for one name depends on that name only, so adding hyperparameters never shifts it
    values = resolve_hparams(METHODS.get("l2sp"), TINYSHIFT, {}, hparams_seed=3)
    assert values["lr"] == draw("lr", METHODS.get("l2sp").hparams["lr"], 3, "l2sp", "tinyshift")


def test_config_hash_is_order_independent():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_protocol_overrides_are_validated():
    with pytest.raises(BenchError, match="out of range"):
        TINYSHIFT.with_overrides({"batch_size": 0})
    assert TINYSHIFT.with_overrides({"steps": 7}).steps == 7
