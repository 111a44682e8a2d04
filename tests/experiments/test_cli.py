"""The ``optbench`` command line: each command's function called directly for what it computes
and prints; ``main`` in this process for the parsing, the exit statuses and the one-line
errors; real subprocesses of the console script for what only a process shows (its exit status
and stderr as a shell sees them, progress on a pipe or a terminal)."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
from pathlib import Path
from typing import Iterator

import pytest
from rich.console import Console

from experiments.cli import EXIT_LOCKED, main
from experiments.commands import config_command, optimizers_command, result_line, train_command
from experiments.config import config_reference, load_config, run_dir, to_yaml
from experiments.store import RunLock
from optimizers import optimizer_names
from tests.experiments.support import REPO, TINY, optbench_command, subprocess_env


def optbench(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    """The console script in a subprocess."""
    return subprocess.run([*optbench_command(), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, env={**subprocess_env(), **env})


def run_main(capsys: pytest.CaptureFixture, *args: str) -> subprocess.CompletedProcess:
    """``main(args)`` in this process, read as the subprocess's result: exit status (argparse's
    exits included), stdout, stderr."""
    try:
        code = main(list(args))
    except SystemExit as exit:  # argparse: --help, --version, a bad argument
        code = exit.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, out, err)


def text_console(width: int = 200) -> Console:
    """A console that prints into a string (``printed``), ``width`` columns wide."""
    return Console(file=io.StringIO(), width=width)


def printed(console: Console) -> str:
    return console.file.getvalue()


@pytest.fixture(autouse=True)
def progress_logger_restored() -> Iterator[None]:
    """``main`` for ``train`` points the progress log at this test's stderr, as the console script
    does once per process: put the logger back as it was."""
    log = logging.getLogger("experiments.callbacks.progress")
    handlers, level, propagate = list(log.handlers), log.level, log.propagate
    yield
    log.handlers[:] = handlers
    log.setLevel(level)
    log.propagate = propagate


def assert_one_line_error(result: subprocess.CompletedProcess, pattern: str) -> None:
    """Exit status 2, exactly one line on stderr that matches ``pattern``, no traceback."""
    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert len(lines) == 1, result.stderr
    assert re.search(pattern, lines[0]), lines[0]


def only_run_dir(out_dir: Path) -> Path:
    (root,) = (out_dir / "default").iterdir()
    return root


@pytest.mark.slow
@pytest.mark.parametrize("overrides, status", [
    (["trainer.max_steps=3", "trainer.val_every_n_steps=3"], "completed"),
    (["optimizer.name=sgd", "optimizer.lr=1e6", "trainer.max_steps=20", "trainer.val_every_n_steps=10"], "diverged"),
])
def test_train_exits_zero_for_a_result(tmp_path, capsys, overrides, status):
    """``train`` returns 0 for a completed and for a diverged run, says which in one unwrapped
    line, and leaves the run's summary.json with that status; a second call says it was skipped."""
    code = train_command([*TINY, f"out_dir={tmp_path}", *overrides], console=Console(width=40))
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Traceback" not in err
    assert out.startswith(f"{status}: ")
    summary = json.loads((only_run_dir(tmp_path) / "summary.json").read_text())
    assert summary["status"] == status
    assert out == result_line(summary, str(only_run_dir(tmp_path))) + "\n"
    assert train_command([*TINY, f"out_dir={tmp_path}", *overrides]) == 0
    assert capsys.readouterr().out.startswith(f"already {status}")


def test_a_run_another_process_trains_exits_75_in_one_line(tmp_path, capsys):
    """A run whose lock a live holder has (here this process, through another lock): exit 75,
    one stderr line naming the holder, nothing trained."""
    args = [*TINY, f"out_dir={tmp_path}", "trainer.max_steps=3"]
    lock = RunLock(run_dir(load_config(args)))
    lock.acquire()
    try:
        result = run_main(capsys, "train", *args)
    finally:
        lock.release()
    assert result.returncode == EXIT_LOCKED, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("optbench: run ") and "is being trained by process" in line, line
    assert not (only_run_dir(tmp_path) / "summary.json").exists()


