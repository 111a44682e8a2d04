"""Selection in each cell (Shallue et al.): a pure function of summaries, tested on summaries
written by hand into the run directories a study plans."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from experiments.store import RunStore, write_json_atomic
from experiments.studies.plan import plan_study
from experiments.studies.protocol import INFEASIBLE, NOT_REACHED, PENDING, SELECTED, select
from experiments.studies.runner import GIVEN_UP, TO_RUN, cell_selection, run_state, write_record
from experiments.studies.spec import parse_spec
from experiments.studies.status import study_status


def summary(status: str = "completed", steps: int | None = None, best: float | None = 0.5, **extra) -> dict:
    return {"status": status, "steps_to_target": steps, "best": {"val/acc": best}, "metric": "val/acc",
            "higher_is_better": True, "effective_batch_size": 64, "error": None, **extra}


def write_summary(root: Path, data: dict, attempts: int = 1) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text("{}\n")
    write_json_atomic(root / "meta.json", {"restarts": [{}] * (attempts - 1)})
    RunStore(root).finish(data)


def sweep_plan(tmp_path: Path, points: int = 7, low: float = 1e-3, high: float = 1.0):
    spec = {"name": "synthetic", "base": {"size": "tiny", "out_dir": str(tmp_path)},
            "grid": {"optimizer.name": ["adamw"]},
            "search": {"space": {"optimizer.lr": {"log_range": [low, high], "points": points}}}}
    return plan_study(parse_spec(spec))


def objective(lr: float) -> dict:
    """Steps to target: a parabola in log10(lr) with its minimum at lr = 0.01; lr > 0.2 diverges."""
    if lr > 0.2:
        return summary("diverged", steps=None, best=0.1)
    return summary(steps=round(100 + 200 * (math.log10(lr) + 2) ** 2), best=0.9)


def test_the_search_selects_the_trial_with_the_fewest_steps_to_target(tmp_path: Path) -> None:
    plan = sweep_plan(tmp_path)
    (cell,) = plan.cells
    lrs = [dict(t.point)["optimizer.lr"] for t in cell.trials]
    assert lrs == [0.001, 0.003162, 0.01, 0.03162, 0.1, 0.3162, 1.0]
    for trial, lr in zip(cell.trials, lrs):
        write_summary(trial.root, objective(lr))
    selection = cell_selection(plan, cell)
    assert selection.state == SELECTED and lrs[selection.chosen] == 0.01 and selection.warning is None


def test_a_selection_on_the_edge_of_the_space_is_warned_about(tmp_path: Path) -> None:
    plan = sweep_plan(tmp_path, points=3, low=1e-3, high=1e-2)  # the optimum 0.01 is the largest lr tried
    (cell,) = plan.cells
    for trial in cell.trials:
        write_summary(trial.root, objective(dict(trial.point)["optimizer.lr"]))
    selection = cell_selection(plan, cell)
    assert dict(cell.trials[selection.chosen].point)["optimizer.lr"] == 0.01
    assert selection.edges == ("optimizer.lr",) and "edge of the search space" in selection.warning
    write_record(plan)
    status = study_status(plan.study_dir)
    assert status["cells"][0]["warning"] == selection.warning
    assert status["cells"][0]["selected"] == cell.trials[selection.chosen].run_id


def test_a_cell_waits_for_every_trial_and_gives_up_only_on_failures_past_the_cap(tmp_path: Path) -> None:
    plan = sweep_plan(tmp_path, points=3)
    (cell,) = plan.cells
    write_summary(cell.trials[0].root, objective(0.001))
    write_summary(cell.trials[1].root, objective(0.03162))
    assert cell_selection(plan, cell).state == PENDING  # the third has not run
    write_summary(cell.trials[2].root, summary("failed", error="RuntimeError: boom"), attempts=1)
    assert run_state(cell.trials[2], plan.spec.max_attempts) == TO_RUN
    assert cell_selection(plan, cell).state == PENDING  # it will be retried
    write_summary(cell.trials[2].root, summary("failed", error="RuntimeError: boom"), attempts=3)
    assert run_state(cell.trials[2], plan.spec.max_attempts) == GIVEN_UP
    selection = cell_selection(plan, cell)
    assert selection.state == SELECTED and selection.chosen == 1
    rows = {row["run_id"]: row for row in study_status(tmp_path / "synthetic")["runs"]}
    assert rows[cell.trials[2].run_id]["error"] == "RuntimeError: boom"
    assert rows[cell.trials[1].run_id]["samples_to_target"] == objective(0.03162)["steps_to_target"] * 64


POINTS = [{"lr": 0.001}, {"lr": 0.01}, {"lr": 0.1}]


@pytest.mark.parametrize("case, summaries, objective_name, state, chosen", [
    ("fewest steps wins", [summary(steps=300), summary(steps=100), summary(steps=200)], "steps_to_target", SELECTED, 1),
    ("diverged trials are infeasible", [summary(steps=300), summary("diverged", steps=50), summary(steps=200)],
     "steps_to_target", SELECTED, 2),
    ("tie: the better best metric", [summary(steps=100, best=0.7), summary(steps=100, best=0.8), summary(steps=300)],
     "steps_to_target", SELECTED, 1),
    ("tie in both: the earlier trial", [summary(steps=100, best=0.8), summary(steps=100, best=0.8), summary()],
     "steps_to_target", SELECTED, 0),
    ("lower is better for perplexity", [summary(steps=100, best=30.0, higher_is_better=False),
                                        summary(steps=100, best=20.0, higher_is_better=False), summary()],
     "steps_to_target", SELECTED, 1),
    ("no trial reaches the target", [summary(), summary(), summary("diverged")], "steps_to_target", NOT_REACHED, None),
    ("every trial diverged", [summary("diverged")] * 3, "steps_to_target", INFEASIBLE, None),
    ("a trial without a result yet", [summary(steps=100), None, summary(steps=50)], "steps_to_target", PENDING, None),
    ("objective best", [summary(best=0.7), summary(best=0.9), summary("diverged", best=0.95)], "best", SELECTED, 1),
])
def test_select(case, summaries, objective_name, state, chosen) -> None:
    selection = select(POINTS, summaries, objective_name)
    assert (selection.state, selection.chosen) == (state, chosen)
