"""Testbed results do not depend on the machine's thread count: a testbed run on the CPU computes with the
dataset's fixed intra-op thread count, and every record says which threads and determinism settings it ran with."""
from __future__ import annotations

import pytest
import torch

from conftest import TINY, run_method


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def test_a_testbed_run_gives_the_same_record_at_1_and_2_threads(tmp_path, threads):
    records = []
    for n in (1, 2):
        threads(n)
        record, status = run_method("ft", tmp_path / f"runs-{n}", settings=["steps=12", "eval_every=6"])
        assert status == "done" and torch.get_num_threads() == n  # the caller's setting is restored afterwards
        records.append(record)
    one, two = records
    assert one["history"] == two["history"] and one["metrics"] == two["metrics"]
    assert one["selection"] == two["selection"] and one["variants"] == two["variants"]
    for record in records:
        assert record["env"]["threads"] == {"intra_op": 2, "inter_op": torch.get_num_interop_threads(),
                                            "fixed_by_dataset": 2}
        assert record["env"]["determinism"]["deterministic_algorithms"] is False
        assert set(record["env"]["determinism"]) >= {"cudnn_benchmark", "float32_matmul_precision"}
