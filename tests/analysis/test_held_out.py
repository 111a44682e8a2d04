"""A study's selection and the analysis's best point agree, and a selected point is scored on its
confirmation seeds only: a study planned for real, its runs written with known steps-to-target
(the search's runs lucky, as the one that wins a search tends to be), read back by the loader."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from analysis import frames as F
from analysis.compare import compare
from analysis.frames import Frames, typed_runs
from analysis.load import load
from analysis.paper_table import paper_footnote
from analysis.roles import read_roles
from experiments.studies.plan import plan_study
from experiments.studies.runner import cell_selection, write_record, write_selections
from experiments.studies.spec import parse_spec
from tests.analysis import synthetic

SPEC = {"name": "agree", "base": {"task": "vision", "size": "tiny", "target": 0.9},
        "grid": {"optimizer.name": ["adamw", "novograd"], "data.batch_size": [32, 64, 128]},
        "search": {"space": {"optimizer.lr": {"log_range": [1e-3, 1e-1], "points": 3}}},
        "seeds": [1, 2, 3]}
LR_FACTOR = {0.001: 1.5, 0.01: 1.0, 0.1: 1.3}  # the middle lr is the fastest
SEED_FACTOR = {0: 0.9, 1: 1.0, 2: 1.04, 3: 1.08}  # the search's seed 0 is lucky


def steps(optimizer: str, batch: int, lr: float, seed: int) -> float:
    """S(B) = S_MIN·(1 + B_CRIT/B) by optimizer, lr and seed; adamw's lr 0.1 at batch 64 is a lucky
    trial (it wins the search there, and its confirmation seeds are slower than lr 0.01's)."""
    lucky = 0.5 if (optimizer, batch, lr, seed) == ("adamw", 64, 0.1, 0) else 1.0
    return (synthetic.S_MIN * (1 + synthetic.B_CRIT / batch) * synthetic.OPTIMIZER_FACTOR[optimizer]
            * LR_FACTOR[lr] * SEED_FACTOR[seed] * lucky)


def write_runs(root: Path, runs) -> list[dict]:
    records, rows = [], []
    for run in runs:
        c = run.config
        batch = c.data.batch_size * c.trainer.accumulate_grad_batches
        record, metric_rows = synthetic.synthetic_run("agree", run.run_id, "vision", c.optimizer.name, batch,
                                                      c.optimizer.lr, c.seed, steps(c.optimizer.name, batch,
                                                                                    c.optimizer.lr, c.seed))
        records.append(record)
        rows += metric_rows
    synthetic.write_store(root, Frames(typed_runs(records), synthetic.metrics_frame(rows), synthetic.layers_frame([])))
    return records


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The planned study run by hand: search, selection, seeds; then loaded and compared."""
    root = tmp_path_factory.mktemp("held-out")
    plan = plan_study(parse_spec(copy.deepcopy(SPEC)), [f"out_dir={root}"])
    write_runs(root, plan.search_runs())
    selected, confirming = {}, {}
    for cell in plan.cells:
        chosen = cell_selection(plan, cell).chosen_runs[0]
        key = (chosen.config.optimizer.name, chosen.config.data.batch_size)
        selected[key] = chosen.config.optimizer.lr
        confirming[key] = write_runs(root, plan.seed_runs(cell, chosen))
    write_record(plan)
    write_selections(plan)
    frames = load([root / "agree"], cache_dir=None)
    return frames, selected, confirming


@pytest.mark.slow
def test_the_analysis_best_lr_is_the_one_the_study_selected(study):
    frames, selected, _ = study
    scaling = compare(frames, read_roles(frames.runs)).scaling.set_index([F.OPTIMIZER, F.BATCH_SIZE])
    assert {key: scaling.loc[key, "best_lr"] for key in selected} == selected
    assert selected[("adamw", 64)] == 0.1 and selected[("adamw", 32)] == 0.01  # the lucky trial won its search


def test_a_selected_point_is_scored_on_its_confirmation_seeds_only(study):
    frames, _, confirming = study
    c = compare(frames, read_roles(frames.runs))
    scaling = c.scaling.set_index([F.OPTIMIZER, F.BATCH_SIZE])
    for key, records in confirming.items():
        expected = sum(r[F.STEPS_TO_TARGET] for r in records) / len(records)
        assert scaling.loc[key, F.STEPS_TO_TARGET] == pytest.approx(expected), key
        assert scaling.loc[key, "n_scored"] == 3 and scaling.loc[key, "held_out"]
    cells = c.cells.set_index(F.OPTIMIZER)
    assert cells["n_seeds"].tolist() == [3, 3] and cells["held_out"].all() and cells["n_selecting"].eq(1).all()
    novograd = confirming[("novograd", cells.loc["novograd", F.BATCH_SIZE])]
    assert cells.loc["novograd", "best_mean"] == pytest.approx(sum(r[F.BEST] for r in novograd) / 3)
    assert "scored on its confirmation seeds only" in paper_footnote(c.paper)
    runs = c.runs.set_index(F.RUN_ID)
    assert runs["role"].value_counts().to_dict() == {"searched": 12, "selecting": 6, "confirming": 18}


def test_without_the_record_the_selecting_run_scores_too_and_the_report_says_so(study):
    frames, _, confirming = study
    c = compare(frames)  # no roles: every run selects and scores
    lucky = c.scaling.set_index([F.OPTIMIZER, F.BATCH_SIZE]).loc[("adamw", 64)]
    assert lucky["best_lr"] == 0.01 and not lucky["held_out"]  # averaged with its seeds, the lucky lr loses
    cells = c.cells.set_index(F.OPTIMIZER)
    assert cells["n_seeds"].tolist() == [4, 4] and not cells["held_out"].any()
    assert "Scores include the runs that selected each entry" in paper_footnote(c.paper)


def test_an_option_the_grid_sets_makes_an_optimizer_of_its_own(tmp_path):
    """sgd with and without momentum, linked in the grid: two optimizers in every table."""
    spec = {"name": "variants", "base": {"task": "vision", "size": "tiny", "target": 0.9},
            "grid": {"optimizer.name,optimizer.momentum": [["sgd", 0.0], ["sgd", 0.9]]},
            "search": {"space": {"optimizer.lr": {"log_range": [1e-3, 1e-1], "points": 3}}}}
    plan = plan_study(parse_spec(spec), [f"out_dir={tmp_path}"])
    records = []
    for run in plan.search_runs():  # the same lrs and steps for both: only the record tells them apart
        record, _ = synthetic.synthetic_run("variants", run.run_id, "vision", "sgd", 32, run.config.optimizer.lr, 0,
                                            300.0)
        records.append(record)
    synthetic.write_store(tmp_path, Frames(typed_runs(records), synthetic.metrics_frame([]), synthetic.layers_frame([])))
    write_record(plan)
    write_selections(plan)
    frames = load([tmp_path / "variants"], cache_dir=None)
    c = compare(frames, read_roles(frames.runs))
    assert sorted(c.cells[F.OPTIMIZER]) == ["sgd (momentum=0.0)", "sgd (momentum=0.9)"]
    assert c.cells["n_seeds"].tolist() == [1, 1]
