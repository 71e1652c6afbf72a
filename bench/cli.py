"""The `bench` command: run, list, leaderboard."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bench.errors import BenchError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        raise BenchError(f"{message}; see `{self.prog} --help`")


def build_parser() -> argparse.ArgumentParser:
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
    search = run.add_argument_group("search budget (AutoFT)")
    search.add_argument("--trials", type=int, help="outer-loop trials in total (= --set trials=N)")
    search.add_argument("--inner-steps", type=int, help="inner fine-tuning steps per trial (= --set inner_steps=N)")
    search.add_argument("--ood-val-size", type=int, help="OOD-val examples per trial, a protocol setting (= --set ood_val_size=N)")
    search.add_argument("--storage", help="Optuna storage URL or journal file shared by workers (default: in the run folder)")
    search.add_argument("--search-only", action="store_true", help="only add trials to the study (extra workers)")

    ls = sub.add_parser("list", help="list methods, datasets and models")
    ls.add_argument("what", nargs="?", choices=["methods", "datasets", "models", "all"], default="all")
    ls.add_argument("--plugin", action="append", default=[], help="a .py file that registers extra methods")

    data = sub.add_parser("data", help="check dataset folders or download the WILDS datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    chk = data_sub.add_parser("check", help="per dataset and split: present / missing / malformed, sizes, how to get it")
    chk.add_argument("datasets", nargs="*", help="dataset names (default: all)")
    chk.add_argument("--data-root", type=Path, default=os.environ.get("BENCH_DATA_ROOT"))
    dl = data_sub.add_parser("download", help="download iwildcam or fmow with the wilds package (needs network)")
    dl.add_argument("dataset")
    dl.add_argument("--data-root", type=Path, default=os.environ.get("BENCH_DATA_ROOT"))

    lb = sub.add_parser("leaderboard", help="regenerate the leaderboard markdown from the run store")
    lb.add_argument("--runs", type=Path, default=Path("runs"), help="run store folder (default runs/)")
    lb.add_argument("--out", type=Path, default=Path("LEADERBOARD.md"), help="markdown file to write")
    return parser


def cmd_run(args) -> int:
    from bench.cli_output import RichReporter, console, print_summary
    from bench.plugins import load_plugin
    from bench.runner import RunRequest, execute

    for plugin in args.plugin:
        load_plugin(plugin)
    knobs = {"trials": args.trials, "inner_steps": args.inner_steps, "ood_val_size": args.ood_val_size}
    settings = args.settings + [f"{key}={value}" for key, value in knobs.items() if value is not None]
    for seed in args.seed:
        request = RunRequest(method=args.method, dataset=args.dataset, seed=seed, model=args.model,
                             pretrained=args.pretrained, settings=settings, hparams_seed=args.hparams_seed,
                             out=args.out, force=args.force, data_root=args.data_root, device=args.device,
                             storage=args.storage, search_only=args.search_only, reduced=args.reduced,
                             workers=args.workers)
        reporter = None if args.quiet else RichReporter(f"{args.method} on {args.dataset} seed {seed}")
        record, status = execute(request, reporter)
        print_summary(record, status)
    console.print(f"[dim]store: {args.out}   leaderboard: bench leaderboard --runs {args.out}[/dim]")
    return 0


def cmd_list(args) -> int:
    from bench.cli_output import print_listing
    from bench.plugins import load_plugin

    for plugin in args.plugin:
        load_plugin(plugin)
    print_listing(args.what)
    return 0


def cmd_data(args) -> int:
    from bench.cli_output import console, print_data_check
    from bench.data_cli import check, download

    if args.data_command == "download":
        root = download(args.dataset, args.data_root)
        console.print(f"downloaded {args.dataset} into {root}")
        return 0
    from bench.datasets import DATASETS

    rows = check(args.datasets or DATASETS.names(), args.data_root)
    print_data_check(rows)
    return 0 if all(r["status"] in ("present", "embedded") for r in rows) else 1


def cmd_leaderboard(args) -> int:
    from bench.cli_output import console
    from bench.leaderboard import write_leaderboard

    count = write_leaderboard(args.runs, args.out)
    console.print(f"wrote {args.out} from {count} finished runs in {args.runs}")
    return 0


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        commands = {"run": cmd_run, "list": cmd_list, "leaderboard": cmd_leaderboard, "data": cmd_data}
        return commands[args.command](args)
    except BenchError as exc:
        message = str(exc)
        if "Original Traceback" in message:  # re-raised from a DataLoader worker: keep the original line
            message = message.strip().splitlines()[-1].split("BenchError: ", 1)[-1]
        print(f"bench: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted; re-run the same command to resume from the last checkpoint", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("BENCH_DEBUG"):
            raise
        message = str(exc).splitlines()[0] if str(exc) else ""
        print(f"bench: internal error: {type(exc).__name__}: {message} (set BENCH_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
