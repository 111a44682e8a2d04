"""The ``optbench`` command line: thin parsing over functions that tests call directly.

Exit status (study executors and job scripts rely on it): 0 a completed or diverged run (or one
already finished, skipped); 1 a failed run; 2 bad input; 75 a run another live process is
training (try again later); 130 / 143 a run interrupted by SIGINT / SIGTERM (the same command
resumes it). Errors are one line on stderr; the result is one line on
stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Any, NoReturn, Optional, Sequence

from rich.console import Console

from experiments.store import EXIT_LOCKED, FINISHED

__all__ = ["main", "result_line", "EXIT_LOCKED"]


class _Parser(argparse.ArgumentParser):
    """argparse with bad arguments reported as every other bad input is: one line, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"optbench: error: {message} (see '{self.prog} --help')\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text}")
    return value


def _launch_rank_zero() -> bool:
    """Whether this process reports (progress, interruptions), decided before Lightning knows its
    rank: not a process that Lightning's DDP launcher, torchrun or srun started as another rank.
    Only what is printed depends on this; the trainer's global rank decides what is written."""
    return all(int(os.environ.get(name, 0)) == 0 for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK"))


def _version() -> str:
    try:
        return version("optbench")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _number(value: Optional[float]) -> str:
    return "none" if value is None else f"{value:.4g}"


def result_line(summary: dict[str, Any], where: str) -> str:
    """The one line ``optbench train`` ends with, e.g. ``completed: runs/default/0a1b2c3d4e5f
    val/acc best=0.9612  steps_to_target=600 (target 0.93)  300 steps in 37.2s`` (a diverged
    run's step count is where it stopped). Printed as plain text: never wrapped."""
    from experiments.callbacks.progress import format_duration

    metric = summary["metric"]
    reached = summary["steps_to_target"]
    reached_text = reached if reached is not None else "not reached"
    target = f"steps_to_target={reached_text} (target {_number(summary['target'])})"
    return (f"{summary['status']}: {where}  {metric} best={_number(summary['best'][metric])}  {target}  "
            f"{summary['global_step']} steps in {format_duration(summary['wall_time_s'])}")


def _cmd_optimizers(args: argparse.Namespace, console: Console) -> int:
    from experiments.optimizer_listing import optimizer_table

    console.print(optimizer_table())
    return 0


def _cmd_bench(args: argparse.Namespace, console: Console) -> int:
    from experiments.bench.optimizer_steps import missing_peers, time_optimizer_steps
    from experiments.bench.optimizer_step_table import bench_markdown, bench_table

    with console.status("benchmarking") as status:
        rows = time_optimizer_steps(
            small=args.small, steps=args.steps, warmup=args.warmup, rounds=args.rounds,
            threads=args.threads, only=args.only, include_peers=not args.no_peers,
            progress=lambda text: status.update(text), device=args.device,
        )
    console.print(bench_table(rows, title=_bench_title(args)))
    missing = missing_peers()
    if missing and not args.no_peers:
        print(f"peer rows left out: {', '.join(missing)} not installed (pip install 'optbench[bench]')")
    if args.markdown:
        print(bench_markdown(rows))
    return 0


def _cmd_bench_analysis(args: argparse.Namespace, console: Console) -> int:
    from pathlib import Path

    from rich.table import Table

    from experiments.bench.analysis_speed import time_analysis

    with console.status("benchmarking") as status:
        rows = time_analysis(args.runs, args.steps, Path(args.dir) if args.dir else None,
                             progress=lambda text: status.update(text))
    table = Table(title=f"analysis of {args.runs} runs x {args.steps} logged steps")
    for column, justify in (("stage", "left"), ("seconds", "right"), ("", "left")):
        table.add_column(column, justify=justify)
    for stage, seconds, note in rows:
        table.add_row(stage, f"{seconds:.2f}", note)
    console.print(table)
    return 0


def _cmd_bench_harness(args: argparse.Namespace, console: Console) -> int:
    from rich.table import Table

    from experiments.bench.harness import ratios, setting, time_harness

    with console.status("benchmarking") as status:
        rows = time_harness(args.overrides, args.rounds, progress=lambda text: status.update(text))
    table = Table(title=f"optbench train vs a bare loop ({setting(args.overrides)}); medians of {args.rounds} rounds")
    for column, justify in (("row", "left"), ("samples/s", "right"), ("x bare", "right"), ("rounds", "left")):
        table.add_column(column, justify=justify)
    relative = ratios(rows)
    for row in rows:
        table.add_row(row.name, f"{row.median:.0f}", f"{relative[row.name]:.3f}",
                      " ".join(f"{value:.0f}" for value in row.samples_per_s))
    console.print(table)
    return 0


def _bench_title(args: argparse.Namespace) -> str:
    size = "ResNet-50/8 shapes (--small)" if args.small else "ResNet-50 shapes, 25.6M params in 161 tensors"
    where = "CUDA events" if args.device == "cuda" else f"{args.threads} threads"
    return f"optimizer step on {size}; median of {args.rounds}x{args.steps} steps, {where}"


def _cmd_config(args: argparse.Namespace, console: Console) -> int:
    from experiments.config import load_config, to_yaml

    print(to_yaml(load_config(args.overrides, path=args.config)), end="")
    return 0


def _cmd_train(args: argparse.Namespace, console: Console) -> int:
    from experiments.config import load_config

    config = load_config(args.overrides, path=args.config)  # bad input fails before Lightning loads
    from experiments.callbacks import progress
    from experiments.callbacks.interrupt import Interrupted
    from experiments.store import RunLockedError
    from experiments.train import run_dir, train

    reporter = _launch_rank_zero()
    if reporter:  # DDP children build the same data: one report is enough
        progress.report_to(sys.stderr)
    where = run_dir(config)
    try:
        summary = train(config, force=args.force, progress_every_s=args.progress_every)
    except RunLockedError as error:
        print(f"optbench: {error}", file=sys.stderr)
        return EXIT_LOCKED
    except Interrupted as interrupted:
        if reporter:
            resumes = "resumes it" if (where / "config.yaml").is_file() else "starts it again"
            print(f"optbench: run {interrupted} ({where}); the same command {resumes}", file=sys.stderr)
        return interrupted.exit_code
    if summary is None:
        return 0  # another process of a multi-process run: the global rank 0 reports
    if summary.get("skipped"):
        print(f"already {summary['status']}: {where} (use --force to run it again)")
        return 0
    if summary["status"] in FINISHED:
        print(result_line(summary, str(where)))
        return 0
    print(f"optbench: run {summary['status']}: {summary['error'] or 'stopped early'} ({where})", file=sys.stderr)
    return 1


def _cmd_study(args: argparse.Namespace, console: Console) -> int:
    from experiments.studies import commands

    return getattr(commands, f"study_{args.action}")(args, console)


def _cmd_demo(args: argparse.Namespace, console: Console) -> int:
    """The built-in ``demo`` study (every task, a batch-size slice), then its report."""
    from experiments.studies.plan import plan_study
    from experiments.studies.spec import load_spec

    study = argparse.Namespace(action="run", spec="demo", overrides=args.overrides, executor="local",
                               executor_options=[], max_parallel=args.max_parallel, dry_run=False)
    code = _cmd_study(study, console)
    if code != 0:
        return code
    study_dir = plan_study(load_spec("demo"), args.overrides).study_dir
    report = argparse.Namespace(sources=[str(study_dir)], out=args.out, cache_dir=None, no_cache=False)
    return _cmd_analyze(report, console)


def _cmd_analyze(args: argparse.Namespace, console: Console) -> int:
    import pandas as pd

    from analysis.frames import Frames
    from analysis.load import load
    from analysis.report import write_report

    cache = {"cache_dir": None} if args.no_cache else {} if args.cache_dir is None else {"cache_dir": args.cache_dir}
    loaded = []
    for source in args.sources:  # one at a time, so that an empty source is named
        frames = load([source], **cache)
        if frames.runs.empty:
            raise ValueError(f"no runs in {source}")
        loaded.append(frames)
    frames = Frames(*(pd.concat([getattr(f, part) for f in loaded], ignore_index=True) if len(loaded) > 1
                      else getattr(loaded[0], part) for part in ("runs", "metrics", "layers")))
    page = write_report(frames, args.out, list(args.sources))
    console.print(f"report: {page} ({len(frames.runs)} runs)")
    return 0


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (keys below)")
    parser.add_argument("--config", metavar="FILE", help="YAML config file (overrides apply on top)")


def _parser() -> argparse.ArgumentParser:
    from experiments.config import config_reference

    parser = _Parser(prog="optbench", description="Benchmark first-order optimizers.")
    parser.add_argument("--version", action="version", version=f"optbench {_version()}")
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
    opt.add_argument("--no-peers", action="store_true",
                     help="skip torch-optimizer / pytorch-optimizer (left out anyway without the bench extra)")
    opt.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    opt.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to step (default cpu)")
    opt.set_defaults(func=_cmd_bench)

    analysis = targets.add_parser("analysis", help="time loading, comparing and plotting a generated store")
    analysis.add_argument("--runs", type=_positive_int, default=1000, help="runs in the store (default 1000)")
    analysis.add_argument("--steps", type=_positive_int, default=5000, help="logged steps per run (default 5000)")
    analysis.add_argument("--dir", help="generate (and keep) the store here (default: a temporary directory)")
    analysis.set_defaults(func=_cmd_bench_analysis)

    harness = targets.add_parser("harness", help="time optbench train against a bare PyTorch loop")
    harness.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                         help="config overrides (default: task=vision optimizer.name=adamw trainer.max_steps=300)")
    harness.add_argument("--rounds", type=_positive_int, default=5, help="alternating rounds (default 5)")
    harness.set_defaults(func=_cmd_bench_harness)

    keys = f"config keys and their defaults:\n\n{config_reference()}"
    train = commands.add_parser(
        "train", help="train one run: optbench train KEY=VALUE ...", epilog=keys,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train one run into <out_dir>/<study>/<run_id>/. Exit status: 0 completed, diverged or "
                    "already finished; 1 failed; 2 bad input; 75 trained by another live process; "
                    "130/143 interrupted by SIGINT/SIGTERM (the same command resumes it).",
    )
    _add_config_arguments(train)
    train.add_argument("--force", action="store_true", help="run again even if already finished")
    train.add_argument("--progress-every", type=_seconds, default=5.0, metavar="SECONDS",
                       help="progress line interval when stderr is not a terminal (default 5)")
    train.set_defaults(func=_cmd_train)

    analyze = commands.add_parser("analyze", help="tables, figures and an HTML report from runs")
    analyze.add_argument("sources", nargs="+", metavar="SOURCE",
                         help="run-store directory, directory of wandb runs, or wandb:ENTITY/PROJECT[/GROUP]")
    analyze.add_argument("--out", required=True, help="report directory (index.html, tables/, figures/)")
    analyze.add_argument("--cache-dir", help="parquet cache (default $OPTBENCH_CACHE_DIR or ~/.cache/optbench/analysis)")
    analyze.add_argument("--no-cache", action="store_true", help="read every run again, write no cache")
    analyze.set_defaults(func=_cmd_analyze)

    config = commands.add_parser(
        "config", help="print the resolved config of KEY=VALUE ... without training", epilog=keys,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_config_arguments(config)
    config.set_defaults(func=_cmd_config)

    _study_parser(commands)

    demo = commands.add_parser("demo", help="the demo study (all tasks, a batch-size slice) and its report")
    demo.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides for every run")
    demo.add_argument("--max-parallel", type=_positive_int, default=2, help="runs at a time (default 2)")
    demo.add_argument("--out", default="report/demo", help="report directory (default report/demo)")
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


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``optbench`` console script; bad input exits 2 with a one-line error."""
    args = _parser().parse_args(argv)
    console = Console()
    try:
        return args.func(args, console)
    except (ValueError, FileNotFoundError) as error:
        print(f"optbench: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C outside a run (a run handles it itself)
        print("optbench: interrupted by SIGINT", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
