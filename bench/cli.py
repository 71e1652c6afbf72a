"""The `bench` command: run, sweep, select, list, data, leaderboard."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bench.errors import BenchError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        raise BenchError(f"{message}; see `{getattr(self, 'help_command', self.prog)} --help`")


def add_method_options(run: argparse.ArgumentParser, method_cls) -> None:
    """The flags a method declares for itself (bench.config.Option), plus --search-only for searching methods."""
    if not method_cls.options and not method_cls.has_search():
        return
    group = run.add_argument_group(f"options of method {method_cls.name}")
    for option in method_cls.options:
        group.add_argument(option.flag, dest=f"method_option_{option.dest}", type=option.type, help=option.help,
                           metavar=option.dest.upper())
    if method_cls.has_search():
        group.add_argument("--search-only", action="store_true",
                           help="only contribute to the method's search (extra workers), no final fine-tune")


def method_of(argv) -> type | None:
    """The method class a `bench run` command line names (after loading its plugins), or None."""
    if not argv or argv[0] != "run":
        return None
    first = _Parser(prog="bench run", add_help=False)
    first.add_argument("--method")
    first.add_argument("--plugin", action="append", default=[])
    known, _ = first.parse_known_args(argv[1:])
    if known.method is None:
        return None
    from bench.methods import METHODS
    from bench.plugins import load_plugin

    for plugin in known.plugin:
        load_plugin(plugin)
    return METHODS.get(known.method)


def build_parser(method_cls: type | None = None) -> argparse.ArgumentParser:
    parser = _Parser(prog="bench", description="Benchmark robust fine-tuning of CLIP models under distribution shift.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run one method on one dataset (per seed), store and summarise the result")
    run.add_argument("--method", required=True, help="method name (`bench list methods`)")
    run.add_argument("--dataset", default="tinyshift", help="dataset name (default: the embedded testbed tinyshift)")
    run.add_argument("--seed", type=int, nargs="+", default=[0], help="one or more seeds (default 0)")
    run.add_argument("--model", help="open_clip architecture (default: the protocol's)")
    run.add_argument("--pretrained", help="pretrained tag or weights file (default: the protocol's)")
    run.add_argument("--out", type=Path, default=Path("runs"), help="run store folder (default runs/)")
    run.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                     help="override a hyperparameter or protocol setting (the latter marks the run unofficial)")
    run.add_argument("--hparams-seed", type=int, default=0, help="0: defaults; N>0: seeded random hyperparameters")
    run.add_argument("--plugin", action="append", default=[], help="a .py file that registers extra methods")
    run.add_argument("--force", action="store_true", help="redo a finished run (the old result stays until the new one is done)")
    run.add_argument("--data-root", type=Path, default=os.environ.get("BENCH_DATA_ROOT"), help="dataset folder root (env BENCH_DATA_ROOT)")
    run.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--workers", type=int, help="DataLoader workers for on-disk data (default: 8 on a GPU, 0 on the CPU)")
    run.add_argument("--reduced", action="store_true", help="the protocol's documented quick budget (unofficial)")
    run.add_argument("--compile", default="auto", choices=["auto", "on", "off"],
                     help="torch.compile the image tower while training (default auto: on CUDA only)")
    run.add_argument("--decode", default="loader", choices=["loader", "device"],
                     help="training JPEGs decoded by the DataLoader workers (default) or on the run's device "
                          "(nvJPEG on CUDA; for on-disk data without a prepared copy)")
    run.add_argument("--track", choices=["tensorboard", "wandb", "mlflow"],
                     help="also log curves and summary there (the package must be installed; off by default)")
    if method_cls is not None:
        add_method_options(run, method_cls)
        # unknown flags are reported by the top parser; point at the help that lists this method's own flags
        run.help_command = parser.help_command = f"bench run --method {method_cls.name}"

    ls = sub.add_parser("list", help="list methods, datasets and models")
    ls.add_argument("what", nargs="?", choices=["methods", "datasets", "models", "all"], default="all")
    ls.add_argument("--plugin", action="append", default=[], help="a .py file that registers extra methods")
    ls.add_argument("-v", "--verbose", action="store_true", help="methods: every hyperparameter with its default "
                    "(for the testbed's protocol), valid range and search space")

    data = sub.add_parser("data", help="check, download and verify datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    chk = data_sub.add_parser("check", help="per dataset and split: present / missing / malformed, sizes, how to get it")
    chk.add_argument("datasets", nargs="*", help="dataset names (default: all)")
    chk.add_argument("--data-root", type=Path, default=os.environ.get("BENCH_DATA_ROOT"))
    chk.add_argument("--deep", action="store_true", help="also decode every image (in parallel) and name unreadable ones")
    dl = data_sub.add_parser("download", help="download and install iwildcam, fmow or imagenet-v2 from its sources")
    dl.add_argument("dataset", nargs="?", help="what to download (without it: the sources table)")
    dl.add_argument("--data-root", type=Path, default=os.environ.get("BENCH_DATA_ROOT"))
    dl.add_argument("--source", help="only this source (names: `bench data download`)")
    dl.add_argument("--from-archive", type=Path, metavar="FILE", help="install an archive fetched by hand (sha256-checked)")
    dl.add_argument("--sources", type=Path, metavar="FILE", help="a JSON sources table of your own, tried first (a lab mirror)")
    dl.add_argument("--allow-unpinned", action="store_true", help="accept a source with no pinned sha256 (it is recorded)")
    dl.add_argument("--keep-archive", action="store_true", help="keep the archive after installing it")
    vf = data_sub.add_parser("verify", help="check split counts against the release and write each dataset's data card")
    vf.add_argument("datasets", nargs="*", help="dataset names (default: every dataset with files in --data-root)")
    vf.add_argument("--data-root", type=Path, default=os.environ.get("BENCH_DATA_ROOT"))
    vf.add_argument("--checksums", action="store_true", help="also hash every file (in parallel) into a manifest and "
                    "compare it with the stored one")
    vf.add_argument("--workers", type=int, help="hashing threads (default 4 per core, at most 32)")
    pr = data_sub.add_parser("prepare", help="decode every image once into a copy at the model's resolution (read "
                             "instead of the files from then on)")
    pr.add_argument("dataset", help="an on-disk dataset")
    pr.add_argument("--data-root", type=Path, default=os.environ.get("BENCH_DATA_ROOT"))
    pr.add_argument("--model", help="prepare for this architecture's input size (default: the protocol's model)")
    pr.add_argument("--size", type=int, help="or this input size in pixels")
    pr.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1), help="decoding processes")
    pr.add_argument("--force", action="store_true", help="remake copies that match their files already")

    sw = sub.add_parser("sweep", help="run a grid of methods x datasets x seeds x hyperparameter draws (missing runs only)")
    sw.add_argument("--config", type=Path, help="a TOML file with the same keys (method, dataset, seed, hparams_seed, "
                                                 "set, launcher, jobs, out, ...); flags given here win")
    sw.add_argument("--method", nargs="+", help="one or more methods")
    sw.add_argument("--dataset", nargs="+", help="one or more datasets (default tinyshift)")
    sw.add_argument("--seed", type=int, nargs="+", help="seeds (default 0)")
    sw.add_argument("--hparams-seed", dest="hparams_seed", type=int, nargs="+", help="hyperparameter draws (0 = defaults)")
    sw.add_argument("--set", dest="set", action="append", metavar="KEY=VALUE", help="a setting for every job")
    sw.add_argument("--model")
    sw.add_argument("--pretrained")
    sw.add_argument("--data-root", dest="data_root", default=os.environ.get("BENCH_DATA_ROOT"))
    sw.add_argument("--out", type=Path, help="run store folder (default runs/)")
    sw.add_argument("--launcher", choices=["local", "submitit"], help="local processes (default) or submitit")
    sw.add_argument("--executor", choices=["local", "slurm"], help="submitit's executor (default local)")
    sw.add_argument("--jobs", type=int, help="jobs at once (local: processes; slurm: array parallelism)")
    sw.add_argument("--nproc-per-job", dest="nproc_per_job", type=int, help="processes per job under torchrun (local)")
    sw.add_argument("--partition", help="SLURM partition")
    sw.add_argument("--time-min", dest="time_min", type=int, help="SLURM time limit per job, minutes (default 60)")
    sw.add_argument("--gpus-per-job", dest="gpus_per_job", type=int, help="GPUs per SLURM job")
    sw.add_argument("--dry-run", action="store_true", help="list what would run, with time estimates from the store")

    sel = sub.add_parser("select", help="pick each method's hyperparameters by ID-val over a sweep's draws")
    sel.add_argument("--runs", type=Path, default=Path("runs"), help="run store folder (default runs/)")

    es = sub.add_parser("estimate", help="GPU-hours per method and dataset from measured step costs and the "
                        "protocols' budgets (assumptions printed)")
    es.add_argument("--method", nargs="+", help="methods (default: all)")
    es.add_argument("--dataset", nargs="+", default=["iwildcam", "fmow", "imagenet"],
                    help="datasets with release split sizes (default: iwildcam fmow imagenet)")
    es.add_argument("--costs", type=Path, help="step-cost JSON (benchmarks/gpu_throughput.py --out; default: the "
                    "committed H200 figures, benchmarks/results/gpu_step_cost.json)")

    ex = sub.add_parser("export", help="a method's runs in another benchmark's submission format (wilds)")
    ex.add_argument("format", choices=["wilds"], help="wilds: the WILDS leaderboard's prediction CSVs")
    ex.add_argument("--dataset", required=True, help="iwildcam or fmow")
    ex.add_argument("--method", required=True, help="the method whose runs (seeds 0-2) are exported")
    ex.add_argument("--hparams-seed", dest="hparams_seed", type=int, default=0, help="which hyperparameter draw (0: defaults)")
    ex.add_argument("--runs", type=Path, default=Path("runs"), help="run store folder (default runs/)")
    ex.add_argument("--out", type=Path, required=True, help="a new (or empty) folder for the files")

    lb = sub.add_parser("leaderboard", help="regenerate the leaderboard markdown from the run store")
    lb.add_argument("--runs", type=Path, action="append", help="run store folder or bundle file (default runs/); "
                    "repeat to merge stores from several machines or people (then --out is required)")
    lb.add_argument("--out", type=Path, help="markdown file to write (default: LEADERBOARD.md for the committed runs/, "
                    "else <runs>/LEADERBOARD.md, so another store never overwrites the committed page)")
    bd = sub.add_parser("bundle", help="pack finished runs (records, predictions, checksums) into one file to share")
    bd.add_argument("runs", type=Path, nargs="+", help="run store folders")
    bd.add_argument("--out", type=Path, required=True, help="the bundle file to write (.tar.gz; never overwritten)")
    bd.add_argument("--weights", action="store_true", help="also the runs' stored weights (large)")
    lb.add_argument("--calibration", action="store_true", help="add a table of expected calibration error per split")
    return parser


def cmd_run(args) -> int:
    from bench.cli_output import RichReporter, console, print_summary
    from bench.plugins import load_plugin
    from bench.runner import RunRequest, execute

    from bench.methods import METHODS

    for plugin in args.plugin:
        load_plugin(plugin)
    method_cls = METHODS.get(args.method)
    settings, options = list(args.settings), {}
    for option in method_cls.options:
        value = getattr(args, f"method_option_{option.dest}", None)
        if value is None:
            continue
        if option.setting:
            settings.append(f"{option.setting}={value}")
        else:
            options[option.dest] = value
    from bench.tracking import Tracker, TrackingReporter, check_tracker

    check_tracker(args.track)
    main_rank = distributed_init()  # under torchrun: join the group; only rank 0 reports
    for seed in args.seed:
        request = RunRequest(method=args.method, dataset=args.dataset, seed=seed, model=args.model,
                             pretrained=args.pretrained, settings=settings, hparams_seed=args.hparams_seed,
                             out=args.out, force=args.force, data_root=args.data_root, device=args.device,
                             options=options, search_only=getattr(args, "search_only", False),
                             reduced=args.reduced, workers=args.workers, compile=args.compile,
                             decode=args.decode)
        label = f"{args.method} on {args.dataset} seed {seed}"
        reporter = None if args.quiet or not main_rank else RichReporter(label)
        tracker = None
        if args.track and main_rank:
            name = f"{args.method}-{args.dataset}-seed{seed}-draw{args.hparams_seed}"
            tracker = Tracker(args.track, name, Path(args.out) / ".tracking", {"method": args.method, "dataset":
                              args.dataset, "seed": seed, "hparams_seed": args.hparams_seed, "settings": settings})
            reporter = TrackingReporter(tracker, reporter)
        try:
            record, status = execute(request, reporter)
            if tracker is not None and status == "done":
                tracker.summary(record)
        finally:
            if tracker is not None:
                tracker.close()
        if main_rank:
            print_summary(record, status)
    if main_rank:
        console.print(f"[dim]store: {args.out}   leaderboard: bench leaderboard --runs {args.out}[/dim]")
    return 0


def distributed_init() -> bool:
    """Join torchrun's process group when there is one; True on the rank that reports (rank 0 or alone)."""
    from bench.runner import join_process_group

    return join_process_group()


