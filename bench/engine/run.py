"""One benchmark run, end to end: skip or resume through the store, load the model and data, let the method
search and train under the guard, fix the model, then evaluate the planned variants on every split and write one
record that is validated against the schema."""
from __future__ import annotations

import copy
import hashlib
import json
import os
import resource
import sys
import time
from contextlib import contextmanager
from dataclasses import replace

import torch

from bench import __version__
from bench.datasets.cards import summary as data_summary
from bench.datasets.check import failures
from bench.engine import distributed
from bench.engine.access import DataGuard, ProtocolViolation
from bench.engine.compiling import wanted
from bench.engine.context import EngineContext, prompt_templates
from bench.engine.evaluation import evaluate_many, models_at_once
from bench.engine.planning import INPUT_WEIGHTS, Plan, RunRequest, plan
from bench.engine.trainer import Diverged, fine_tune
from bench.engine.view import MethodView
from bench.envinfo import environment
from bench.errors import BenchError
from bench.results.predictions import FILE as PREDICTIONS_FILE, PredictionsWriter, example_ids
from bench.results.record import WEIGHT_ENSEMBLE_VARIANT, RunRecord
from bench.seeding import seed_everything
from bench.store import RunStore, check_writable
from bench.weights import clone_state, interpolate


def _peak_memory_mb(device: torch.device) -> dict:
    if device.type == "cuda":
        return {"kind": "cuda_max_allocated", "mb": torch.cuda.max_memory_allocated(device) / 2**20}
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"kind": "process_max_rss", "mb": rss_kb / 1024 if sys.platform != "darwin" else rss_kb / 2**20}


def resolve_device(name: str | None) -> torch.device:
    if name is None:
        local = distributed.launched().local_rank  # under torchrun: this rank's GPU
        return torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
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


def build_engine(p: Plan, request: RunRequest, cache_dir) -> EngineContext:
    """Check the data, then load the model, of a planned run: every failure before anything is written."""
    from bench.datasets.base import PROVISIONAL_MODEL
    from bench.models import load_clip, open_clip_module

    device = resolve_device(request.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seed_everything(request.seed)
    # The data first (a missing dataset is named as such, before any weights are looked for): lists and files only,
    # no pixels, so the preprocessing can be a provisional one until the model is known.
    missing = []  # everything a run lacks is said at once: the data root or the data, then the weights
    try:
        dataset = p.dataset_cls(PROVISIONAL_MODEL, request.data_root)
        problems = failures(dataset.check())  # the fast data check: every file the run will read
        if problems:
            first = problems[0]
            missing.append(f"{request.dataset} {first.split}: {first.status}: {first.notes[0]}"
                           + (f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else "")
                           + f"; `bench data check {request.dataset}` lists them")
        elif not dataset.classnames:
            missing.append(f"{request.dataset} has no classes; run `bench data check {request.dataset}`")
    except BenchError as exc:
        missing.append(f"{request.dataset}: {exc}")
    arch, tag = p.config["model"]["arch"], p.config["model"]["pretrained"]
    try:
        clip, info = load_clip(arch, tag)
    except BenchError as exc:
        missing.append(str(exc))
    if missing:
        raise BenchError(missing[0] if len(missing) == 1 else f"this run lacks (1) {missing[0]} AND (2) {missing[1]}")
    tokenizer = open_clip_module().get_tokenizer(arch)
    dataset.use_model(info)
    protocol = p.protocol
    if protocol.budget_rule == "official":  # the method's official length (part of the hash via budget_rule)
        protocol = replace(protocol, steps=p.method_cls.official_steps(protocol, prompt_templates(dataset, protocol.prompts)))
    train_size = len(dataset.split(protocol.train_split))
    if p.method_cls.trains and protocol.steps > 0 and train_size < protocol.batch_size:
        raise BenchError(f"the training split has {train_size} examples, fewer than batch_size={protocol.batch_size}; "
                         "lower it with --set batch_size=N")
    world = distributed.current()
    if protocol.batch_size % world.size:
        raise BenchError(f"batch_size={protocol.batch_size} (the global batch) does not split evenly over {world.size} "
                         f"processes; use a multiple of {world.size} (--set batch_size=N) or another --nproc_per_node")
    guard = DataGuard(protocol, p.method_cls.requires)
    workers = request.workers if request.workers is not None else (min(8, os.cpu_count() or 1) if device.type == "cuda" else 0)
    engine = EngineContext(protocol, dataset, guard, clip, tokenizer, info, device, request.seed, cache_dir, workers)
    engine.data = data_summary(dataset)  # read now: an unreadable card fails before the run folder exists
    engine.compile_tower = wanted(request.compile, device)
    engine.decode = request.decode
    return engine


def build_method(p: Plan, engine: EngineContext, trial_reporter=None):
    view = MethodView(engine, p.options, trial_reporter, copy.deepcopy(p.inputs))
    return p.method_cls(copy.deepcopy(p.hparams), view)  # its own copy: the plan's goes into the record


PREDICTIONS = PREDICTIONS_FILE
WEIGHTS = INPUT_WEIGHTS  # what a consuming method's view reads back


def weights_blob(state: dict[str, torch.Tensor]) -> bytes:
    """The selected model's state as safetensors bytes (CPU, contiguous, each tensor its own storage)."""
    from safetensors.torch import save

    return save({k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()})


def _snapshot(info: dict) -> dict:
    """A detached JSON copy: a live object a method hands over cannot change after it was taken."""
    return json.loads(json.dumps(info, default=str))


def _refuse_if_violated(engine: EngineContext) -> None:
    """A refused read fails the run even where method code caught the ProtocolViolation."""
    if engine.guard.refusals:
        raise ProtocolViolation(f"{engine.guard.refusals[0]} (the run is not stored)")


def execute(request: RunRequest, method_cls: type, dataset_cls: type, reporter=None,
            stop_after: int | None = None) -> tuple[dict, str]:
    """Run (or skip) one configuration; returns (record, "done" | "skipped" | "searched")."""
    p = plan(request, method_cls, dataset_cls)
    store = RunStore(request.out)
    check_writable(store.root)
    final = store.path_for(p.config)
    if store.is_done(final) and not request.force:
        return store.load_record(final), "skipped"

    with fixed_threads(p.dataset_cls, request.device):
        return _execute_planned(p, request, store, final, reporter, stop_after)


@contextmanager
def fixed_threads(dataset_cls, device_request):
    """The dataset's fixed intra-op thread count for a CPU run (the testbed: its results then do not depend on the
    machine's cores or OMP_NUM_THREADS); the caller's count is restored afterwards."""
    n = getattr(dataset_cls, "cpu_threads", None)
    if n is None or resolve_device(device_request).type != "cpu":
        yield None
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)


