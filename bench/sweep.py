"""Sweeps: a grid of methods x datasets x seeds x hyperparameter draws expanded into ordinary runs of the store
(DomainBed's sweep.py). Every job is planned first, so a bad name or setting stops the sweep before anything runs;
a job whose run is already done is not launched again; failures are collected with their error line and do not stop
the others. Launchers: `local` (N processes at once, one GPU each where there are GPUs, each optionally a torchrun
job) and `submitit` (submitit's executors: `local`, or `slurm` on a cluster).
"""
from __future__ import annotations

import itertools
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import BenchError
from bench.runner import RunRequest, plan
from bench.store import RunStore

SPEC_KEYS = {"method", "dataset", "seed", "hparams_seed", "set", "model", "pretrained", "data_root", "launcher",
             "jobs", "out", "nproc_per_job", "partition", "time_min", "gpus_per_job", "executor"}


@dataclass(frozen=True)
class Job:
    method: str
    dataset: str
    seed: int
    hparams_seed: int
    settings: tuple[str, ...] = ()
    model: str | None = None
    pretrained: str | None = None
    data_root: str | None = None

    @property
    def label(self) -> str:
        return f"{self.method} on {self.dataset} seed {self.seed} draw {self.hparams_seed}"

    def request(self, out: Path) -> RunRequest:
        return RunRequest(method=self.method, dataset=self.dataset, seed=self.seed, hparams_seed=self.hparams_seed,
                          settings=list(self.settings), model=self.model, pretrained=self.pretrained,
                          data_root=Path(self.data_root) if self.data_root else None, out=out)

    def argv(self, out: Path) -> list[str]:
        args = ["run", "--method", self.method, "--dataset", self.dataset, "--seed", str(self.seed),
                "--hparams-seed", str(self.hparams_seed), "--out", str(out), "--quiet"]
        for item in self.settings:
            args += ["--set", item]
        for flag, value in (("--model", self.model), ("--pretrained", self.pretrained), ("--data-root", self.data_root)):
            if value:
                args += [flag, str(value)]
        return args


@dataclass
class Outcome:
    job: Job
    status: str  # done | skipped | failed
    error: str = ""
    seconds: float = 0.0


@dataclass
class Sweep:
    jobs: list[Job]
    out: Path
    options: dict = field(default_factory=dict)