def cmd_list(args) -> int:
    from bench.cli_output import print_listing
    from bench.plugins import load_plugin

    for plugin in args.plugin:
        load_plugin(plugin)
    print_listing(args.what, args.verbose)
    return 0


def cmd_data(args) -> int:
    from bench.cli_output import console
    from bench.datasets import DATASETS

    if args.data_command == "download":
        return _data_download(args)
    if args.data_command == "prepare":
        return _data_prepare(args)
    names = args.datasets or DATASETS.names()
    for name in names:
        DATASETS.get(name)  # an unknown name fails before any folder is read
    if args.data_command == "verify":
        return _data_verify(args, names)
    from bench.cli_output import decode_progress, print_data_check
    from bench.data_cli import check
    from bench.datasets.check import failures

    with decode_progress(args.deep) as progress:
        findings = check(names, args.data_root, args.deep, progress)
    print_data_check(findings)
    return 1 if failures(findings) else 0


def _data_download(args) -> int:
    from bench.cli_output import console, download_progress, print_sources
    from bench.data_cli import download, sources_of

    if args.dataset is None:
        print_sources(sources_of(args.sources))
        return 0
    with download_progress() as progress:
        done = download(args.dataset, args.data_root, args.source, args.from_archive, args.sources,
                        args.allow_unpinned, args.keep_archive, progress,
                        say=lambda line: print(f"bench: {line}", file=sys.stderr))
    console.print(f"installed {done.item} from {done.source} into {done.folder}; next: `bench data verify "
                  f"--data-root {done.folder.parent}`")
    return 0


