"""One benchmark run, end to end: resolve the configuration, skip or resume through the store, build the model,
let the method train under the protocol, evaluate every variant on every split, write one record."""
from __future__ import annotations

import json
import os
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bench import __version__
from bench.datasets.folders import data_root
from bench.config import config_hash, parse_assignments, resolve_hparams, split_overrides
from bench.envinfo import environment
from bench.errors import BenchError
from bench.protocols.access import DataAccess
from bench.protocols.context import RunContext
from bench.protocols.evaluation import evaluate
from bench.protocols.trainer import fine_tune
from bench.seeding import seed_everything
from bench.store import SCHEMA, RunStore, check_writable
from bench.weights import clone_state, interpolate


@dataclass
class RunRequest:
    method: str
    dataset: str = "tinyshift"
    seed: int = 0
    model: str | None = None
    pretrained: str | None = None
    settings: list[str] = field(default_factory=list)  # raw --set key=value items
    hparams_seed: int = 0
    out: Path = Path("runs")
    force: bool = False
    data_root: Path | None = None
    device: str | None = None
    storage: str | None = None  # Optuna storage URL for searches (AutoFT); default: a journal in the run folder
    workers: int | None = None  # DataLoader workers for on-disk data (default: 8 on a GPU, 0 on the CPU)
    reduced: bool = False  # the protocol's documented quick budget (marks the run unofficial)
    search_only: bool = False  # contribute search trials, then stop without the final fine-tune


@dataclass
class Plan:
    method_cls: type
    dataset_cls: type
    protocol: object
    hparams: dict
    config: dict
    official: bool


def plan(request: RunRequest) -> Plan:
    from bench.datasets import DATASETS
    from bench.methods import METHODS

    method_cls = METHODS.get(request.method)
    dataset_cls = DATASETS.get(request.dataset)
    if dataset_cls.needs_data_root or request.data_root is not None:
        data_root(request.data_root, request.dataset)  # fails early, before any model is loaded
    base = dataset_cls.protocol
    hp_over, proto_over = split_overrides(parse_assignments(request.settings), method_cls, base)
    if request.reduced:
        if not base.reduced:
            raise BenchError(f"protocol {base.id} has no reduced budget; use --set steps=N for a quick run")
        proto_over = {**dict(base.reduced), **proto_over}
    protocol = base.with_overrides(proto_over)
    hparams = resolve_hparams(method_cls, protocol, hp_over, request.hparams_seed)
    model = request.model or protocol.model
    pretrained = request.pretrained if request.pretrained is not None else (
        protocol.pretrained if model == protocol.model else None)
    if (request.storage or request.search_only) and not method_cls.searches:
        raise BenchError(f"--storage and --search-only apply to methods that search (autoft), not {method_cls.name}")
    if request.seed < 0:
        raise BenchError(f"--seed {request.seed} is negative; seeds are integers >= 0")
    budget = protocol.budget(reads_ood_val="ood_val" in method_cls.requires)
    unofficial = sorted(proto_over) + (["model"] if (model, pretrained) != (protocol.model, protocol.pretrained) else [])
    config = {
        "method": method_cls.name,
        "dataset": request.dataset,
        "protocol": protocol.id,
        "model": {"arch": model, "pretrained": pretrained},
        "seed": request.seed,
        "hparams": hparams,
        "budget": budget,
    }
    return Plan(method_cls, dataset_cls, protocol, hparams, config, official=not unofficial)


def _peak_memory_mb(device: torch.device) -> dict:
    if device.type == "cuda":
        return {"kind": "cuda_max_allocated", "mb": torch.cuda.max_memory_allocated(device) / 2**20}
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"kind": "process_max_rss", "mb": rss_kb / 1024 if sys.platform != "darwin" else rss_kb / 2**20}


