"""Selection in each cell (Shallue et al.): a pure function of summaries, tested on summaries
written by hand into the run directories a study plans."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from experiments.store import RunStore, write_json_atomic
from experiments.studies.plan import plan_study
from experiments.studies.protocol import INFEASIBLE, NOT_REACHED, PENDING, SELECTED, select
from experiments.studies.runner import GIVEN_UP, TO_RUN, cell_selection, edge_line, run_state, write_record
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


def extended_plan(tmp_path: Path, extend: int, seeds: list[int] | None = None):
    """lr 0.001 and 0.01 (a decade apart), extended up to ``extend`` times."""
    spec = {"name": "synthetic", "base": {"size": "tiny", "out_dir": str(tmp_path)},
            "grid": {"optimizer.name": ["adamw"]},
            "search": {"space": {"optimizer.lr": {"log_range": [1e-3, 1e-2], "points": 2}}, "extend": extend}}
    return plan_study(parse_spec({**spec, **({"seeds": seeds} if seeds else {})}))


def finish_trials(selection, result) -> None:
    for run in selection.trials():
        if RunStore(run.root).summary() is None:
            write_summary(run.root, result(dict(run.point)["optimizer.lr"]))


def test_a_selection_on_an_edge_extends_the_search_and_selects_again(tmp_path: Path) -> None:
    plan = extended_plan(tmp_path, extend=3)
    (cell,) = plan.cells
    selection = cell_selection(plan, cell)
    assert selection.state == PENDING and selection.extensions == 0
    finish_trials(selection, objective)  # the optimum, 0.01, is the largest lr tried
    selection = cell_selection(plan, cell)
    assert selection.state == PENDING and selection.extensions == 1  # waits for the extension's runs
    assert [p["optimizer.lr"] for p in selection.points] == [0.001, 0.01, 0.1, 1.0]
    finish_trials(selection, objective)
    selection = cell_selection(plan, cell)
    assert selection.state == SELECTED and selection.points[selection.chosen] == {"optimizer.lr": 0.01}
    assert selection.extensions == 1 and selection.edges == () and selection.warning is None


def test_extensions_stop_at_the_cap_and_the_status_counts_the_edges_left(tmp_path: Path) -> None:
    plan = extended_plan(tmp_path, extend=2)
    (cell,) = plan.cells
    faster = lambda lr: summary(steps=round(100 / lr))  # noqa: E731  larger is always faster: no interior optimum
    for _ in range(3):
        finish_trials(cell_selection(plan, cell), faster)
    selection = cell_selection(plan, cell)
    assert selection.state == SELECTED and selection.extensions == 2 and selection.edges == ("optimizer.lr",)
    assert selection.points[selection.chosen] == {"optimizer.lr": 100.0}  # 2 extensions of 2 values each
    write_record(plan)
    status = study_status(plan.study_dir)
    assert status["cells"][0]["extensions"] == 2 and status["cells"][0]["edges"] == ["optimizer.lr"]
    assert {row["phase"] for row in status["runs"]} == {"search", "extend"} and len(status["runs"]) == 6
    assert edge_line(1, 1, 2) == ("1 of 1 selections remain on an edge of the search space "
                                 "(searches extended up to 2 times: search.extend)")


def test_search_seeds_select_by_the_mean_of_each_points_runs() -> None:
    lucky, steady = [summary(steps=50), summary(steps=400)], [summary(steps=150), summary(steps=160)]
    assert select(POINTS[:2], [lucky, steady]).chosen == 1  # mean 225 against 155: one lucky run does not win
    assert select(POINTS[:2], [lucky, [summary(steps=150), summary("diverged")]]).chosen == 0  # a divergence: out
    assert select(POINTS[:2], [lucky, None]).state == PENDING


class StoreExecutor:
    """Runs a study's commands by writing the summary each run would end with (no training):
    ``result(run)`` gives it from the planned run."""

    def __init__(self, plan, result) -> None:
        self.plan, self.result, self.phases = plan, result, []  # phases: the phases of each call's runs

    def run(self, commands, on_done, labels=None):
        from experiments.studies.runner import cell_selection as selection_of

        known = {run.run_id: run for cell in self.plan.cells for s in [selection_of(self.plan, cell)]
                 for run in [*s.trials(), *(self.plan.seed_runs(cell, s.chosen_runs[0]) if s.chosen_runs else []),
                             *(self.plan.noise_runs(cell, s.chosen_runs[0]) if s.chosen_runs else [])]}
        self.phases.append(sorted({known[label].phase for label in labels}))
        for index, label in enumerate(labels):
            write_summary(known[label].root, self.result(known[label]))
            on_done(index, 0)
        return [0] * len(commands)


@pytest.mark.slow
def test_run_study_searches_extends_confirms_and_records_each_runs_role(tmp_path: Path) -> None:
    from experiments.studies.record import CONFIRMING, MEASURING, SEARCHED, SELECTING, run_roles
    from experiments.studies.runner import StudyLog, run_study
    from rich.console import Console
    import io

    spec = {"name": "synthetic", "base": {"size": "tiny", "out_dir": str(tmp_path)}, "grid": {"optimizer.name": ["adamw"]},
            "search": {"space": {"optimizer.lr": {"log_range": [1e-3, 1e-2], "points": 2}}, "extend": 2},
            "seeds": [1, 2, 3], "measure_noise_scale": True}
    plan = plan_study(parse_spec(spec))
    executor = StoreExecutor(plan, lambda run: objective(dict(run.point)["optimizer.lr"]))
    console = Console(file=io.StringIO(), width=200)
    result = run_study(plan, executor, StudyLog(None, console))
    assert executor.phases == [["search"], ["extend"], ["noise", "seeds"]]
    assert len(result.runs) == 2 + 2 + 4 and not result.unfinished()
    roles = run_roles(plan.study_dir)
    assert sorted(role for role, _ in roles.values()) == sorted([SEARCHED] * 3 + [SELECTING] + [CONFIRMING] * 3 + [MEASURING])
    assert "0 of 1 selections remain on an edge of the search space" in console.file.getvalue()
    # a second invocation runs nothing
    executor.phases.clear()
    run_study(plan, executor, StudyLog(None, console))
    assert executor.phases == []