def _execute_planned(p: Plan, request: RunRequest, store: RunStore, final, reporter, stop_after):
    started = time.perf_counter()
    engine = build_engine(p, request, store.root / ".cache")  # weights, data check, budget: before any write
    method = build_method(p, engine, getattr(reporter, "trial", None))
    if request.search_only:  # extra search workers share the study; they never write the run's result
        return _execute(p, request, store, engine, method, started, reporter, stop_after)
    if not distributed.current().main:  # under torchrun rank 0 holds the lock and decides; the others follow
        if distributed.broadcast(None) == "skipped":
            return store.load_record(final), "skipped"
        return _execute(p, request, store, engine, method, started, reporter, stop_after)
    final.parent.mkdir(parents=True, exist_ok=True)
    with store.lock_for(final):  # one run of a configuration at a time; a second command waits, then skips
        store.recover(final)
        skip = store.is_done(final) and not request.force
        distributed.broadcast("skipped" if skip else "run")
        if skip:
            return store.load_record(final), "skipped"
        return _execute(p, request, store, engine, method, started, reporter, stop_after)


def _execute(p: Plan, request: RunRequest, store: RunStore, engine, method, started, reporter, stop_after):
    with engine.dataset.gated(engine.guard.check):
        # A method without a search builds its model before anything is written: a plugin that fails there
        # leaves no folder behind. A searching method builds after its search (AutoFT's model needs its result).
        model = None if p.method_cls.has_search() else _build(method)
        writer = distributed.current().main or request.search_only  # under torchrun only rank 0 writes the store
        folder = store.begin(p.config, request.force) if writer else None  # only once the inputs are known good
        if not request.search_only:
            folder = distributed.broadcast(folder)  # the other ranks work in (read the checkpoint of) rank 0's folder
        try:
            record, status, files = _run(p, request, engine, method, folder, started, reporter, stop_after, model)
        except KeyboardInterrupt:
            raise  # interrupted on purpose: the checkpoint is there to resume from
        except BaseException as exc:
            if writer and not request.search_only:  # an extra search worker never removes the folder it shares
                store.discard(folder, unconditionally=isinstance(exc, Diverged))  # nothing to resume: no orphan
            raise
    if status == "done" and writer:
        store.finish(folder, record, files)
    distributed.barrier()  # the record is stored before any rank reports the run finished
    return record, status


def _plugin_call(method, what: str, fn, *args):
    """Run method code that builds a model; its failure is the user's to fix, in one line."""
    try:
        return fn(*args)
    except BenchError:
        raise
    except Exception as exc:
        line = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise BenchError(f"method {method.name} failed to build its {what}: {type(exc).__name__}: {line}")


def _build(method):
    return _plugin_call(method, "model", method.build)