# (arguments after `optbench`, regex for the one stderr line)
BAD_INPUT = [
    pytest.param(["train", "trainer.max_step=3"], r"trainer\.max_step\b.*trainer\.max_steps", id="misspelt-key"),
    pytest.param(["train", "trainer.max_steps=abc"], r"trainer\.max_steps.*abc", id="wrong-type"),
    pytest.param(["train", "optimizer.name=bogus"], r"unknown optimizer 'bogus'.*novograd", id="unknown-optimizer"),
    pytest.param(["train", "trainer.max_steps"], r"trainer\.max_steps.*key=value", id="no-equals"),
    pytest.param(["train", "--config", "/nonexistent/run.yaml"], r"config file not found: /nonexistent/run\.yaml", id="no-file"),
    pytest.param(
        ["train", *TINY, "trainer.accelerator=gpu", "trainer.max_steps=1"], r"gpu",
        id="gpu-without-gpu",
    ),
    pytest.param(
        ["train", *TINY, "trainer.precision=bogus", "trainer.max_steps=1"], r"[Pp]recision 'bogus'",
        id="bad-precision",
    ),
    pytest.param(["train", "optimizer.name=novgrad"], r"unknown optimizer 'novgrad' \(did you mean 'novograd'\?\)",
                 id="did-you-mean-optimizer"),
    pytest.param(["train", "task=visoin"], r"'task': 'visoin' \(did you mean 'vision'\?\)", id="did-you-mean-task"),
    # Lightning would run bf16-mixed on a CPU while config.yaml said 16-mixed: refused instead.
    pytest.param(
        ["train", *TINY, "trainer.precision=16-mixed", "trainer.max_steps=1"],
        r"^optbench: error: trainer\.precision=16-mixed runs as bf16-mixed on cpu: set trainer\.precision=bf16-mixed",
        id="precision-replaced-on-cpu",
    ),
    pytest.param(["train", *TINY, "trainer.precision=32", "trainer.max_steps=1"], r"trainer\.precision=32-true",
                 id="precision-alias"),
    pytest.param(["demo", "--max-parallel", "abc"],
                 r"^optbench: error: argument --max-parallel: expected a positive integer, got 'abc'",
                 id="count-not-a-number"),
    pytest.param(["demo", "--max-parallel", "0"], r"argument --max-parallel: expected a positive integer, got 0",
                 id="count-zero"),
    pytest.param(["trian"], r"^optbench: error: .*invalid choice: 'trian'", id="unknown-command"),
    pytest.param(["config", "trainer.max_step=3"], r"did you mean 'trainer\.max_steps'", id="config-misspelt-key"),
    pytest.param(["bench", "optimizers", "--small", "--rounds", "1", "--steps", "1", "--warmup", "1", "--only", "bogus",
                  "--no-peers"], r"'bogus'.*valid rows:.*novograd", id="bench-unknown-row"),
    # overrides after a flag reach the config (not "unrecognized arguments"), for every command taking them
    pytest.param(["train", "--force", "trainer.max_step=3"], r"'trainer\.max_step' \(did you mean", id="train-flag-first"),
    pytest.param(["config", "--config", "/nonexistent/run.yaml", "trainer.max_steps=3"],
                 r"config file not found: /nonexistent/run\.yaml", id="config-flag-first"),
    pytest.param(["demo", "--max-parallel", "1", "trainer.max_step=3"],
                 r"command line: unknown config key 'trainer\.max_step'", id="demo-flag-first"),
    pytest.param(["bench", "harness", "--rounds", "1", *TINY, "trainer.accumulate_grad_batches=2"],
                 r"bench harness compares one device without gradient accumulation", id="bench-harness-flag-first"),
    pytest.param(["study", "run", "quick", "--executor", "local", "trainer.max_step=3"],
                 r"command line: unknown config key 'trainer\.max_step'", id="study-run-flag-first"),
    pytest.param(["study", "run", "quick", "--bogus", "trainer.max_steps=3"],
                 r"^optbench: error: unrecognized arguments: --bogus", id="unknown-flag"),
]


@pytest.mark.parametrize("args, pattern", BAD_INPUT)
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, args, pattern):
    """Bad input exits 2 with exactly one stderr line naming the problem, never a traceback,
    and writes no run directory."""
    writes = args[0] in ("train", "demo", "study") and "--config" not in args
    result = run_main(capsys, *args, f"out_dir={tmp_path}") if writes else run_main(capsys, *args)
    assert_one_line_error(result, pattern)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("args, pattern", [
    pytest.param(["train", "--force", "trainer.max_step=3"],
                 r"^optbench: error: .*trainer\.max_step\b.*trainer\.max_steps", marks=pytest.mark.slow),  # loads torch
    (["trian"], r"^optbench: error: .*invalid choice: 'trian'"),
])
def test_bad_input_from_the_console_script(args, pattern):
    """The installed console script, as a shell runs it: exit 2 and one stderr line."""
    assert_one_line_error(optbench(*args), pattern)


def test_optimizers_lists_every_registry_name():
    """``optbench optimizers`` prints a table row for every registered name."""
    console = text_console()
    optimizers_command(console=console)
    first_cells = set(re.findall(r"^[│|]\s*(\S+)\s+[│|]", printed(console), flags=re.MULTILINE))
    missing = [name for name in optimizer_names() if name not in first_cells]
    assert not missing, printed(console)


@pytest.mark.slow
def test_bench_only_novograd():
    """``optbench bench optimizers --only novograd`` prints a table with the novograd row, the
    torch Adam reference rows and the two bandwidth-floor rows, and no other optimizer."""
    from experiments.bench.commands import bench_optimizers

    console = text_console()
    bench_optimizers(small=True, rounds=1, steps=1, warmup=1, threads=1, only=["novograd"], peers=False,
                     console=console)
    rows = {m.group(1).strip(): m.group(2)
            for m in re.finditer(r"^│ (\S[^│]*?)\s*│\s*([0-9.]+)\s*│", printed(console), re.MULTILINE)}
    assert set(rows) == {"novograd", "torch Adam (foreach)", "torch Adam (fused)", "bandwidth floor (24 B/value)",
                         "bandwidth floor (28 B/value)"}, printed(console)
    assert all(float(ms) > 0 for ms in rows.values())


