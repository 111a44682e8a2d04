"""A wandb run (identity, config, summary, history) → ``RawRun``, for both wandb sources.

optbench logs every metrics.jsonl row to wandb with ``trainer/global_step`` = its step (and the
same epoch and wall_time), names the wandb run by the run_id, groups it by the study, puts the
whole config (with ``study``) in the wandb config and the summary, nested best/final included,
into the wandb summary: such a run maps back onto the row the store gives. Runs from elsewhere
map as the map and the conventions say (``analysis.sources.raw_run``): study from the group
(else the project), run_id from the run's name.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable, Optional

import numpy as np
import pyarrow as pa

from analysis.conventions import written_by_optbench
from analysis.run_map import Identity
from analysis.sources.raw_run import RawRun
from analysis.sources.run_data import layers_table, table_from_rows

__all__ = ["wandb_raw_run", "LAYER_TABLE_KEY"]

LAYER_TABLE_KEY = "layers/stats"  # the wandb table optbench logs its per-layer statistics in


def wandb_raw_run(path: str, *, identity: Identity, config: dict[str, Any], summary: Callable[[], dict[str, Any]],
                  history: pa.Table, layer_tables: list[tuple[int, Any]], status: str,
                  read_table: Optional[Callable[[str], Optional[dict[str, Any]]]] = None) -> RawRun:
    """One wandb run as ``RawRun``: ``summary`` returns its summary (called once at most, and
    only when needed), ``history`` as ``History.table`` gives it, ``layer_tables`` the (row,
    table reference) of its ``LAYER_TABLE_KEY`` values; ``read_table(path)`` returns a logged
    table's JSON (``{"columns", "data"}``) where the table files are at hand."""
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    ours = written_by_optbench(config)

    @lru_cache(maxsize=1)
    def own_summary() -> dict[str, Any]:
        return {k: v for k, v in summary().items() if not k.startswith("_")}

    study = str(config.get("study") or identity.group or identity.project)
    run_id = str((own_summary().get("run_id") if ours else None) or identity.name)
    tables = layer_tables if read_table is not None else []

    def layers(steps: Optional[np.ndarray]) -> pa.Table:
        rows = []
        for row, table in tables:
            content = read_table(table.get("path", "")) if isinstance(table, dict) and steps is not None else None
            if content is None or np.isnan(steps[row]):
                continue
            rows += [{**dict(zip(content["columns"], values)), "step": int(steps[row])}
                     for values in content.get("data", [])]
        return layers_table(table_from_rows(rows) if rows else None, study, run_id, path)

    return RawRun("wandb", path, study, run_id, identity, config, own_summary, ours, status, history, layers,
                  last_per_step=True)