def _evaluation_model(method, model):
    """The method's evaluated form of `model` (LoRA: adapters merged), built before the guard seals."""
    return _plugin_call(method, "evaluated model", method.evaluation_model, model)


def _run(p: Plan, request, engine, method, folder, started, reporter, stop_after, model=None):
    """Search, train, fix the model, evaluate, record: each phase its own function below."""
    timing = {}
    search_info = _search_phase(p, method, folder, timing)
    if request.search_only:
        _refuse_if_violated(engine)
        return {"method": p.config["method"], "search": search_info, "search_s": timing["search_s"]}, "searched", {}
    if model is None:
        model = _build(method)
    theta0 = clone_state(_evaluation_model(method, model))
    timing["setup_s"] = time.perf_counter() - started - timing["search_s"]
    if p.inputs:  # the consumed runs' own cost, per run: the leaderboard counts each once across seeds
        timing["inputs_total_s"] = {run["run_id"]: run["total_s"] for run in p.inputs}
    model, theta1, trained, selection, history = _train_phase(method, model, engine, folder, reporter, stop_after, timing)
    method_info = _snapshot({**search_info, **method.info()})  # its last word, taken before any test split opens
    frozen = bool(method.frozen_image_tower)
    _refuse_if_violated(engine)
    engine.guard.seal()  # the model is fixed: theta0 and theta1 are the engine's own copies from here on

    t0 = time.perf_counter()
    variants, same, splits, writer = _evaluation_phase(p, engine, model, theta0, theta1, frozen, timing)
    blob, predictions = writer.encode()
    files = {PREDICTIONS: blob}
    if trained:  # a trained model is kept: soups and post-hoc methods (TPGM, LiNeS) start from it
        files[WEIGHTS] = weights_blob(theta1)
    timing["eval_s"] = time.perf_counter() - t0
    timing["total_s"] = time.perf_counter() - started
    timing["peak_memory"] = _peak_memory_mb(engine.device)
    _refuse_if_violated(engine)
    weights = ({"file": WEIGHTS, "sha256": hashlib.sha256(files[WEIGHTS]).hexdigest(),
                "layout": "safetensors state dict of the trained model as evaluated (theta_1: the selected checkpoint)"}
               if WEIGHTS in files else None)
    record = _record(p, request, engine, selection, variants, same, splits, predictions, weights, method_info,
                     history, timing)
    return record, "done", files


def _search_phase(p: Plan, method, folder, timing: dict) -> dict:
    t0 = time.perf_counter()
    search_info = {}
    if p.method_cls.has_search():
        workdir = folder.work / "search"  # the method's files; the engine's (checkpoint, record) stay its own
        workdir.mkdir(parents=True, exist_ok=True)
        with distributed.local():  # under torchrun each rank is one more worker of the shared study
            search_info = _snapshot(method.search(workdir, p.config_hash))
    timing["search_s"] = time.perf_counter() - t0
    return search_info


def _train_phase(method, model, engine, folder, reporter, stop_after, timing: dict):
    """Fine-tune under the budget and select on ID val; returns (evaluated model, theta_1, trained?, selection,
    history)."""
    protocol = engine.protocol  # the engine's: steps as the budget rule resolved them
    best = None  # the selected training state
    if method.trains and protocol.steps > 0:
        trained = fine_tune(method, model, engine, folder.checkpoint, reporter, stop_after, engine.compile_tower)
        selection = {"rule": "id_val", "split": protocol.id_val_split, "metric": protocol.metric,
                     "best_step": trained.best_step, "best_score": trained.best_score}
        history, best = trained.history, trained.best_state
        model.load_state_dict(best)
        timing.update(train_s=trained.seconds, train_images=trained.images, train_steps=trained.steps,
                      train_images_per_s=trained.images / max(trained.seconds, 1e-9), resumed_from_step=trained.resumed_from,
                      compiled=trained.compiled)
    else:
        selection, history = {"rule": "none (no training)"}, []
        timing.update(train_s=0.0, train_images=0, train_steps=0, train_images_per_s=None, resumed_from_step=0)
    evaluated = _evaluation_model(method, model)
    theta1 = best if best is not None and evaluated is model else clone_state(evaluated)
    return evaluated, theta1, best is not None, selection, history


