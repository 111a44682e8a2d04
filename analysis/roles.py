"""Which runs select a cell's point and which score it (held-out seeds).

A study with a seeds phase selects each cell's point by its search runs, then re-runs it with
confirmation seeds; scoring the point by the run that selected it would reward the lucky seed
that both selected and scored it (a winner's curse). So, per cell (task, optimizer, batch size,
lr):

- a cell with confirmation runs is *held out*: its confirmation runs score it, and the runs that
  selected it do not;
- any other cell is scored by all its runs, the selecting ones included, and the report says so;
- a run that measured the gradient noise scale of a selected point neither selects nor scores.

Every run other than a confirmation or measuring run *selects*: it is evidence for choosing
among cells. The roles come from the ``selections.json`` a study writes beside its runs
(``experiments.studies.record``); runs without one (wandb runs, stores of studies without a
search) have no role.

An optimizer option a study's grid sets (``optimizer.name,optimizer.momentum: [[sgd, 0], [sgd,
0.9]]``) makes a *variant*: its runs are named ``sgd (momentum=0)`` and compared as an optimizer
of their own, never pooled with the other setting.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis import frames as F
from experiments.studies.record import CONFIRMING, MEASURING, run_roles

__all__ = ["ROLE", "VARIANT", "SELECTS", "SCORES", "HELD_OUT", "read_roles", "with_roles"]

ROLE, VARIANT, SELECTS, SCORES, HELD_OUT = "role", "variant", "selects", "scores", "held_out"
_CELL = [F.TASK, F.OPTIMIZER, F.BATCH_SIZE, F.LR]


def read_roles(runs: pd.DataFrame) -> pd.DataFrame:
    """Per run (aligned with ``runs``), its ``role`` in its study and its optimizer ``variant``
    ("" where none is recorded), from the ``selections.json`` of the study directory holding each
    run-store run. A record that cannot be read raises ``ValueError`` naming it."""
    roles = pd.DataFrame({ROLE: "", VARIANT: ""}, index=runs.index, dtype="str")
    store = runs[(runs[F.SOURCE] == "store") & runs[F.PATH].fillna("").ne("")]
    for study_dir, group in store.groupby(store[F.PATH].map(lambda path: str(Path(path).parent))):
        recorded = run_roles(Path(study_dir))
        roles.loc[group.index, [ROLE, VARIANT]] = [list(recorded.get(run_id, ("", ""))) for run_id in group[F.RUN_ID]]
    return roles


def with_roles(runs: pd.DataFrame, roles: pd.DataFrame | None = None) -> pd.DataFrame:
    """``runs`` with ``role`` ("" for every run without ``roles``), ``selects``, ``scores`` and
    ``held_out`` (whether the run's cell is scored by confirmation runs only; see the module);
    an optimizer with a recorded variant is named with it: ``sgd (momentum=0)``."""
    roles = (roles if roles is not None else pd.DataFrame({ROLE: "", VARIANT: ""}, index=runs.index))
    roles = roles.reindex(runs.index).fillna("")
    out = runs.assign(**{ROLE: roles[ROLE].astype(str)})
    variant = roles[VARIANT].astype(str)
    out[F.OPTIMIZER] = out[F.OPTIMIZER].where(variant.eq(""), out[F.OPTIMIZER] + " (" + variant + ")")
    confirming = out[ROLE].eq(CONFIRMING)
    held = confirming.groupby([out[c] for c in _CELL], dropna=False).transform("any") if len(out) else confirming
    out[HELD_OUT] = held.astype(bool)
    out[SELECTS] = ~out[ROLE].isin([CONFIRMING, MEASURING])
    out[SCORES] = confirming | (~out[HELD_OUT] & out[ROLE].ne(MEASURING))
    return out
