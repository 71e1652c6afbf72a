"""Planning a run: from a request and the method and dataset classes to the resolved configuration (what the run
folder's hash is of), the official flag and the evaluation plan (variants and the reported one), all fixed before
any model is loaded or any split is read."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.config import config_hash, parse_assignments, resolve_hparams, split_overrides
from bench.datasets.folders import data_root
from bench.engine import device_decode
from bench.engine.compiling import check_mode
from bench.errors import BenchError


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
    options: dict = field(default_factory=dict)  # the method's run options (declared flags without a setting)
    workers: int | None = None  # DataLoader workers for on-disk data (default: 8 on a GPU, 0 on the CPU)
    reduced: bool = False  # the protocol's documented quick budget (marks the run unofficial)
    search_only: bool = False  # contribute to the method's search, then stop without the final fine-tune
    compile: str = "auto"  # torch.compile of the image tower while training: auto (on CUDA), on, off
    decode: str = "loader"  # training JPEGs decoded by DataLoader workers, or on the run's device (device_decode)


@dataclass(frozen=True)
class Plan:
    method_cls: type
    dataset_cls: type
    protocol: object
    hparams: dict
    config: dict
    official: bool
    variants: dict  # name -> alpha (None: the trained model); fixed here, before any test split is opened
    reported_variant: str
    options: dict
    method_description: str
    config_hash: str
    inputs: tuple = ()  # finished runs a consuming method starts from (fields in INPUT_FIELDS)


def _and_the_weights(problem: str, request: RunRequest, protocol) -> str:
    """`problem`, and what is wrong with the run's weights as well, so a new user learns both at once."""
    from bench.models import load_clip

    model = request.model or protocol.model
    pretrained = request.pretrained if request.pretrained is not None else (
        protocol.pretrained if model == protocol.model else None)
    try:
        load_clip(model, pretrained)
    except BenchError as exc:
        return f"this run lacks (1) {problem} AND (2) {exc}"
    return problem


def plan(request: RunRequest, method_cls: type, dataset_cls: type) -> Plan:
    base = dataset_cls.protocol
    if dataset_cls.needs_data_root or request.data_root is not None:
        try:
            data_root(request.data_root, request.dataset)  # fails early, before anything is written
        except BenchError as exc:
            raise BenchError(_and_the_weights(f"{request.dataset}: {exc}", request, base))
    hp_over, proto_over = split_overrides(parse_assignments(request.settings), method_cls, base)
    if request.reduced:
        if not base.reduced:
            raise BenchError(f"protocol {base.id} has no reduced budget; use --set steps=N for a quick run")
        proto_over = {**dict(base.reduced), **proto_over}
    protocol = base.with_overrides(proto_over)
    if request.hparams_seed < 0:
        raise BenchError(f"--hparams-seed {request.hparams_seed} is negative; use 0 (defaults) or a positive seed")
    hparams = resolve_hparams(method_cls, protocol, hp_over, request.hparams_seed)
    method_cls.check_hparams(hparams)
    check_mode(request.compile)
    device_decode.check_mode(request.decode)
    if request.workers is not None and not 0 <= request.workers <= 256:
        raise BenchError(f"--workers {request.workers} is out of range; use 0 (load in the main process) to 256")
    model = request.model or protocol.model
    pretrained = request.pretrained if request.pretrained is not None else (
        protocol.pretrained if model == protocol.model else None)
    declared = {o.dest for o in method_cls.options if o.setting is None}
    unknown = sorted(set(request.options) - declared)
    if unknown:
        raise BenchError(f"method {method_cls.name} takes no option {', '.join(unknown)}"
                         + (f"; its options: {', '.join(sorted(declared))}" if declared else ""))
    if request.search_only and not method_cls.has_search():
        raise BenchError(f"--search-only applies to methods that search, not {method_cls.name}")
    if request.seed < 0:
        raise BenchError(f"--seed {request.seed} is negative; seeds are integers >= 0")
    method_cls.check_options(dict(request.options))
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
    inputs = ()
    if method_cls.consumes:
        inputs = consumed_runs(request.out, method_cls, config)
        config["inputs"] = [run["run_id"] for run in inputs]  # the run depends on them, so its hash does too
    variants = dict(method_cls.variants(hparams))
    reported = method_cls.reported_variant(hparams)
    if reported not in variants:
        raise BenchError(f"method {method_cls.name} reports variant {reported!r}, which it does not evaluate "
                         f"({', '.join(variants)})")
    return Plan(method_cls, dataset_cls, protocol, hparams, config, not unofficial, variants, reported,
                dict(request.options), method_cls.description, config_hash(config), inputs)


INPUT_FIELDS = ("run_id", "method", "seed", "hparams_seed", "hparams", "selection")  # never a test metric
INPUT_WEIGHTS = "weights.safetensors"


def consumed_runs(store_root: Path, method_cls, config: dict) -> tuple[dict, ...]:
    """The finished runs a consuming method starts from: those of the methods it names, on the same dataset,
    protocol, model and budget, narrowed by the method's `pick_inputs`, each reduced to what training may know of it plus
    the engine's own fields (`path`, `weights_sha256`, `total_s`), which the method's view does not pass on.
    Same budget too (steps, lr, batch, ... as resolved): an official soup never averages a quick run."""
    from bench.store import RunStore

    same = ("dataset", "protocol", "model", "budget")
    found = []
    for record in RunStore(store_root).records():
        if record.method in method_cls.consumes and all(record.config.get(k) == config[k] for k in same):
            found.append({**{k: getattr(record, k) for k in INPUT_FIELDS}, "path": str(Path(store_root) / record.path),
                          "weights_sha256": (record.weights or {}).get("sha256"),
                          "total_s": record.timing["total_s"]})
    where = f"{config['dataset']} ({config['protocol']}, {config['model']['arch']}, same budget settings)"
    if not found:
        raise BenchError(f"method {method_cls.name} starts from finished runs of {', '.join(method_cls.consumes)} on "
                         f"{where}; none are in {store_root}: run those first")
    found.sort(key=lambda r: (r["seed"], r["hparams_seed"] or 0, r["run_id"]))
    picked = method_cls.pick_inputs([dict(r) for r in found], config)
    ids = {r["run_id"] for r in found}
    if not picked or any(r.get("run_id") not in ids for r in picked):
        raise BenchError(f"method {method_cls.name} picked no finished run of {', '.join(method_cls.consumes)} on {where}")
    chosen = [next(r for r in found if r["run_id"] == p["run_id"]) for p in picked]
    for run in chosen:
        if run["weights_sha256"] is None or not (Path(run["path"]) / INPUT_WEIGHTS).is_file():
            raise BenchError(f"run {run['run_id']} ({run['method']}, seed {run['seed']}) in {run['path']} "
                             f"has no saved weights (it finished before bench kept them, or they were deleted); "
                             f"re-run it with --force")
    return tuple(chosen)