def _evaluation_phase(p: Plan, engine, model, theta0, theta1, frozen: bool, timing: dict):
    """Every planned variant on every split; returns (variants, same-model aliases, splits, predictions writer)."""
    protocol = engine.protocol
    engine.guard.open_final_evaluation()
    model.eval()  # once: derived state (FLYP's text head) is then rebuilt per variant, not per split
    # OOD val where the method read it (the subset it could read: AutoFT's search scores), or for every method and
    # in whole where the protocol reports it (WILDS submissions); after the model is fixed, so never for selection.
    scored_ood_val = "ood_val" in p.method_cls.requires or protocol.report_ood_val
    splits = [protocol.id_val_split, *([protocol.ood_val_split] if scored_ood_val else []), *protocol.test_splits]
    with_probabilities = {p.reported_variant, WEIGHT_ENSEMBLE_VARIANT}  # the variants the leaderboard shows
    model_of = lambda alpha: None if alpha in (None, 1.0) else alpha  # alpha = 1 is exactly theta1: evaluated once
    kept = {model_of(alpha) for name, alpha in p.variants.items() if name in with_probabilities}  # only those in memory
    first = {}  # model key -> the first variant that names it; the others are aliases of it
    for name, alpha in p.variants.items():
        first.setdefault(model_of(alpha), name)
    done = _evaluate_variants(model, engine, splits, frozen, theta0, theta1, list(first), kept, timing)
    done = {key: (first[key], *result) for key, result in done.items()}
    writer, variants, same = PredictionsWriter(), {}, {}
    for name, alpha in p.variants.items():
        key = model_of(alpha)
        if first[key] != name:
            same[name] = first[key]
        metrics, top1, probs = done[key][1:]
        variants[name] = {"alpha": alpha, "metrics": metrics, "summary": summarize(metrics, protocol)}
        for split in splits:
            writer.top1(name, split, top1[split].numpy())
            if name in with_probabilities:
                writer.probabilities(name, split, probs[split][0].numpy())
    for split in splits:  # the leaderboard's paired bootstrap recomputes the metrics from these
        data = engine.readable(split)
        columns = next((d[3][split][1] for d in done.values() if d[3]), None)  # the same for every variant
        writer.split(split, example_ids(data), torch.as_tensor(data.labels).numpy(), engine.groups(split),
                     None if columns is None else columns.numpy())
    timing["eval_models"] = len(done)
    timing["eval_images"] = len(done) * sum(len(engine.readable(split)) for split in splits)
    return variants, same, splits, writer


def _evaluate_variants(model, engine, splits, frozen, theta0, theta1, keys, kept, timing) -> dict:
    """key -> (metrics, top-1, probabilities) of each distinct model (None: theta1, else the WiSE-FT alpha), each
    split decoded once per group of models held together (all of them where memory allows)."""
    at_once = models_at_once(model, len(keys), engine.device)
    results, passes = {}, 0
    for start in range(0, len(keys), at_once):
        group = keys[start : start + at_once]
        models = []
        for i, key in enumerate(group):
            member = model if i == 0 else copy.deepcopy(model)
            member.load_state_dict(theta1 if key is None else interpolate(theta0, theta1, key))
            models.append(member)
        out = evaluate_many(models, engine, splits, frozen, [key in kept for key in group])
        results.update(zip(group, out))
        passes += 1
        del models, out
    timing["eval_passes"] = passes  # reads of every evaluated split (1: decoded once for all variants)
    return results


def _prepared(dataset) -> dict:
    """{"prepared": split -> resolution} where splits were read from a prepared copy (training from one differs:
    its random crops are taken from the working-resolution image, not the original)."""
    used = dataset.prepared_splits()
    return {"prepared": used} if used else {}


def _record(p: Plan, request, engine, selection, variants, same, splits, predictions, weights, method_info,
            history, timing) -> dict:
    protocol, device, reported = engine.protocol, engine.device, p.reported_variant
    record = RunRecord(
        run_id=p.config_hash, bench_version=__version__, method=p.config["method"],
        method_description=p.method_description, dataset=request.dataset,
        protocol={"name": protocol.name, "version": protocol.version, "id": protocol.id}, official=p.official,
        config=p.config, hparams=p.hparams, hparams_seed=request.hparams_seed, seed=request.seed,
        model=engine.model_info.as_dict(), selection=selection,
        classes={"names": list(engine.dataset.classnames), "source": engine.dataset.classname_source},
        templates=list(engine.templates), evaluation={"variants": p.variants, "reported": reported, "same_model": same},
        reported_variant=reported, metric=protocol.metric, metrics=variants[reported]["metrics"],
        summary=variants[reported]["summary"], variants=variants,
        split_sizes={name: len(engine.readable(name)) for name in splits},
        data={**engine.data, **_prepared(engine.dataset),  # the data card, any prepared copy, device decoding
              **({"decode": "device"} if engine.decoded_on_device else {})},
        predictions=predictions, weights=weights, method_info=method_info, history=history, timing=timing,
        data_access=engine.guard.log(),
        env={**environment(device, getattr(p.dataset_cls, "cpu_threads", None) if device.type == "cpu" else None),
             "processes": distributed.current().size})  # >1: data parallel under torchrun
    return json.loads(json.dumps(record.to_dict(), default=str))  # the caller gets exactly what a later read gets