def _data_prepare(args) -> int:
    from bench.cli_output import console, decode_progress
    from bench.data_cli import prepare

    with decode_progress(True) as progress:
        done = prepare(args.dataset, args.data_root, args.model, args.size, args.workers, args.force, progress)
    for split, folder, made in done:
        console.print(f"{split}: {'written to' if made else 'up to date in'} {folder}")
    return 0


def _data_verify(args, names) -> int:
    from bench.cli_output import hashing_progress, print_verification
    from bench.data_cli import verify

    if args.workers is not None and not 1 <= args.workers <= 1024:
        raise BenchError(f"--workers {args.workers} is out of range; pass 1 to 1024 hashing threads")
    if not args.datasets:  # all: only those with files under the data root (the testbed is embedded)
        from bench.data_cli import present

        names = present(names, args.data_root)
        if not names:
            raise BenchError(f"no dataset folders in {args.data_root or os.environ.get('BENCH_DATA_ROOT')}; "
                             "`bench data check` lists where each dataset goes")
    with hashing_progress(args.checksums) as progress:
        results = verify(names, args.data_root, args.checksums, args.workers, progress)
    print_verification(results)
    return 0 if all(r.ok for r in results) else 1


def cmd_sweep(args) -> int:
    from bench.cli_output import print_sweep_plan, print_sweep_result, sweep_progress
    from bench.sweep import estimate_seconds, expand, load_spec, run_local, run_submitit, state

    keys = ("method", "dataset", "seed", "hparams_seed", "set", "model", "pretrained", "data_root", "out", "launcher",
            "executor", "jobs", "nproc_per_job", "partition", "time_min", "gpus_per_job")
    spec = load_spec(args.config, {k: getattr(args, k) for k in keys})
    sweep = expand(spec)
    states = {job: state(job, sweep.out) for job in sweep.jobs}
    todo = [job for job in sweep.jobs if states[job] != "done"]
    if args.dry_run:
        print_sweep_plan(sweep.jobs, states, estimate_seconds(todo, sweep.out))
        return 0
    options = sweep.options
    if not todo:
        outcomes = []
    elif options.get("launcher", "local") == "submitit":
        outcomes = run_submitit(todo, sweep.out, sweep.out / ".submitit", options.get("executor", "local"),
                                options.get("partition"), options.get("time_min", 60), options.get("gpus_per_job", 0),
                                options.get("jobs", 1))
    else:
        with sweep_progress(len(todo)) as progress:
            outcomes = run_local(todo, sweep.out, options.get("jobs", 1), options.get("nproc_per_job", 1), progress)
    print_sweep_result(len(sweep.jobs) - len(todo), outcomes)
    return 1 if any(o.status == "failed" for o in outcomes) else 0


