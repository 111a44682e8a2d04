"""A wandb run (config, summary, history rows) → ``RunData``: the same row and tables that the
run store gives for the same run.

optbench logs every metrics.jsonl row to wandb with ``trainer/global_step`` = its step (and the
same epoch and wall_time), names the wandb run by the run_id, groups it by the study and puts
the summary, nested best/final included, into the wandb summary. Runs from elsewhere map as far
as they can: step from ``_step``, study from the group (else the project), run_id from the name.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

from analysis.sources.run_data import RunData, layers_table, metrics_long, run_row, table_from_rows

__all__ = ["wandb_run_data", "history_rows", "STEP_KEY"]

STEP_KEY = "trainer/global_step"  # the x-axis Lightning's WandbLogger (and optbench) logs with


def history_rows(history: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """wandb history rows → (metrics.jsonl-style rows, rows that hold a ``layers/stats`` table).

    wandb's own keys (``_step``, ``_runtime``, ...) and media (tables, histograms) are not metrics.
    A value logged again at the same step (a resumed run's history holds the rows after its
    checkpoint twice) counts once: the last one, as the store keeps after a resume.
    """
    rows: dict[tuple[int, str], dict[str, Any]] = {}
    tables = []
    for entry in history:
        step = entry.get(STEP_KEY, entry.get("_step"))
        if step is None:
            continue
        context = {"step": int(step), "epoch": entry.get("epoch"), "wall_time": entry.get("wall_time")}
        for key, value in entry.items():
            if isinstance(value, dict) and key == "layers/stats":
                tables.append({**context, "table": value})
            if key.startswith("_") or key in (STEP_KEY, "epoch", "wall_time") or isinstance(value, bool) \
                    or not isinstance(value, (int, float)):
                continue
            rows[(int(step), key)] = {**context, key: value}
    return sorted(rows.values(), key=lambda r: r["step"]), tables


def wandb_run_data(path: str, *, name: str, group: Optional[str], project: str, config: dict[str, Any],
                   summary: dict[str, Any], history: Iterable[dict[str, Any]], status: str, key: Any,
                   read_table: Optional[Callable[[str], Optional[dict[str, Any]]]] = None) -> RunData:
    """One wandb run as ``RunData``; ``read_table(path)`` returns a logged table's JSON
    (``{"columns", "data"}``) for the layer statistics, where the table files are at hand."""
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    summary = {k: v for k, v in summary.items() if not k.startswith("_")}
    study = config.get("study") or group or project
    run_id = summary.get("run_id") or name
    finished = summary.get("status") is not None
    row = run_row("wandb", path, study, run_id, config, summary if finished else None)
    if not finished:
        row["status"] = status
    rows, tables = history_rows(history)
    metrics = metrics_long(table_from_rows(rows) if rows else None, study, run_id, path)
    layer_rows = []
    for entry in tables if read_table is not None else []:
        content = read_table(entry["table"].get("path", ""))
        if content is None:
            continue
        for values in content.get("data", []):
            layer_rows.append({**dict(zip(content["columns"], values)), "step": entry["step"]})
    layers = layers_table(table_from_rows(layer_rows) if layer_rows else None, study, run_id, path)
    return RunData(row, metrics, layers, False, key)
