"""Terminal output for the CLI: rich progress while training, a one-screen summary, listings."""
from __future__ import annotations

from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console()
progress_console = Console(stderr=True)


class RichReporter:
    def __init__(self, title: str):
        self.title = title
        self.progress = None
        self.task = None

    def start(self, total: int, done: int) -> None:
        self.total = total
        if not progress_console.is_terminal:  # piped or logged: a plain line per evaluation instead of a live bar
            progress_console.print(f"{self.title}: training {total} steps" + (f" (resuming at {done})" if done else ""),
                                   markup=False)
            return
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("loss {task.fields[loss]}  id_val {task.fields[val]}"),
                                 TimeElapsedColumn(), console=progress_console, transient=False)
        self.progress.start()
        self.task = self.progress.add_task(self.title, total=total, completed=done, loss="-", val="-")

    def step(self, step: int, loss: float) -> None:
        self.loss = loss
        if self.progress is None:
            return
        if step % 5 == 0 or step == self.progress.tasks[0].total:
            self.progress.update(self.task, completed=step, loss=f"{loss:.3f}")

    def trial(self, number: int, value: float) -> None:
        progress_console.print(f"[dim]trial {number}: OOD-val score {value:.2f}[/dim]")

    def evaluated(self, step: int, score: float) -> None:
        if self.progress is None:
            loss = getattr(self, "loss", None)
            progress_console.print(f"{self.title}: step {step}/{self.total}"
                                   + ("" if loss is None else f", loss {loss:.3f}") + f", id_val {score:.2f}", markup=False)
            return
        self.progress.update(self.task, completed=step, val=f"{score:.1f}")

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def _method_class(name: str):
    from bench.methods import METHODS

    try:
        return METHODS.get(name)
    except Exception:  # a record of a plugin that is not loaded: print the generic parts only
        return None


def print_summary(record: dict, status: str) -> None:
    cls = _method_class(record["method"])
    if status == "searched":
        line = cls.search_summary(record["search"]) if cls else None
        console.print(f"search finished ({record['search_s']:.1f}s here)" + (f": {line}" if line else ""))
        return
    metric = record["metric"]
    title = (f"{record['method']} on {record['dataset']} (seed {record['seed']}, variant {record['reported_variant']})"
             + ("" if record["official"] else " [unofficial]"))
    table = Table(title=escape(title))  # rich would read "[unofficial]" as a markup tag and drop it
    table.add_column("split")
    table.add_column("role")
    table.add_column(metric, justify="right")
    protocol_roles = _roles(record)
    for split, values in record["metrics"].items():
        table.add_row(split, protocol_roles.get(split, ""), f"{values[metric]:.2f}")
    table.add_row("OOD avg", "ood tests", f"{record['summary']['ood_avg']:.2f}", style="bold")
    console.print(table)
    t = record["timing"]
    speed = f", {t['train_images_per_s']:.0f} train images/s" if t.get("train_images_per_s") else ""
    sel = record["selection"]
    best = f", best id_val at step {sel['best_step']}" if "best_step" in sel else ""
    line = cls.search_summary(record.get("method_info", {})) if cls else None
    if line:
        console.print(f"{line} ({t.get('search_s', 0):.1f}s)")
    if status == "skipped":  # the stored run's figures, not this command's: say whose they are
        device = record.get("env", {}).get("device", "unknown device")
        console.print(f"skipped: run {record['run_id']} is already in the store (--out; --force redoes it). The "
                      f"figures above are that stored run's: {t['total_s']:.1f}s total on {device}{best}")
        return
    console.print(f"done: {t['total_s']:.1f}s total ({t['train_s']:.1f}s train{speed}{best}); run {record['run_id']}")


def _roles(record: dict) -> dict:
    from bench.datasets import DATASETS

    try:
        p = DATASETS.get(record["dataset"]).protocol
    except Exception:
        return {}
    roles = {p.id_val_split: "id val", p.ood_val_split: "ood val", p.id_test_split: "id test"}
    roles.update({s: "ood test" for s in p.ood_test_splits})
    return roles


