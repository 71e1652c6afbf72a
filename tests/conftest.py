import os

os.environ["HF_HUB_OFFLINE"] = "1"  # tests never reach a hub
os.environ.setdefault("OMP_NUM_THREADS", "2")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

# A budget small enough for many end-to-end runs in CI (marks runs unofficial).
TINY = ["steps=6", "eval_every=3", "batch_size=32", "warmup=2"]
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def store(tmp_path) -> Path:
    return tmp_path / "runs"


def run_method(method, store, seed=0, settings=(), base_settings=True, **kwargs):
    from bench.runner import RunRequest, execute

    request = RunRequest(method=method, seed=seed, out=store, settings=(list(TINY) if base_settings else []) + list(settings),
                         **kwargs)
    return execute(request)
