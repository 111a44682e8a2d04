"""The ``optbench`` command line, run as users run it: a real subprocess of the console script."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from experiments.cli import result_line
from experiments.config import config_reference, load_config, to_yaml
from optimizers import optimizer_names
from tests.experiments.support import REPO, TINY, optbench_command, subprocess_env


def optbench(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([*optbench_command(), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, env={**subprocess_env(), **env})


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
def test_train_exits_zero_for_a_result(tmp_path, overrides, status):
    """``optbench train`` exits 0 for a completed and for a diverged run, says which on stdout,
    and leaves the run's summary.json with that status; a second call says it was skipped."""
    result = optbench("train", *TINY, f"out_dir={tmp_path}", *overrides)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.startswith(f"{status}: ")
    summary = json.loads((only_run_dir(tmp_path) / "summary.json").read_text())
    assert summary["status"] == status
    assert result.stdout == result_line(summary, str(only_run_dir(tmp_path))) + "\n"
    again = optbench("train", *TINY, f"out_dir={tmp_path}", *overrides)
    assert again.returncode == 0 and again.stdout.startswith(f"already {status}")


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
]


@pytest.mark.parametrize("args, pattern", BAD_INPUT)
def test_bad_input_is_one_line_exit_2(tmp_path, args, pattern):
    """Bad input exits 2 with exactly one stderr line naming the problem, never a traceback,
    and writes no run directory."""
    result = optbench(*args, f"out_dir={tmp_path}") if args[0] == "train" and "--config" not in args else optbench(*args)
    assert_one_line_error(result, pattern)
    assert not any(tmp_path.iterdir())


def test_optimizers_lists_every_registry_name():
    """``optbench optimizers`` exits 0 and prints a table row for every registered name."""
    result = optbench("optimizers")
    assert result.returncode == 0, result.stderr
    first_cells = set(re.findall(r"^[│|]\s*(\S+)\s+[│|]", result.stdout, flags=re.MULTILINE))
    missing = [name for name in optimizer_names() if name not in first_cells]
    assert not missing, result.stdout


@pytest.mark.slow
def test_bench_only_novograd():
    """``optbench bench optimizers --only novograd`` prints a table with the novograd row, the
    torch Adam reference rows and the two bandwidth-floor rows, and no other optimizer."""
    result = optbench("bench", "optimizers", "--small", "--rounds", "1", "--steps", "1", "--warmup", "1",
                      "--only", "novograd", "--no-peers")
    assert result.returncode == 0, result.stderr
    rows = {m.group(1).strip(): m.group(2) for m in re.finditer(r"^│ (\S[^│]*?)\s*│\s*([0-9.]+)\s*│", result.stdout, re.MULTILINE)}
    assert set(rows) == {"novograd", "torch Adam (foreach)", "torch Adam (fused)", "bandwidth floor (24 B/value)",
                         "bandwidth floor (28 B/value)"}, result.stdout
    assert all(float(ms) > 0 for ms in rows.values())


def test_version():
    """``optbench --version`` prints the installed package's version and exits 0."""
    from importlib.metadata import version

    result = optbench("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"optbench {version('optbench')}\n"


def test_config_prints_the_resolved_config_without_training(tmp_path):
    """``optbench config`` takes train's arguments (a YAML file, overrides) and prints the
    config that ``train`` would run, as YAML, and trains nothing."""
    path = tmp_path / "run.yaml"
    path.write_text("optimizer:\n  name: novograd\n  lr: 0.01\n")
    overrides = ["optimizer.betas=[0.9,0.99]", "trainer.max_steps=7", f"out_dir={tmp_path / 'runs'}"]
    result = optbench("config", "--config", str(path), *overrides)
    assert result.returncode == 0, result.stderr
    assert result.stdout == to_yaml(load_config(overrides, path=path))
    assert "novograd" in result.stdout and "max_steps: 7" in result.stdout
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("command", ["train", "config"])
def test_help_lists_every_config_key_with_its_default(command):
    """``optbench train --help`` (and ``config --help``) end with every config key, its default
    and its comment, generated from the schema."""
    result = optbench(command, "--help")
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
    from experiments.bench.optimizer_steps import missing_peers

    result = optbench("bench", "optimizers", "--small", "--rounds", "1", "--steps", "1", "--warmup", "1",
                      "--only", "novograd")
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stdout.splitlines() if line.startswith("peer rows left out")]
    missing = missing_peers()
    expected = [f"peer rows left out: {', '.join(missing)} not installed (pip install 'optbench[bench]')"]
    assert notes == (expected if missing else [])