def cmd_select(args) -> int:
    from bench.cli_output import print_selection
    from bench.leaderboard.selection import select
    from bench.store import RunStore

    print_selection(select(RunStore(args.runs).records()))
    return 0


def cmd_estimate(args) -> int:
    from bench.cli_output import print_estimate
    from bench.estimate import estimate, load_costs
    from bench.methods import METHODS

    print_estimate(estimate(args.method or METHODS.names(), args.dataset, load_costs(args.costs)))
    return 0


def cmd_export(args) -> int:
    from bench.cli_output import console
    from bench.datasets import DATASETS
    from bench.leaderboard.wilds_export import export_wilds
    from bench.methods import METHODS

    DATASETS.get(args.dataset), METHODS.get(args.method)  # unknown names: did-you-mean, before anything is read
    files = export_wilds(args.runs, args.dataset, args.method, args.out, args.hparams_seed)
    console.print(f"wrote {len(files)} WILDS prediction files to {args.out} ({args.method} on {args.dataset}, "
                  "seeds 0-2; score them with WILDS' examples/evaluate.py)", markup=False)
    return 0


def cmd_leaderboard(args) -> int:
    import tarfile
    import tempfile

    from bench.cli_output import console
    from bench.leaderboard import write_leaderboard
    from bench.leaderboard.sharing import merged_store

    sources = args.runs or [Path("runs")]
    for source in sources:  # every source checked before anything is read or written
        if source.is_file() and not tarfile.is_tarfile(source):
            raise BenchError(f"run store {source} does not exist: it is a file, and not a bundle; pass --runs DIR or "
                             "a file made by `bench bundle`")
        if not source.exists():
            raise BenchError(f"run store {source} does not exist; run `bench run --method ft` first or pass --runs DIR")
    if len(sources) == 1 and not sources[0].is_file():
        runs = sources[0]
        if args.out is None:
            args.out = Path("LEADERBOARD.md") if runs == Path("runs") else runs / "LEADERBOARD.md"
        board = write_leaderboard(runs, args.out, calibration=args.calibration)
        for where, reason in board.problems:
            print(f"bench: warning: record {runs / where} fails the schema, left out: {reason}", file=sys.stderr)
    else:
        if args.out is None:
            raise BenchError("merging several stores or a bundle needs --out FILE (where the merged page goes); "
                             "nothing was written")
        with tempfile.TemporaryDirectory(prefix="bench-merge-") as tmp:
            board = write_leaderboard(merged_store(sources, Path(tmp) / "store"), args.out,
                                      calibration=args.calibration)
    where = " + ".join(map(str, sources))
    console.print(f"wrote {args.out} from {len(board.records)} finished runs in {where}", markup=False)
    return 0


