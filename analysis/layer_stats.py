"""Layer statistics of the layer-wise optimizers (LARC, LARS): each layer's trust ratio (the
factor LARC/LARS applies to its gradient) and update/weight ratio ‖Δw‖/‖w‖ over training."""

from __future__ import annotations

import pandas as pd

from analysis import frames as F
from analysis.cells import CELL, finished

__all__ = ["layer_trajectories"]


def layer_trajectories(runs: pd.DataFrame, layers: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    """The layer rows with a trust ratio of one run (the lowest seed) of each chosen cell
    (``cells``: task, optimizer, batch_size, lr): task, optimizer, study, run_id, step, layer,
    trust_ratio, update_ratio. Empty when no chosen run logged trust ratios."""
    chosen = finished(runs).merge(cells[CELL], on=CELL).sort_values(F.SEED)
    chosen = chosen.groupby([F.TASK, F.OPTIMIZER], sort=True).head(1)[[F.STUDY, F.RUN_ID, F.TASK, F.OPTIMIZER]]
    rows = layers.dropna(subset=["trust_ratio"]).astype({F.STUDY: str, F.RUN_ID: str, F.LAYER: str})
    out = rows.merge(chosen, on=[F.STUDY, F.RUN_ID])
    return out[[F.TASK, F.OPTIMIZER, F.STUDY, F.RUN_ID, F.STEP, F.LAYER, "trust_ratio", "update_ratio"]]
