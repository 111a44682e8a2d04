"""The ``optbench`` command line: thin parsing over functions that tests call directly."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from rich.console import Console

__all__ = ["main", "EXIT_LOCKED"]

EXIT_LOCKED = 75  # EX_TEMPFAIL: another live process trains this run; try again later


def _cmd_optimizers(args: argparse.Namespace, console: Console) -> int:
    from experiments.tables import optimizer_table

    console.print(optimizer_table())
    return 0


def _cmd_bench(args: argparse.Namespace, console: Console) -> int:
    from experiments.bench_optimizers import run_benchmark
    from experiments.tables import bench_markdown, bench_table

    with console.status("benchmarking") as status:
        rows = run_benchmark(
            small=args.small, steps=args.steps, warmup=args.warmup, rounds=args.rounds,
            threads=args.threads, only=args.only, include_peers=not args.no_peers,
            progress=lambda text: status.update(text),
        )
    console.print(bench_table(rows, title=_bench_title(args)))
    if args.markdown:
        print(bench_markdown(rows))
    return 0


def _bench_title(args: argparse.Namespace) -> str:
    size = "ResNet-50/8 shapes (--small)" if args.small else "ResNet-50 shapes, 25.6M params in 161 tensors"
    return f"optimizer step on {size}; median of {args.rounds}x{args.steps} steps, {args.threads} threads"


def _cmd_train(args: argparse.Namespace, console: Console) -> int:
    from experiments.config import load_config

    config = load_config(args.overrides, path=args.config)  # bad input fails before Lightning loads
    from experiments.store import RunLockedError
    from experiments.train import run_dir, train

    try:
        summary = train(config, force=args.force, progress_bar=console.is_terminal)
    except RunLockedError as error:
        print(f"optbench: {error}", file=sys.stderr)
        return EXIT_LOCKED
    where = run_dir(config)
    if summary is None:
        return 0  # another process of a multi-process run: the global rank 0 reports
    if summary.get("skipped"):
        console.print(f"already {summary['status']}: {where} (use --force to run it again)")
        return 0
    if summary["status"] in ("completed", "diverged"):
        best = summary["best"][summary["metric"]]
        console.print(f"{summary['status']}: {where}  {summary['metric']} best={best}  "
                      f"steps_to_target={summary['steps_to_target']}")
        return 0
    print(f"optbench: run {summary['status']}: {summary['error'] or 'stopped early'} ({where})", file=sys.stderr)
    return 1


def _cmd_study(args: argparse.Namespace, console: Console) -> int:
    from experiments.studies import commands

    return getattr(commands, f"study_{args.action}")(args, console)


def _cmd_demo(args: argparse.Namespace, console: Console) -> int:
    from experiments.demo import run_demo

    run_demo(steps=args.steps, console=console)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="optbench", description="Benchmark first-order optimizers.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("optimizers", help="list registered optimizers and their defaults").set_defaults(
        func=_cmd_optimizers
    )

    bench = commands.add_parser("bench", help="benchmarks (step time, state memory)")
    targets = bench.add_subparsers(dest="target", required=True, metavar="TARGET")
    opt = targets.add_parser("optimizers", help="time one step() of every optimizer")
    opt.add_argument("--small", action="store_true", help="ResNet-50 shapes with channels / 8")
    opt.add_argument("--steps", type=_positive_int, default=10, help="timed steps per round (default 10)")
    opt.add_argument("--warmup", type=_positive_int, default=3, help="untimed steps per round (default 3)")
    opt.add_argument("--rounds", type=_positive_int, default=3, help="round-robin rounds (default 3)")
    opt.add_argument("--threads", type=_positive_int, default=2, help="torch threads (default 2)")
    opt.add_argument("--only", nargs="+", metavar="ROW", help="only these rows (plus torch Adam)")
    opt.add_argument("--no-peers", action="store_true", help="skip torch-optimizer / pytorch-optimizer")
    opt.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    opt.set_defaults(func=_cmd_bench)

    train = commands.add_parser("train", help="train one run: optbench train KEY=VALUE ...")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    train.add_argument("--config", help="YAML config file (overrides apply on top)")
    train.add_argument("--force", action="store_true", help="run again even if already finished")
    train.set_defaults(func=_cmd_train)

    _study_parser(commands)

    demo = commands.add_parser("demo", help="a short training demo comparing optimizers")
    demo.add_argument("--steps", type=_positive_int, default=300, help="training steps per optimizer")
    demo.set_defaults(func=_cmd_demo)
    return parser


def _study_parser(commands: argparse._SubParsersAction) -> None:
    """``optbench study run|status|list`` (the commands live in ``experiments.studies.commands``)."""
    study = commands.add_parser("study", help="studies: sweeps, batch-size scaling (run, status, list)")
    actions = study.add_subparsers(dest="action", required=True, metavar="ACTION")
    run = actions.add_parser("run", help="run a study: optbench study run SPEC|BUILTIN [KEY=VALUE ...]")
    run.add_argument("spec", metavar="SPEC|BUILTIN", help="a study spec YAML file or a built-in study name")
    run.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides for every run")
    run.add_argument("--executor", default="local", help="where runs train: local (default) or slurm")
    run.add_argument("--executor-options", nargs="+", default=[], metavar="K=V",
                     help="executor settings, e.g. slurm partition=gpu timeout_min=60")
    run.add_argument("--max-parallel", type=_positive_int, default=1,
                     help="local runs at a time; each gets cores/N torch threads (default 1)")
    run.add_argument("--dry-run", action="store_true", help="list the planned runs; train nothing")
    run.set_defaults(func=_cmd_study)
    status = actions.add_parser("status", help="the runs of a study directory and their status")
    status.add_argument("dir", metavar="DIR", help="the study's directory, <out_dir>/<name>")
    status.add_argument("--json", action="store_true", help='print {"runs": [...], "cells": [...]} as JSON')
    status.set_defaults(func=_cmd_study)
    actions.add_parser("list", help="the built-in studies").set_defaults(func=_cmd_study)


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``optbench`` console script; bad input exits 2 with a one-line error."""
    args = _parser().parse_args(argv)
    console = Console()
    try:
        return args.func(args, console)
    except (ValueError, FileNotFoundError) as error:
        print(f"optbench: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
