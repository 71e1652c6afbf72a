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
def _input_runs() -> dict:
    """method -> the (seed, hparams_seed) of the ft runs it consumes, as each consuming method class declares them."""
    from bench.methods import BUILTIN_METHODS, METHODS

    return {name: METHODS.get(name).example_inputs for name in BUILTIN_METHODS if METHODS.get(name).consumes}


INPUT_RUNS = _input_runs()


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


def stored_records(store) -> list[dict]:
    """A store's finished records as the JSON they are (plus the folder as 'path'), for tests that inspect fields."""
    from bench.store import RunStore

    store = store if isinstance(store, RunStore) else RunStore(store)
    return [{**r.to_dict(), "path": r.path} for r in store.records()]


def count_opens(monkeypatch) -> list:
    """Every image file opened from now on (through bench.datasets.images.open_image), in order."""
    from bench.datasets import images

    opened = []
    real = images.open_image
    monkeypatch.setattr(images, "open_image", lambda path: opened.append(path) or real(path))
    return opened
