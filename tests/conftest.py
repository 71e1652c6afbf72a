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


# The ft runs (seed, hparams_seed) each method built from finished fine-tunes starts from (see its pick_inputs).
INPUT_RUNS = {"soup-uniform": ((0, 0), (0, 1)), "soup-greedy": ((0, 0), (0, 1)), "modelstock": ((0, 0), (1, 0)),
              "tpgm": ((0, 0),), "lines": ((0, 0),)}


def run_with_inputs(method, store, settings=(), extra=(), **kwargs):
    """`run_method`, after the ft runs a consuming method needs (same store, dataset, model and settings;
    `extra`: the method's own settings, not passed to ft)."""
    for seed, hparams_seed in INPUT_RUNS.get(method, ()):
        run_method("ft", store, seed=seed, hparams_seed=hparams_seed, settings=settings, **kwargs)
    return run_method(method, store, settings=list(settings) + list(extra), **kwargs)


def run_method(method, store, seed=0, settings=(), base_settings=True, **kwargs):
    from bench.runner import RunRequest, execute

    request = RunRequest(method=method, seed=seed, out=store, settings=(list(TINY) if base_settings else []) + list(settings),
                         **kwargs)
    return execute(request)