def test_version(capsys):
    """``optbench --version`` prints the installed package's version and exits 0."""
    from importlib.metadata import version

    result = run_main(capsys, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"optbench {version('optbench')}\n"


def test_config_prints_the_resolved_config_without_training(tmp_path, capsys):
    """``config`` takes train's arguments (a YAML file, overrides, in any order on the command
    line) and prints the config that ``train`` would run, as YAML, and trains nothing."""
    path = tmp_path / "run.yaml"
    path.write_text("optimizer:\n  name: novograd\n  lr: 0.01\n")
    overrides = ["optimizer.betas=[0.9,0.99]", "trainer.max_steps=7", f"out_dir={tmp_path / 'runs'}"]
    console = text_console(width=40)
    config = config_command(overrides, config_file=path, console=console)
    assert printed(console) == to_yaml(load_config(overrides, path=path)) == to_yaml(config)
    assert "novograd" in printed(console) and "max_steps: 7" in printed(console)
    for args in (["--config", str(path), *overrides], [*overrides, "--config", str(path)],
                 [overrides[0], "--config", str(path), *overrides[1:]]):
        result = run_main(capsys, "config", *args)
        assert result.returncode == 0, result.stderr
        assert result.stdout == printed(console)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("command", ["train", "config"])
def test_help_lists_every_config_key_with_its_default(command, capsys):
    """``optbench train --help`` (and ``config --help``) end with every config key, its default
    and its comment, generated from the schema."""
    result = run_main(capsys, command, "--help")
    assert result.returncode == 0, result.stderr
    assert config_reference() in result.stdout
    for line in ("task=vision", "optimizer.name=adamw", "optimizer.lr=0.001", "trainer.max_steps=300", "out_dir=runs"):
        assert re.search(rf"^{re.escape(line)}\s", result.stdout, re.MULTILINE), line


PROGRESS_LINE = re.compile(
    r"^step (?P<step>\d+)/20  loss \d[\d.e+-]*(  val/acc [\d.]+ \(step (?P<val_step>\d+)\))?  \d+ samples/s"
    r"(  ETA \d[\dhms.]*)?$"
)


@pytest.mark.slow
def test_progress_lines_when_not_on_a_terminal(tmp_path):
    """With stderr a pipe (a batch job), stderr says the run directory first, then plain progress
    lines (step, loss, last validation, samples/s, ETA), steps rising to the last; stdout holds
    only the result line, unwrapped however long it is."""
    result = optbench("train", *TINY, f"out_dir={tmp_path}", "trainer.max_steps=20", "trainer.val_every_n_steps=10",
                      "--progress-every", "0")
    assert result.returncode == 0, result.stderr
    root = only_run_dir(tmp_path)
    first, *lines = result.stderr.splitlines()
    assert first == f"run directory: {root}"
    matches = [PROGRESS_LINE.match(line) for line in lines]
    assert all(matches), lines
    steps = [int(m["step"]) for m in matches]
    assert steps == sorted(steps) and steps[-1] == 20 and len(steps) >= 10
    assert {int(m["val_step"]) for m in matches if m["val_step"]} == {10, 20}
    assert "ETA" not in lines[-1] and "ETA" in lines[0]
    (line,) = result.stdout.splitlines()
    assert len(line) > 80 and line.startswith(f"completed: {root}  val/acc best=")


@pytest.mark.slow
def test_progress_bar_on_a_terminal(tmp_path):
    """On a terminal (rich's TTY_COMPATIBLE=1 says stderr is one) a progress bar counts the steps
    to the last, and no plain progress line is printed."""
    result = optbench("train", *TINY, f"out_dir={tmp_path}", "trainer.max_steps=20", "trainer.val_every_n_steps=10",
                      TTY_COMPATIBLE="1")
    assert result.returncode == 0, result.stderr
    assert "20/20" in result.stderr and "\x1b[" in result.stderr  # the bar, drawn with escape codes
    assert not re.search(r"^step \d+/20  loss", result.stderr, re.MULTILINE)


@pytest.mark.slow
def test_bench_says_which_peer_rows_it_left_out():
    """Without the ``bench`` extra the peer implementations' rows are left out, and the output
    says so, naming the packages; with it installed, no such line."""
    from experiments.bench.commands import bench_optimizers
    from experiments.bench.optimizer_steps import missing_peers

    console = text_console()
    bench_optimizers(small=True, rounds=1, steps=1, warmup=1, threads=1, only=["novograd"], console=console)
    notes = [line for line in printed(console).splitlines() if line.startswith("peer rows left out")]
    missing = missing_peers()
    expected = [f"peer rows left out, not installed: {', '.join(missing)}"]
    assert notes == (expected if missing else [])
