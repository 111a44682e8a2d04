"""``optbench study run | status | list`` as functions, called directly, and through ``main``: the
arguments in any order (flags and KEY=VALUE overrides mixed), the same output."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from experiments.cli import main
from experiments.studies.commands import study_list, study_run, study_status
from experiments.studies.plan import plan_study
from experiments.studies.runner import write_record
from experiments.studies.spec import builtin_names, parse_spec
from tests.experiments.studies.conftest import TINY_SPEC
from tests.experiments.studies.test_protocol import objective, write_summary


# A study of one run: it plans in a fraction of a second.
ONE_RUN = {"name": "one", "base": TINY_SPEC["base"], "grid": {"optimizer.name": ["adamw"]}}


def text_console() -> Console:
    return Console(file=io.StringIO(), width=200)


def test_a_dry_run_takes_flags_and_overrides_in_any_order(write_spec, tmp_path, capsys) -> None:
    """Every order of the same arguments plans the same runs (the overrides all applied: they
    change the run ids) and prints what ``study_run`` prints; nothing is written."""
    spec, out_dir = str(write_spec(ONE_RUN)), tmp_path / "scratch"
    overrides = [f"out_dir={out_dir}", "trainer.max_steps=3"]
    assert study_run(spec, overrides, max_parallel=2, dry_run=True) == 0
    expected = capsys.readouterr().out
    assert expected.startswith(f"study one: 1 cells, 1 grid runs (0 finished, 1 to run) -> {out_dir / 'one'}\n")
    for args in ([spec, "--dry-run", *overrides, "--max-parallel", "2"],
                 [spec, overrides[0], "--max-parallel", "2", overrides[1], "--dry-run"],
                 ["--max-parallel", "2", "--dry-run", spec, *overrides]):
        assert main(["study", "run", *args]) == 0
        assert capsys.readouterr().out == expected, args
    assert not out_dir.exists()


@pytest.mark.slow
def test_the_quick_study_dry_run_with_an_override_after_the_flag(tmp_path, capsys) -> None:
    """``optbench study run quick --dry-run out_dir=scratch``, as typed in the issue that found
    overrides after a flag refused."""
    assert main(["study", "run", "quick", "--dry-run", f"out_dir={tmp_path / 'scratch'}"]) == 0
    assert f"-> {tmp_path / 'scratch' / 'quick'}\n" in capsys.readouterr().out
    assert not (tmp_path / "scratch").exists()


@pytest.fixture
def finished_study(tmp_path: Path) -> Path:
    """A study of one cell, three learning rates, its runs' summaries written by hand."""
    plan = plan_study(parse_spec({"name": "synthetic", "base": {"size": "tiny", "out_dir": str(tmp_path)},
                                  "grid": {"optimizer.name": ["adamw"]},
                                  "search": {"space": {"optimizer.lr": {"log_range": [1e-3, 1e-1], "points": 3}}}}))
    (cell,) = plan.cells
    for trial in cell.trials:
        write_summary(trial.root, objective(dict(trial.point)["optimizer.lr"]))
    write_record(plan)
    return plan.study_dir


def test_status_prints_the_runs_and_each_cells_selection(finished_study) -> None:
    console = text_console()
    status = study_status(finished_study, console=console)
    out = console.file.getvalue()
    assert len(status["runs"]) == 3 and all(run["run_id"] in out for run in status["runs"])
    (cell,) = status["cells"]
    assert f"cell optimizer.name=adamw: selected {cell['selected']} (optimizer.lr=0.01), steps_to_target=100" in out


def test_status_as_json_prints_what_it_returns(finished_study) -> None:
    console = text_console()
    status = study_status(finished_study, as_json=True, console=console)
    printed = json.loads(console.file.getvalue())
    assert printed == json.loads(json.dumps({key: status[key] for key in ("runs", "cells", "counts", "study")}))
    assert {run["status"] for run in printed["runs"]} == {"completed"}


def test_list_names_every_builtin_study() -> None:
    console = text_console()
    names = study_list(console=console)
    assert names == builtin_names() and "quick" in names
    assert all(f"│ {name} " in console.file.getvalue() for name in names)
