"""Memory: optimizer state and peak memory per optimizer × task × batch size, as ratios to
Adam's (``adam`` where the task has it at that batch size, else ``adamw``: the same state)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import frames as F

__all__ = ["memory_table", "REFERENCES"]

REFERENCES = ("adam", "adamw")  # in order of preference: the ratio's denominator


def memory_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per task × optimizer × batch_size (runs that recorded either figure): ``n_runs``, the
    median ``optimizer_state_bytes`` and ``peak_memory_bytes``, ``reference`` (which optimizer
    the ratios divide by; empty where neither adam nor adamw ran), ``state_ratio``, ``peak_ratio``."""
    known = runs.dropna(subset=[F.STATE_BYTES, F.PEAK_MEMORY], how="all")
    by = [F.TASK, F.OPTIMIZER, F.BATCH_SIZE]
    table = known.groupby(by, sort=True).agg(n_runs=(F.RUN_ID, "size"), optimizer_state_bytes=(F.STATE_BYTES, "median"),
                                             peak_memory_bytes=(F.PEAK_MEMORY, "median")).reset_index()
    table["reference"], table["state_ratio"], table["peak_ratio"] = "", np.nan, np.nan
    for (task, batch), group in table.groupby([F.TASK, F.BATCH_SIZE]):
        names = set(group[F.OPTIMIZER])
        reference = next((r for r in REFERENCES if r in names), None)
        if reference is None:
            continue
        ref = group[group[F.OPTIMIZER] == reference].iloc[0]
        table.loc[group.index, "reference"] = reference
        table.loc[group.index, "state_ratio"] = group[F.STATE_BYTES] / ref[F.STATE_BYTES]
        table.loc[group.index, "peak_ratio"] = group[F.PEAK_MEMORY] / ref[F.PEAK_MEMORY]
    return table