def _listed(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def load_spec(config: Path | None, cli: dict) -> dict:
    """The sweep's settings: a TOML file's (if any), then the command line's (which win where given)."""
    spec = {}
    if config is not None:
        try:
            import tomllib
        except ImportError:  # Python 3.10
            try:
                import tomli as tomllib
            except ImportError:
                raise BenchError("--config needs Python >= 3.11 or the tomli package (pip install tomli)")
        try:
            spec = tomllib.loads(Path(config).read_text())
        except FileNotFoundError:
            raise BenchError(f"sweep config {config} does not exist")
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise BenchError(f"sweep config {config} is not valid TOML ({exc}); see README's sweep example")
        unknown = sorted(set(spec) - SPEC_KEYS)
        if unknown:
            raise BenchError(f"sweep config {config}: unknown key {unknown[0]!r}; known: {', '.join(sorted(SPEC_KEYS))}")
    spec.update({k: v for k, v in cli.items() if v not in (None, [], ())})
    if not spec.get("method"):
        raise BenchError("a sweep needs at least one method: --method M [M ...] or `method = [...]` in --config")
    return spec


def expand(spec: dict) -> Sweep:
    """Every combination, planned (checked) now; the same job twice is kept once."""
    out = Path(spec.get("out", "runs"))
    settings = tuple(_listed(spec.get("set", [])))
    jobs = []
    for method, dataset, seed, draw in itertools.product(_listed(spec["method"]), _listed(spec.get("dataset", "tinyshift")),
                                                         _listed(spec.get("seed", 0)), _listed(spec.get("hparams_seed", 0))):
        job = Job(str(method), str(dataset), int(seed), int(draw), settings, spec.get("model"), spec.get("pretrained"),
                  spec.get("data_root"))
        if job not in jobs:
            jobs.append(job)
    for job in jobs:
        plan(job.request(out))  # raises BenchError on any bad input, before any job starts
    return Sweep(jobs, out, {k: spec[k] for k in spec if k not in ("method", "dataset", "seed", "hparams_seed", "set")})


def state(job: Job, out: Path) -> str:
    """done | unfinished (a folder to resume) | missing."""
    store = RunStore(out)
    final = store.path_for(plan(job.request(out)).config)
    if store.is_done(final):
        return "done"
    return "unfinished" if final.exists() else "missing"


def estimate_seconds(jobs: list[Job], out: Path) -> dict[Job, float | None]:
    """Each job's expected time: the mean total time of the store's finished runs of its method and dataset."""
    times: dict[tuple[str, str], list[float]] = {}
    for record in RunStore(out).records():
        times.setdefault((record.method, record.dataset), []).append(record.timing["total_s"])
    return {job: (sum(t) / len(t) if (t := times.get((job.method, job.dataset))) else None) for job in jobs}


def run_local(jobs: list[Job], out: Path, parallel: int = 1, nproc_per_job: int = 1, progress=None) -> list[Outcome]:
    """Each job as its own `bench run` process, `parallel` at a time; with GPUs each slot gets one
    (CUDA_VISIBLE_DEVICES), or `nproc_per_job` of them under torchrun."""
    gpus = _gpu_count()
    pending, running, outcomes = list(jobs), {}, []
    free_slots = list(range(max(1, parallel)))
    while pending or running:
        while pending and free_slots:
            job, slot = pending.pop(0), free_slots.pop(0)
            env = dict(os.environ)
            if gpus:
                first = (slot * nproc_per_job) % gpus
                env["CUDA_VISIBLE_DEVICES"] = ",".join(str((first + i) % gpus) for i in range(nproc_per_job))
            launcher = [sys.executable, "-m", "bench"] if nproc_per_job == 1 else \
                [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc_per_job),
                 "-m", "bench"]
            log = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: a chatty job can never block on it
            proc = subprocess.Popen(launcher + job.argv(out), env=env, stdout=subprocess.DEVNULL, stderr=log, text=True)
            running[proc] = (job, slot, time.perf_counter(), log)
            if progress:
                progress(outcomes, len(running))
        time.sleep(0.2)
        for proc in [p for p in running if p.poll() is not None]:
            job, slot, started, log = running.pop(proc)
            free_slots.append(slot)
            log.seek(0)
            err = log.read()
            log.close()
            lines = [line for line in err.splitlines() if line.strip().startswith("bench:")] or err.splitlines()[-1:]
            outcomes.append(Outcome(job, "done" if proc.returncode == 0 else "failed",
                                    lines[-1].strip() if proc.returncode else "", time.perf_counter() - started))
            if progress:
                progress(outcomes, len(running))
    return outcomes


def run_job(argv: list[str]) -> int:
    """One job inside a submitit worker (a picklable entry point): the same `bench run` process a local job runs."""
    done = subprocess.run([sys.executable, "-m", "bench", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    if done.returncode:
        lines = [line for line in done.stderr.splitlines() if line.strip().startswith("bench:")] or \
            done.stderr.splitlines()[-1:] or [f"exit code {done.returncode}"]
        raise RuntimeError(lines[-1].strip())
    return 0


def run_submitit(jobs: list[Job], out: Path, folder: Path, executor: str = "local", partition: str | None = None,
                 time_min: int = 60, gpus_per_job: int = 0, parallel: int = 1) -> list[Outcome]:
    """The jobs as one submitit job array (SLURM: `executor="slurm"`; a preempted job is requeued by SLURM and
    resumes from its checkpoint, since a run always resumes)."""
    try:
        import submitit
    except ImportError:
        raise BenchError("the submitit launcher needs the submitit package: pip install submitit")
    if executor not in ("local", "slurm"):
        raise BenchError(f"unknown submitit executor {executor!r}; use local or slurm")
    ex = submitit.AutoExecutor(folder=str(folder), cluster=executor)
    params = {"timeout_min": int(time_min), "slurm_array_parallelism": int(parallel)}
    if executor == "slurm":
        params.update(slurm_partition=partition, gpus_per_node=int(gpus_per_job) or None)
        params = {k: v for k, v in params.items() if v is not None}
    else:
        params = {"timeout_min": int(time_min)}
    ex.update_parameters(**params)
    with ex.batch():
        handles = [ex.submit(run_job, job.argv(out)) for job in jobs]
    outcomes = []
    for job, handle in zip(jobs, handles):
        started = time.perf_counter()
        try:
            handle.result()
            outcomes.append(Outcome(job, "done", "", time.perf_counter() - started))
        except Exception as exc:  # the job's own failure, reported with its line
            text = str(exc).strip().splitlines()
            line = next((l for l in reversed(text) if "bench:" in l or "Error" in l), text[-1] if text else "failed")
            outcomes.append(Outcome(job, "failed", line.strip()[:300], time.perf_counter() - started))
    return outcomes


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:
        return 0