def _device(name: str | None) -> torch.device:
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise BenchError(f"unknown device {name!r}; use cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BenchError(f"device {name!r} asked for, but no CUDA GPU is visible; use --device cpu")
    return device


def summarize(metrics: dict, protocol) -> dict:
    m = protocol.metric
    ood = {s: metrics[s][m] for s in protocol.ood_test_splits}
    return {"id": metrics[protocol.id_test_split][m], "ood": ood, "ood_avg": sum(ood.values()) / len(ood)}


def build_context(p: Plan, request: RunRequest, cache_dir: Path | None, reporter=None):
    """Load the model and data of a planned run and instantiate its method: (RunContext, Method)."""
    from bench.models import load_clip, open_clip_module

    device = _device(request.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seed_everything(request.seed)
    arch, tag = p.config["model"]["arch"], p.config["model"]["pretrained"]
    clip, info = load_clip(arch, tag)
    tokenizer = open_clip_module().get_tokenizer(arch)
    dataset = p.dataset_cls(info, request.data_root)
    if not dataset.classnames:  # reads the class list: a missing or malformed dataset fails before any folder is made
        raise BenchError(f"{request.dataset} has no classes; run `bench data check {request.dataset}`")
    data = DataAccess(dataset, p.protocol, p.method_cls.requires)
    workers = request.workers if request.workers is not None else (min(8, os.cpu_count() or 1) if device.type == "cuda" else 0)
    ctx = RunContext(p.protocol, dataset, data, clip, tokenizer, info, device, request.seed, cache_dir, workers)
    ctx.storage = request.storage
    ctx.trial_reporter = getattr(reporter, "trial", None)
    return ctx, p.method_cls(p.hparams, ctx)


def execute(request: RunRequest, reporter=None, stop_after: int | None = None) -> tuple[dict, str]:
    """Run (or skip) one configuration; returns (record, "done" | "skipped" | "searched")."""
    p = plan(request)
    store = RunStore(request.out)
    check_writable(store.root)
    final = store.path_for(p.config)
    if store.is_done(final) and not request.force:
        return store.load_record(final), "skipped"

    started = time.perf_counter()
    ctx, method = build_context(p, request, store.root / ".cache", reporter)
    if request.storage:
        from bench.methods.autoft_search import validate_storage

        validate_storage(request.storage)
    folder = store.begin(p.config, request.force)  # only once the inputs are known to be good
    method_cls, protocol, device, data, info = p.method_cls, p.protocol, ctx.device, ctx.data, ctx.model_info

    timing = {}
    t0 = time.perf_counter()
    search_info = method.search(folder)
    timing["search_s"] = time.perf_counter() - t0
    if request.search_only:
        return {"method": method_cls.name, "search": search_info, "search_s": timing["search_s"]}, "searched"
    t0 = time.perf_counter()
    model = method.build()
    theta0 = clone_state(model)
    timing["setup_s"] = time.perf_counter() - t0 + (t0 - started) - timing["search_s"]
    if method.trains and protocol.steps > 0:
        trained = fine_tune(method, model, ctx, folder.checkpoint, reporter, stop_after)
        selection = {"rule": "id_val", "split": protocol.id_val_split, "metric": protocol.metric,
                     "best_step": trained.best_step, "best_score": trained.best_score}
        theta1, history = trained.best_state, trained.history
        timing.update(train_s=trained.seconds, train_images=trained.images, train_steps=trained.steps,
                      train_images_per_s=trained.images / max(trained.seconds, 1e-9), resumed_from_step=trained.resumed_from)
    else:
        selection, theta1, history = {"rule": "none (no training)"}, theta0, []
        timing.update(train_s=0.0, train_images=0, train_steps=0, train_images_per_s=None, resumed_from_step=0)

    t0 = time.perf_counter()
    data.open_for_final_evaluation()
    model.eval()  # once: derived state (FLYP's text head) is then rebuilt per variant, not per split
    splits = [protocol.id_val_split, protocol.ood_val_split, *protocol.test_splits]
    variants = {}
    for name, alpha in method.variants().items():
        model.load_state_dict(theta1 if alpha is None else interpolate(theta0, theta1, alpha))
        metrics = evaluate(model, ctx, splits, frozen=method.frozen_image_tower)
        variants[name] = {"alpha": alpha, "metrics": metrics, "summary": summarize(metrics, protocol)}
    timing["eval_s"] = time.perf_counter() - t0
    timing["total_s"] = time.perf_counter() - started
    timing["peak_memory"] = _peak_memory_mb(device)

    reported = method.reported_variant()
    record = {
        "schema": SCHEMA,
        "run_id": config_hash(p.config),
        "bench_version": __version__,
        "method": method_cls.name,
        "method_description": method_cls.description,
        "dataset": request.dataset,
        "protocol": {"name": protocol.name, "version": protocol.version, "id": protocol.id},
        "official": p.official,
        "config": p.config,
        "hparams": p.hparams,
        "hparams_seed": request.hparams_seed,
        "seed": request.seed,
        "model": info.as_dict(),
        "selection": selection,
        "reported_variant": reported,
        "metric": protocol.metric,
        "metrics": variants[reported]["metrics"],
        "summary": variants[reported]["summary"],
        "variants": variants,
        "split_sizes": {name: len(data.get(name)) for name in splits},
        "method_info": {**search_info, **method.info()},
        "history": history,
        "timing": timing,
        "data_access": data.log(),
        "env": environment(device),
    }
    record = json.loads(json.dumps(record, default=str))  # the caller gets exactly what a later read gets
    store.finish(folder, record)
    return record, "done"
