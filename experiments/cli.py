"""The ``optbench`` command line: parsing, and the mapping of errors to exit statuses, over
functions that tests call directly (``experiments.commands``, ``experiments.studies.commands``,
``experiments.bench.commands``, ``experiments.demo``, ``analysis.analyze``, ``analysis.claims_check``).

Exit status (study executors and job scripts rely on it): 0 a completed or diverged run (or one
already finished, skipped); 1 a failed run; 2 bad input; 75 a run another live process is
training (try again later); 130 / 143 a run interrupted by SIGINT / SIGTERM (the same command
resumes it). Errors are one line on stderr; the result is one line on
stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Callable, NoReturn, Optional, Sequence

from rich.console import Console

from experiments.process_exit import exit_after
from experiments.store import EXIT_BAD_INPUT, EXIT_LOCKED, EXIT_SIGINT, RunLockedError

__all__ = ["main", "run", "EXIT_LOCKED"]


class _Parser(argparse.ArgumentParser):
    """argparse with bad arguments reported as every other bad input is: one line, exit 2; and
    a command's flags and KEY=VALUE overrides in any order (``study run quick --dry-run
    out_dir=x``), as Hydra and LightningCLI take them."""

    _intermixing = False

    def __init__(self, *args: Any, epilog_factory: Optional[Callable[[], str]] = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._epilog_factory = epilog_factory

    def format_help(self) -> str:
        # An epilog that takes long to build (the config reference reads the schema's source) is
        # built when help is asked for, not by every command that parses its arguments.
        if self._epilog_factory is not None:
            self.epilog, self._epilog_factory = self._epilog_factory(), None
        return super().format_help()

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"optbench: error: {message} (see '{self.prog} --help')\n")

    def parse_known_args(self, args: Optional[Sequence[str]] = None,
                         namespace: Optional[argparse.Namespace] = None) -> tuple[argparse.Namespace, list[str]]:
        # Plain argparse gives a positional list only the words before the first flag. A command's
        # own parser (one without subcommands, which intermixed parsing cannot take) parses
        # intermixed; that parse calls this method again for its two passes, hence the flag.
        if self._subparsers is not None or self._intermixing:
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


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


def _version() -> str:
    try:
        return version("optbench")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


# Each command's parsed arguments → its function (imported when called: `optbench --help` and bad
# input stay fast). The functions live beside what they command and return an exit status or
# their result (then the status is 0).

def _train(args: argparse.Namespace, console: Console) -> int:
    from experiments.commands import train_command

    return train_command(args.overrides, config_file=args.config, force=args.force,
                         progress_every_s=args.progress_every, report_progress=True, console=console)


def _config(args: argparse.Namespace, console: Console) -> int:
    from experiments.commands import config_command

    config_command(args.overrides, config_file=args.config, console=console)
    return 0


def _optimizers(args: argparse.Namespace, console: Console) -> int:
    from experiments.commands import optimizers_command

    optimizers_command(console=console)
    return 0


def _bench_optimizers(args: argparse.Namespace, console: Console) -> int:
    from experiments.bench.commands import bench_optimizers

    bench_optimizers(small=args.small, steps=args.steps, warmup=args.warmup, rounds=args.rounds, threads=args.threads,
                     only=args.only, peers=not args.no_peers, markdown=args.markdown, device=args.device,
                     console=console)
    return 0


def _bench_harness(args: argparse.Namespace, console: Console) -> int:
    from experiments.bench.commands import bench_harness

    bench_harness(args.overrides, rounds=args.rounds, console=console)
    return 0


def _bench_analysis(args: argparse.Namespace, console: Console) -> int:
    from experiments.bench.commands import bench_analysis

    bench_analysis(runs=args.runs, steps=args.steps, directory=args.dir, console=console)
    return 0


def _study_run(args: argparse.Namespace, console: Console) -> int:
    from experiments.studies.commands import executor_options, study_run

    return study_run(args.spec, args.overrides, executor=args.executor,
                     executor_options=executor_options(args.executor_options), max_parallel=args.max_parallel,
                     dry_run=args.dry_run, console=console)


def _study_status(args: argparse.Namespace, console: Console) -> int:
    from experiments.studies.commands import study_status

    study_status(args.dir, as_json=args.json, console=console)
    return 0


def _study_list(args: argparse.Namespace, console: Console) -> int:
    from experiments.studies.commands import study_list

    study_list(console=console)
    return 0


def _analyze(args: argparse.Namespace, console: Console) -> int:
    from analysis.analyze import analyze

    analyze(args.sources, args.out, cache_dir=args.cache_dir, cache=not args.no_cache, run_map=args.map,
            console=console)
    return 0


def _claims(args: argparse.Namespace, console: Console) -> int:
    from analysis.claims_check import check_claims

    check_claims(args.sources, args.out, cache_dir=args.cache_dir, cache=not args.no_cache, console=console)
    return 0


def _demo(args: argparse.Namespace, console: Console) -> int:
    from experiments.demo import demo

    return demo(args.overrides, max_parallel=args.max_parallel, out=args.out, console=console)


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (keys below)")
    parser.add_argument("--config", metavar="FILE", help="YAML config file (overrides apply on top)")


def _foreign_runs_help() -> str:
    from analysis.run_map import foreign_runs_help  # only when analyze's help is asked for: a run imports no analysis

    return foreign_runs_help()


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="optbench", description="Benchmark first-order optimizers.")
    parser.add_argument("--version", action="version", version=f"optbench {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("optimizers", help="list registered optimizers and their defaults").set_defaults(
        func=_optimizers
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
    opt.set_defaults(func=_bench_optimizers)

    analysis = targets.add_parser("analysis", help="time loading, comparing and plotting a generated store")
    analysis.add_argument("--runs", type=_positive_int, default=1000, help="runs in the store (default 1000)")
    analysis.add_argument("--steps", type=_positive_int, default=5000, help="logged steps per run (default 5000)")
    analysis.add_argument("--dir", help="generate (and keep) the store here (default: a temporary directory)")
    analysis.set_defaults(func=_bench_analysis)

    harness = targets.add_parser("harness", help="time optbench train against a bare PyTorch loop")
    harness.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                         help="config overrides (default: task=vision optimizer.name=adamw trainer.max_steps=300)")
    harness.add_argument("--rounds", type=_positive_int, default=5, help="alternating rounds (default 5)")
    harness.set_defaults(func=_bench_harness)

    def keys() -> str:
        from experiments.config import config_reference

        return f"config keys and their defaults:\n\n{config_reference()}"

    train = commands.add_parser(
        "train", help="train one run: optbench train KEY=VALUE ...", epilog_factory=keys,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train one run into <out_dir>/<study>/<run_id>/. Exit status: 0 completed, diverged or "
                    "already finished; 1 failed; 2 bad input; 75 trained by another live process; "
                    "130/143 interrupted by SIGINT/SIGTERM (the same command resumes it).",
    )
    _add_config_arguments(train)
    train.add_argument("--force", action="store_true", help="run again even if already finished")
    train.add_argument("--progress-every", type=_seconds, default=5.0, metavar="SECONDS",
                       help="progress line interval when stderr is not a terminal (default 5)")
    train.set_defaults(func=_train)

    analyze = commands.add_parser("analyze", help="tables, figures and an HTML report from runs",
                                  epilog_factory=_foreign_runs_help, formatter_class=argparse.RawDescriptionHelpFormatter)
    analyze.add_argument("sources", nargs="+", metavar="SOURCE",
                         help="run-store directory, directory of wandb runs, or wandb:ENTITY/PROJECT[/GROUP]")
    analyze.add_argument("--out", required=True, help="report directory (index.html, tables/, figures/)")
    analyze.add_argument("--map", metavar="MAP.yaml",
                         help="where the fields of runs optbench did not write are (see below)")
    analyze.add_argument("--cache-dir", help="parquet cache (default $OPTBENCH_CACHE_DIR or ~/.cache/optbench/analysis)")
    analyze.add_argument("--no-cache", action="store_true", help="read every run again, write no cache")
    analyze.set_defaults(func=_analyze)

    claims = commands.add_parser("claims", help="check the NovoGrad, LARC and Shallue et al. claims against runs")
    claims.add_argument("sources", nargs="+", metavar="RUNS", help="as for analyze: run stores, wandb dirs, wandb:...")
    claims.add_argument("--out", required=True, help="directory for claims.md and claims.csv")
    claims.add_argument("--cache-dir", help="parquet cache (default as for analyze)")
    claims.add_argument("--no-cache", action="store_true", help="read every run again, write no cache")
    claims.set_defaults(func=_claims)

    config = commands.add_parser(
        "config", help="print the resolved config of KEY=VALUE ... without training", epilog_factory=keys,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_config_arguments(config)
    config.set_defaults(func=_config)

    _study_parser(commands)

    demo = commands.add_parser("demo", help="the demo study (all tasks, a batch-size slice) and its report")
    demo.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides for every run")
    demo.add_argument("--max-parallel", type=_positive_int, default=2, help="runs at a time (default 2)")
    demo.add_argument("--out", default="report/demo", help="report directory (default report/demo)")
    demo.set_defaults(func=_demo)
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
                     help="executor settings, e.g. slurm partition=gpu timeout_min=60; "
                          "local warm=false (every run a new process)")
    run.add_argument("--max-parallel", type=_positive_int, default=1,
                     help="local runs at a time; each gets cores/N torch threads (default 1)")
    run.add_argument("--dry-run", action="store_true", help="list the planned runs; train nothing")
    run.set_defaults(func=_study_run)
    status = actions.add_parser("status", help="the runs of a study directory and their status")
    status.add_argument("dir", metavar="DIR", help="the study's directory, <out_dir>/<name>")
    status.add_argument("--json", action="store_true", help='print {"runs": [...], "cells": [...]} as JSON')
    status.set_defaults(func=_study_status)
    actions.add_parser("list", help="the built-in studies").set_defaults(func=_study_list)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``optbench`` console script; bad input exits 2 with a one-line error."""
    args = _parser().parse_args(argv)
    console = Console()
    try:
        return args.func(args, console)
    except (ValueError, FileNotFoundError) as error:
        print(f"optbench: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RunLockedError as error:
        print(f"optbench: {error}", file=sys.stderr)
        return EXIT_LOCKED
    except KeyboardInterrupt:  # Ctrl-C outside a run (a run handles it itself)
        print("optbench: interrupted by SIGINT", file=sys.stderr)
        return EXIT_SIGINT


def run() -> NoReturn:
    """The ``optbench`` program (console script and ``python -m experiments.cli``): ``main`` on
    the command line's arguments, then the process ends without the interpreter's teardown
    (``experiments.process_exit``), which takes longer than a tiny run's training."""
    exit_after(main)


if __name__ == "__main__":
    run()
