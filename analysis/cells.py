"""Cells: the configurations whose seeds are repeats of one another, the best one per optimizer
(the tuned point that convergence curves, the paper table and the performance profiles compare),
and the runs that score it.

A cell is (task, optimizer, batch_size, lr). Only finished runs (completed or diverged) are
results; failed, interrupted, running and incomplete runs are listed by the report, never
averaged. Which cell is best is ``experiments.best_point``'s definition, the one a study's
selection uses, applied to the runs that *select* (``analysis.roles``); where a study confirmed
some cells of a group with seeds, only those are candidates, and each chosen cell is scored by
its confirmation runs alone.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from analysis import frames as F
from analysis.roles import HELD_OUT, SCORES, SELECTS, with_roles
from experiments.best_point import RunResult, best_point
from experiments.store import DIVERGED, FINISHED

__all__ = ["CELL", "finished", "best_cells", "direction_of", "choose_cells", "scoring_runs", "run_results"]

CELL = [F.TASK, F.OPTIMIZER, F.BATCH_SIZE, F.LR]


def finished(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs that are results (completed or diverged), with a boolean column ``diverged``
    (so that counting divergences is a sum, typed even over no runs) and the role columns of
    ``analysis.roles`` (every run selecting and scoring where ``runs`` has none)."""
    results = runs[runs[F.STATUS].isin(FINISHED)]
    if SELECTS not in results:
        results = with_roles(results)
    return results.assign(diverged=results[F.STATUS].eq(DIVERGED).astype(bool))


def direction_of(runs: pd.DataFrame) -> dict[str, bool]:
    """Per task, whether its metric is better higher (tasks whose runs never say are left out)."""
    known = runs.dropna(subset=[F.HIGHER_IS_BETTER])
    return {task: bool(group[F.HIGHER_IS_BETTER].mode().iloc[0]) for task, group in known.groupby(F.TASK)}


def _number(value: object) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def run_results(runs: pd.DataFrame) -> list[RunResult]:
    """Each runs-frame row as ``best_point`` reads it (budget: ``max_steps``, else the steps
    taken), in order; read column by column (a row object per run costs more than the rest)."""
    columns = (runs[name] for name in (F.STATUS, F.BEST, F.STEPS_TO_TARGET, F.MAX_STEPS, F.GLOBAL_STEP))
    return [RunResult(diverged=status == DIVERGED, best=_number(best), steps_to_target=_number(steps),
                      budget=_number(max_steps) or _number(taken) or math.inf)
            for status, best, steps, max_steps, taken in zip(*columns)]


def choose_cells(runs: pd.DataFrame, by: Sequence[str], objective: str, confirmed_only: bool = True) -> pd.DataFrame:
    """Per group of ``by`` (e.g. task × optimizer), the best cell by ``experiments.best_point``
    over the selecting runs of each cell; with ``confirmed_only``, a group some of whose cells
    are held out (confirmed by seeds) chooses among those. Columns: the cell's (``CELL``)."""
    results = finished(runs)
    directions = direction_of(runs)
    results = results[results[F.TASK].isin(list(directions))]
    results = results.assign(_result=run_results(results))
    rows = []
    for _, group in results.groupby(list(by), sort=True):
        if confirmed_only and group[HELD_OUT].any():
            group = group[group[HELD_OUT]]
        selecting = group[group[SELECTS]]
        # the cells in sorted order, each its runs' results in row order (as groupby gives them)
        cells = selecting.groupby(CELL, sort=True)
        number = cells.ngroup().to_numpy()
        order = np.argsort(number, kind="stable")
        bounds = np.searchsorted(number[order], np.arange(cells.ngroups + 1))
        ordered = selecting["_result"].to_numpy()[order]
        points = [list(ordered[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
        chosen = best_point(points, objective, directions[group[F.TASK].iloc[0]])
        if chosen is not None:
            rows.append(dict(zip(CELL, cells.size().index[chosen])))
    return pd.DataFrame(rows, columns=CELL).astype(results[CELL].dtypes.to_dict())


def scoring_runs(runs: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    """The finished runs that score each of ``cells`` (their confirmation runs where held out)."""
    results = finished(runs)
    return results[results[SCORES]].merge(cells[CELL], on=CELL)


def best_cells(runs: pd.DataFrame) -> pd.DataFrame:
    """Per task × optimizer, the cell with the best mean ``best`` metric (``choose_cells``), with
    its score over the runs that score it: ``best_mean``, ``best_std``, ``n_seeds`` (runs with a
    metric), ``n_diverged``, ``held_out`` (scored by confirmation runs only) and ``n_selecting``
    (the runs that chose it)."""
    cells = choose_cells(runs, [F.TASK, F.OPTIMIZER], "best")
    scored = scoring_runs(runs, cells)
    stats = scored.groupby(CELL, sort=True).agg(
        best_mean=(F.BEST, "mean"), best_std=(F.BEST, "std"), n_seeds=(F.BEST, "count"),
        n_diverged=("diverged", "sum"), held_out=(HELD_OUT, "any")).reset_index()
    results = finished(runs)
    selecting = results[results[SELECTS]].merge(cells[CELL], on=CELL).groupby(CELL).size().rename("n_selecting")
    out = cells.merge(stats, on=CELL, how="left").merge(selecting.reset_index(), on=CELL, how="left")
    out = out.fillna({"n_seeds": 0, "n_diverged": 0, "held_out": False, "n_selecting": 0})
    return out.astype({"n_seeds": int, "n_diverged": int, "held_out": bool, "n_selecting": int}).sort_values(
        [F.TASK, F.OPTIMIZER]).reset_index(drop=True)
