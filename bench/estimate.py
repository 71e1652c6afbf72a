"""`bench estimate`: GPU-hours of the leaderboard's runs, per method and dataset, from a measured step-cost file
(benchmarks/gpu_throughput.py --out, or the committed benchmarks/results/gpu_step_cost.json) and the protocols'
budgets. A price list, not a promise: every assumption it makes is returned with the figures and printed.

One run = its training steps (the protocol's) at the method's measured ms/step, scaled linearly from the measured
batch to the protocol's; its search (AutoFT's trials, TPGM's radii) at the same step cost; ID-val checks every
`eval_every` steps; the final evaluation of the test splits, decoded once for all of a run's weight-space variants
(each image costs the slower of its decode and its variants' forwards); plus what the method declares
(`Method.planned_work`). Runs another method needs beyond that method's own rows (soup ingredients) are added to
the consumer's row.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import BenchError

DEFAULT_COSTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "gpu_step_cost.json"
FORWARD_SHARE = 1 / 3  # a forward pass of one image, as a share of its training step (backward ~2x the forward)


@dataclass
class StepCosts:
    device: str
    batch: int
    ms_per_step: dict[str, float]  # benchmark label -> ms per training step at `batch`
    decode_images_per_s: float  # the input pipeline's best measured rate (images decoded and preprocessed)
    forward_images_per_s: float | None  # the evaluation forward, where measured
    source: str


@dataclass
class Row:
    method: str
    dataset: str
    runs: int  # the protocol's seeds
    train_h: float
    search_h: float
    eval_h: float
    inputs_h: float  # runs of other methods this one needs beyond their own rows
    step_source: str  # "measured" or what the step was priced at instead

    @property
    def total_h(self) -> float:
        return self.train_h + self.search_h + self.eval_h + self.inputs_h


@dataclass
class Estimate:
    costs: StepCosts
    rows: list[Row] = field(default_factory=list)
    assumptions: list[str] = field(default_factory=list)

    def totals(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for row in self.rows:
            out[row.dataset] = out.get(row.dataset, 0.0) + row.total_h
        return out


def load_costs(path: Path | None) -> StepCosts:
    """Either file format the GPU benchmarks write; one-line errors for a missing or unreadable file."""
    path = Path(path) if path is not None else DEFAULT_COSTS
    if not path.is_file():
        raise BenchError(f"step-cost file {path} not found; pass --costs FILE (the JSON benchmarks/gpu_throughput.py "
                         "--out writes on a GPU)")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BenchError(f"step-cost file {path} is not readable JSON ({exc}); pass the file gpu_throughput.py wrote")
    try:
        if "batches" in data and data["batches"]:  # gpu_throughput.py: {batch: {label: {"train": {...}}}}
            batch = min(data["batches"], key=int)
            rows = data["batches"][batch]
            steps = {k: float(v["train"]["ms"]) for k, v in rows.items() if "train" in v}
            forward = rows.get("evaluation", {}).get("forward", {}).get("images_per_s")
            decode = max([*data.get("input_prepared_copy_images_per_s", {}).values(),
                          *data.get("input_cpu_decoding_images_per_s", {}).values(),
                          *data.get("input_device_decoding_images_per_s", {}).values()], default=None)
        else:  # gpu_step_cost.py: methods_run1, methods_run2, ... (the last run counts)
            last = sorted(k for k in data if k.startswith("methods_run"))[-1]
            batch, steps = data["batch"], {k: float(v["ms_per_step"]) for k, v in data[last].items()}
            forward, decode = None, max(data["input_pipeline_images_per_s"].values(), default=None)
        if "ft" not in steps or not decode:
            raise KeyError("ft" if "ft" not in steps else "input pipeline")
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise BenchError(f"step-cost file {path} lacks {exc} (it needs ft's step and an input-pipeline rate); "
                         "pass a file benchmarks/gpu_throughput.py --out wrote")
    return StepCosts(str(data.get("device", "unknown device")), int(batch), steps, float(decode),
                     float(forward) if forward else None, str(path))


def _sizes(dataset_cls) -> dict[str, int]:
    sizes = dict(dataset_cls.expected_sizes)
    if not sizes:
        raise BenchError(f"dataset {dataset_cls.name} records no release split sizes, so its evaluation cannot be "
                         "priced; estimate the datasets that do (iwildcam, fmow, imagenet)")
    return sizes


def estimate(methods: list[str], datasets: list[str], costs: StepCosts) -> Estimate:
    from bench.config import resolve_hparams
    from bench.datasets import DATASETS
    from bench.methods import METHODS

    method_classes = {m: METHODS.get(m) for m in methods}  # unknown names fail here, before any work
    dataset_classes = {d: DATASETS.get(d) for d in datasets}
    sizes = {d: _sizes(cls) for d, cls in dataset_classes.items()}
    est = Estimate(costs)
    ft_ms = costs.ms_per_step["ft"]
    forward = costs.forward_images_per_s or costs.batch / (ft_ms / 1e3) / FORWARD_SHARE
    assumed = set()
    for d, dataset_cls in dataset_classes.items():
        protocol, size = dataset_cls.protocol, sizes[d]
        scale = protocol.batch_size / costs.batch  # a step's cost, linear in the batch

        def step_seconds(cls) -> tuple[float, str]:
            label = cls.step_cost_as or cls.name
            if label in costs.ms_per_step:
                return costs.ms_per_step[label] * scale / 1e3, "measured" if label == cls.name else f"as {label}"
            assumed.add(cls.name)
            return ft_ms * scale / 1e3, "assumed = ft"

        def images_s(images: float, models: int = 1) -> float:  # each image: its decode or its models' forwards
            return images * max(1 / costs.decode_images_per_s, models / forward)

        def run_hours(cls) -> tuple[float, float, float, str, dict]:
            work = cls.planned_work(resolve_hparams(cls, protocol, {}, 0), protocol, size)
            step, source = step_seconds(cls) if cls.trains or work["search_steps"] else (0.0, "no training")
            train = protocol.steps * step if cls.trains else 0.0
            checks = (protocol.steps // protocol.eval_every) if cls.trains else 0
            evaluate = images_s(checks * size[protocol.id_val_split])
            tested = sum(size[s] for s in protocol.test_splits)
            evaluate += images_s(tested, max(1, len(cls.ensemble_alphas)))
            evaluate += images_s(work["forward_images"])
            return train / 3600, work["search_steps"] * step / 3600, evaluate / 3600, source, work

        charged: set[str] = set()  # extra runs already in an earlier row (the two soups share their ingredients)
        for m, cls in method_classes.items():
            train, search, evaluate, source, work = run_hours(cls)
            inputs = 0.0
            for which, (other, n) in work["extra_runs"].items():
                if which not in charged:
                    charged.add(which)
                    inputs += n * sum(run_hours(METHODS.get(other))[:3])
            k = len(protocol.seeds)
            est.rows.append(Row(m, d, k, train * k, search * k, evaluate * k, inputs * k, source))
    est.assumptions = [
        f"step costs: {costs.device}, measured at batch {costs.batch} ({costs.source}); a protocol's batch is priced "
        "linearly from it",
        f"unmeasured steps priced as ft's: {', '.join(sorted(assumed))}" if assumed else "every step measured",
        (f"evaluation forward measured: {costs.forward_images_per_s:.0f} images/s" if costs.forward_images_per_s else
         f"evaluation forward not measured: {forward:.0f} images/s assumed (a third of ft's training-step time per "
         "image)"),
        f"decoding {costs.decode_images_per_s:.0f} images/s (the input pipeline's best measured rate); each "
        "evaluated image costs the slower of its decode and its variants' forwards",
        "the protocols' default hyperparameters and equal budgets; each protocol's seeds; no model loading, "
        "checkpoint writing, queueing or failed runs; the linear probe's CPU fit not counted",
        "soups: ft draws 1-3 of each seed (bench sweep --hparams-seed 0 1 2 3) in the first soup's row; modelstock: "
        "ft seeds 3-5 in its row (runs one row charged are not charged again)",
    ]
    return est
