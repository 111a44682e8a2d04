"""docs/extending.md stays true: its example's files (each a fenced block whose first line is
``# file: <relative path>``) copied into an empty directory outside the repository, and its
``bash`` block run there, as a reader would, with the repository's .venv/bin on PATH."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.config import load_config, task_of

PAGE = Path(__file__).resolve().parent.parent / "docs" / "extending.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
FILE = re.compile(r"# file: (\S+)")


def example(page: Path = PAGE) -> tuple[dict[str, str], str]:
    """The page's files ({relative path: text}) and its commands (its ``bash`` blocks, in order)."""
    files, commands = {}, []
    for language, body in FENCE.findall(page.read_text()):
        match = FILE.fullmatch(body.splitlines()[0]) if body else None
        if match:
            files[match.group(1)] = body
        elif language == "bash":
            commands.append(body)
    return files, "".join(commands)


def write_example(directory: Path) -> str:
    files, commands = example()
    for relative, text in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return commands


def test_the_page_holds_an_optimizer_a_task_a_study_and_their_commands():
    files, commands = example()
    assert set(files) == {"sign_sgd/__init__.py", "digits_task/__init__.py", "digits_task/model.py", "compare.yaml"}
    for command in ("optbench train task=digits_task:task", "optbench study run compare.yaml",
                    "optbench analyze runs/compare"):
        assert command in commands


def test_the_pages_task_is_a_valid_task(tmp_path, monkeypatch):
    """The description on the page loads as ``task=digits_task:task`` (without torch: its model is
    in the other file)."""
    write_example(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    info = task_of(load_config(["task=digits_task:task", "size=tiny"]))
    assert (info.name, info.metric, info.higher_is_better, info.sources) == ("digits-mlp", "acc", True, ("builtin",))


@pytest.mark.slow
def test_the_pages_example_runs_as_written(tmp_path_factory):
    directory = tmp_path_factory.mktemp("reader")  # outside the repository
    commands = write_example(directory)
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
           "PYTHONPATH": str(directory), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", commands], cwd=directory, env=env,
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (runs_csv,) = directory.glob("report/**/tables/runs.csv")
    with open(runs_csv) as handle:
        rows = list(csv.DictReader(handle))
    assert {(row["task"], row["optimizer"]) for row in rows} == {
        (task, optimizer) for task in ("digits-mlp", "vision") for optimizer in ("sign_sgd:SignSGD", "novograd", "adamw")}
    assert all(row["status"] in ("completed", "diverged") for row in rows)
