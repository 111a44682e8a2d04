"""The ``optbench`` command line, run as users run it: a real subprocess of the console script."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from optimizers import optimizer_names
from tests.experiments.support import REPO, TINY, optbench_command, subprocess_env


def optbench(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*optbench_command(), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, env=subprocess_env())


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