def print_hparams() -> None:
    """Every method's hyperparameters: default (functions of the protocol shown for the testbed's), range, space."""
    from bench.config import short_value
    from bench.methods import METHODS
    from bench.protocols.tinyshift import TINYSHIFT

    table = Table(title="method hyperparameters (--set NAME=VALUE; defaults for the tinyshift protocol)")
    for column in ("method", "name", "default", "valid", "search space (--hparams-seed)", "meaning"):
        table.add_column(column, overflow="fold")
    for name in METHODS.names():
        for key, hp in sorted(METHODS.get(name).hparams.items()):
            default = short_value(hp.default_for(TINYSHIFT)) + (" (per protocol)" if callable(hp.default) else "")
            space = " ".join(map(short_value, hp.space)) if hp.space else "fixed"
            table.add_row(name, key, default, hp.valid.describe() if hp.valid else "any", space, hp.help)
    console.print(table)


def print_listing(what: str, verbose: bool = False) -> None:
    from bench.datasets import DATASETS
    from bench.methods import METHODS

    if what in ("methods", "all"):
        table = Table(title="methods")
        table.add_column("name")
        table.add_column("description")
        for name in METHODS.names():
            table.add_row(name, METHODS.get(name).description)
        console.print(table)
        if verbose:
            print_hparams()
    if what in ("datasets", "all"):
        table = Table(title="datasets")
        table.add_column("name")
        table.add_column("protocol")
        table.add_column("description")
        for name in DATASETS.names():
            cls = DATASETS.get(name)
            table.add_row(name, cls.protocol.id, cls.description)
        console.print(table)
    if what in ("models", "all"):
        from bench.models import SHIPPED_WEIGHTS, list_architectures, open_clip_module

        oc = open_clip_module()
        table = Table(title="models (open_clip architectures; tags need the hub unless shipped)")
        table.add_column("architecture")
        table.add_column("pretrained tags")
        for arch in list_architectures():
            shipped = [f"{tag} (shipped)" for (a, tag) in SHIPPED_WEIGHTS if a == arch]
            tags = shipped + list(oc.list_pretrained_tags_by_model(arch))
            if what == "models" or shipped or arch in ("ViT-B-16", "ViT-B-32", "ViT-L-14"):
                table.add_row(arch, ", ".join(tags) or "-")
        console.print(table)
        if what == "all":
            console.print(f"[dim]{len(list_architectures())} architectures in all: `bench list models`[/dim]")


def decode_progress(enabled: bool):
    """A progress display for `--deep` decoding (on stderr), or a no-op."""
    from contextlib import nullcontext

    if not enabled:
        return nullcontext(None)
    return Progress(TextColumn("decoding {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=progress_console, transient=True)


def hashing_progress(enabled: bool):
    """Files hashed per dataset for `bench data verify --checksums` (on stderr), or a no-op."""
    from contextlib import nullcontext

    if not enabled:
        return nullcontext(None)
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=progress_console, transient=True)


def print_data_check(findings: list) -> None:
    """A table on a terminal; when piped, plain lines that never cut a path (one line per note)."""
    if not console.is_terminal:
        for f in findings:
            sizes = "" if f.count is None else f" {f.count}" + ("" if f.expected is None else f"/{f.expected}")
            print(f"{f.dataset}\t{f.split}\t{f.status}{sizes}")
            for note in f.notes:
                print(f"    {note}")
        return
    table = Table(title="datasets on disk")
    for column in ("dataset", "split", "status", "count", "expected", "note"):
        table.add_column(column, overflow="fold")
    colour = {"present": "green", "embedded": "green", "incomplete": "yellow", "missing": "yellow", "malformed": "red"}
    for f in findings:
        table.add_row(f.dataset, f.split, f"[{colour[f.status]}]{f.status}[/]",
                      "" if f.count is None else str(f.count), "" if f.expected is None else str(f.expected),
                      "\n".join(f.notes))
    console.print(table)


def print_sweep_plan(jobs, states: dict, estimates: dict) -> None:
    table = Table(title=f"sweep: {len(jobs)} jobs")
    for column in ("job", "state", "estimate"):
        table.add_column(column)
    total = 0.0
    for job in jobs:
        est = estimates.get(job) if states[job] != "done" else None
        total += est or 0.0
        table.add_row(job.label, states[job], "–" if est is None else f"{est:.0f}s")
    console.print(table)
    todo = sum(1 for job in jobs if states[job] != "done")
    console.print(f"would run {todo} of {len(jobs)} (the others are done); estimated {total:.0f}s of runs "
                  "(from the store's finished runs of the same method and dataset; '–' where there are none)")


def print_estimate(est) -> None:
    """`bench estimate`: one table per dataset (H200-hours for all of a protocol's seeds), then the assumptions."""
    for dataset, total in est.totals().items():
        rows = [r for r in est.rows if r.dataset == dataset]
        table = Table(title=f"{dataset}: {total:.1f} GPU-hours on {est.costs.device} ({rows[0].runs} seeds per method)")
        for column in ("method", "train h", "search h", "eval h", "inputs h", "total h", "step cost"):
            table.add_column(column, justify="left" if column in ("method", "step cost") else "right")
        for r in rows:
            table.add_row(r.method, *(f"{v:.2f}" for v in (r.train_h, r.search_h, r.eval_h, r.inputs_h, r.total_h)),
                          r.step_source)
        console.print(table)
    console.print("assumptions:", markup=False)
    for line in est.assumptions:
        console.print(f"  - {line}", markup=False, soft_wrap=True)


@contextmanager
def sweep_progress(total: int):
    """A callback(outcomes, running) that shows done / running / failed."""
    progress = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("done {task.fields[done]}  running {task.fields[running]}  failed {task.fields[failed]}"),
                        TimeElapsedColumn(), console=console, transient=False)
    task = progress.add_task("sweep", total=total, done=0, running=0, failed=0)

    def update(outcomes, running):
        failed = sum(1 for o in outcomes if o.status == "failed")
        progress.update(task, completed=len(outcomes), done=len(outcomes) - failed, running=running, failed=failed)

    with progress:
        yield update