def cmd_bundle(args) -> int:
    from bench.cli_output import console
    from bench.leaderboard.sharing import bundle

    n = bundle(args.runs, args.out, args.weights)
    console.print(f"wrote {args.out}: {n} runs with their predictions and checksums (merge it with "
                  f"`bench leaderboard --runs runs --runs {args.out} --out FILE`)", markup=False)
    return 0


def main(argv=None) -> int:
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        args = build_parser(method_of(argv)).parse_args(argv)
        commands = {"run": cmd_run, "list": cmd_list, "leaderboard": cmd_leaderboard, "data": cmd_data,
                    "sweep": cmd_sweep, "select": cmd_select, "estimate": cmd_estimate,
                    "export": cmd_export, "bundle": cmd_bundle}
        return commands[args.command](args)
    except BenchError as exc:
        message = str(exc)
        if "Original Traceback" in message:  # re-raised from a DataLoader worker: keep the original line
            last = message.strip().splitlines()[-1]
            message = last.split(": ", 1)[-1] if last.startswith(("bench.errors.", "BenchError")) else last
        print(f"bench: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted; re-run the same command to resume from the last checkpoint", file=sys.stderr)
        return 130
    except SystemExit as exc:
        if exc.code in (0, None) or (argv and any(a in ("-h", "--help") for a in argv)):
            raise  # --help and normal exits
        print(f"bench: error: method or plugin code called sys.exit({exc.code!r}); a method must raise instead "
              "(nothing was stored for the run)", file=sys.stderr)
        return 2
    except Exception as exc:
        if os.environ.get("BENCH_DEBUG"):
            raise
        message = str(exc).splitlines()[0] if str(exc) else ""
        print(f"bench: internal error: {type(exc).__name__}: {message} (set BENCH_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