def print_sweep_result(already_done: int, outcomes) -> None:
    failed = [o for o in outcomes if o.status == "failed"]
    console.print(f"sweep: {len(outcomes) - len(failed)} ran, {already_done} were already done, {len(failed)} failed")
    for o in failed:
        console.print(f"  failed: {o.job.label}: {o.error}", markup=False)


def print_selection(selections) -> None:
    table = Table(title="selection by mean ID-val over seeds")
    for column in ("dataset", "model", "method", "draws", "chosen draw", "seeds", "mean ID-val", "hyperparameters"):
        table.add_column(column)
    for s in selections:
        c = s.chosen
        table.add_row(s.dataset, s.model, s.method, str(s.draws), ", ".join(map(str, c.hparams_seeds)),
                      str(len(c.seeds)), f"{c.id_val:.2f} {s.metric}", s.hparams_text)
    console.print(table)


class _LazyProgress:
    """A rich Progress that starts with its first bar: a command that fails before any transfer prints only its
    error line (a started live display ends with an empty line)."""

    def __init__(self, progress: Progress):
        self._progress, self._started = progress, False

    def add_task(self, *args, **kwargs):
        if not self._started:
            self._progress.start()
            self._started = True
        return self._progress.add_task(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._progress, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._started:
            self._progress.stop()


def download_progress():
    """Bytes, speed and time left per archive (on stderr); hashing and extraction show as their own bars."""
    from rich.progress import DownloadColumn, TimeRemainingColumn, TransferSpeedColumn

    return _LazyProgress(Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                  TransferSpeedColumn(), TimeRemainingColumn(), console=progress_console, transient=True))


def print_sources(items: dict) -> None:
    table = Table(title="download sources (tried in this order)")
    for column in ("item", "source", "where", "size", "sha256"):
        table.add_column(column, overflow="fold")
    for item in items.values():
        for s in item.sources:
            where = s.url if s.kind == "http" else f"hf:{s.repo}/{s.file}@{s.revision}"
            table.add_row(item.name, s.name, where, f"{s.size:,}" if s.size else f"~{s.approx_size or 0:,}",
                          s.sha256[:16] + "..." if s.sha256 else "unpinned")
    console.print(table)


def print_verification(results: list) -> None:
    for r in results:
        if r.embedded:
            console.print(f"{r.dataset}: embedded testbed (generated by bench's code): nothing to verify")
            continue
        print_data_check(r.findings)
        for change in r.changes:
            console.print(f"{r.dataset}: {change}", markup=False, highlight=False)
        if r.card is not None:
            console.print(f"{r.dataset}: verified; data card {r.card} (sha256 {r.card_sha256[:12]})", markup=False)
        else:
            console.print(f"{r.dataset}: NOT verified (nothing written): fix what is listed above, or re-download it",
                          markup=False)
