"""``optbench study status DIR``: what a study's directory holds, read from the run store.

Every run directory under DIR is listed with its status and the values the study swept. When
DIR holds ``study.json`` (written by ``optbench study run``) the study is planned again from it:
runs not started yet are listed as ``pending``, each run gets its phase, and each cell its
selection (with the extensions of its search and the edge-of-search-space warning). Without it,
the swept keys are the config keys whose values differ between the runs found.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Optional

from rich.table import Table

from experiments.dotted_keys import flatten
from experiments.store import COMPLETED, DIVERGED, FAILED, INCOMPLETE, RUNNING, RunStore, find_runs
from experiments.studies.plan import StudyPlan, plan_study
from experiments.studies.protocol import SELECTED
from experiments.studies.record import RECORD, read_json
from experiments.studies.runner import cell_selection
from experiments.studies.spec import StudyError, parse_spec

__all__ = ["study_status", "status_table"]

PENDING = "pending"  # planned, no directory yet


def study_status(study_dir: Path | str) -> dict[str, Any]:
    """``{"study", "dir", "counts", "runs": [...], "cells": [...]}``, ready for ``json.dumps``.

    Each run: ``run_id``, ``status``, ``phase``, the swept keys with their values, ``best``,
    ``steps_to_target``, ``samples_to_target``, ``attempts`` and ``error``. Each cell: ``cell``,
    ``state``, ``extensions`` (of its search beyond an edge), ``edges`` (the keys whose selected
    value is still the smallest or largest tried) and, once selected, ``selected`` (its first
    run), ``selecting`` (every run of the selected point), ``point``, ``steps_to_target`` (their
    mean over those that reached the target) and ``warning``.
    """
    study_dir = Path(study_dir)
    if not study_dir.is_dir():
        raise StudyError(f"no study directory {study_dir}")
    plan = _replan(study_dir)
    rows: dict[str, dict[str, Any]] = {}
    cells = []
    if plan is not None:
        for run in plan.search_runs():
            rows[run.run_id] = {"phase": run.phase, **run.swept}
        for cell in plan.cells if plan.spec.search else ():
            selection = cell_selection(plan, cell)
            entry: dict[str, Any] = {"cell": dict(cell.key), "state": selection.state,
                                     "extensions": selection.extensions, "edges": list(selection.edges)}
            later = selection.trials()
            if selection.state == SELECTED:
                chosen = selection.chosen_runs
                steps = [s.get("steps_to_target") for s in (RunStore(run.root).summary() or {} for run in chosen)]
                reached = [s for s in steps if s is not None]
                mean = sum(reached) / len(reached) if reached else None
                entry.update(selected=chosen[0].run_id, selecting=[run.run_id for run in chosen],
                             point=selection.points[selection.chosen],
                             steps_to_target=int(mean) if mean is not None and mean == int(mean) else mean,
                             warning=selection.warning)
                later += [*plan.seed_runs(cell, chosen[0]), *plan.noise_runs(cell, chosen[0])]
            for run in later:
                rows.setdefault(run.run_id, {"phase": run.phase, **run.swept})
            cells.append(entry)
    found = {path.name: path for path in find_runs(study_dir)}
    others = [run_id for run_id in found if run_id not in rows]
    varying = _varying_keys([found[run_id] for run_id in others]) if others else {}
    for run_id in others:
        rows[run_id] = {"phase": None, **varying.get(run_id, {})}
    runs = [_row(study_dir / run_id, run_id, fields) for run_id, fields in rows.items()]
    return {"study": plan.spec.name if plan else study_dir.name, "dir": str(study_dir),
            "counts": dict(Counter(run["status"] for run in runs)), "runs": runs, "cells": cells,
            "extend": plan.spec.search.extend if plan and plan.spec.search else 0}


def _replan(study_dir: Path) -> Optional[StudyPlan]:
    """The plan of the study's last invocation, its runs placed under ``study_dir`` (wherever the
    study ran from: ``out_dir`` is not part of a run_id)."""
    try:
        record = read_json(study_dir / RECORD)
    except ValueError as error:
        raise StudyError(str(error)) from None
    if record is None:
        return None
    spec = parse_spec(record["spec"], source=record["source"])
    overrides = [o for o in record["overrides"] if not o.startswith("out_dir=")]
    return plan_study(spec, [*overrides, f"out_dir={study_dir.parent}"])


def _row(root: Path, run_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    store = RunStore(root)
    summary = store.summary() if root.is_dir() else None
    status = store.status() if root.is_dir() else PENDING
    row = {"run_id": run_id, "status": status or INCOMPLETE, **fields, "best": None, "steps_to_target": None,
           "samples_to_target": None, "attempts": store.attempts() if root.is_dir() else 0, "error": None}
    if summary is not None:
        steps = summary.get("steps_to_target")
        row.update(best=(summary.get("best") or {}).get(summary.get("metric")), steps_to_target=steps,
                   samples_to_target=steps * summary["effective_batch_size"] if steps is not None else None,
                   error=summary.get("error"))
    return row


def _varying_keys(roots: list[Path]) -> dict[str, dict[str, Any]]:
    """Per run, the config keys whose values differ between ``roots`` (the swept ones)."""
    configs = {root.name: flatten(RunStore(root).config()) for root in roots}
    keys = sorted({key for config in configs.values() for key in config})
    varying = [key for key in keys
               if len({json.dumps(config.get(key), sort_keys=True) for config in configs.values()}) > 1]
    return {run_id: {key: config.get(key) for key in varying} for run_id, config in configs.items()}


def count_line(status: dict[str, Any]) -> str:
    """``12 runs: 8 completed, 2 diverged, ...``."""
    counts = status["counts"]
    parts = ", ".join(f"{n} {name}" for name, n in sorted(counts.items(), key=lambda item: -item[1]))
    return f"{status['study']}: {len(status['runs'])} runs" + (f": {parts}" if parts else "")


def status_table(status: dict[str, Any]) -> Table:
    """The runs as a rich table, the error line of each failed run in its last column."""
    fixed = {"run_id", "status", "phase", "best", "steps_to_target", "samples_to_target", "attempts", "error"}
    swept = list(dict.fromkeys(key for run in status["runs"] for key in run if key not in fixed))
    table = Table(title=count_line(status), title_justify="left")
    for column in ["run_id", "status", "phase", *swept, "best", "steps", "attempts", "error"]:
        table.add_column(column, overflow="fold")
    styles = {COMPLETED: "green", DIVERGED: "yellow", FAILED: "red", RUNNING: "cyan"}
    for run in status["runs"]:
        best = run["best"]
        table.add_row(
            run["run_id"], f"[{styles.get(run['status'], 'dim')}]{run['status']}", run["phase"] or "",
            *(_text(run.get(key)) for key in swept), f"{best:.4g}" if best is not None else "",
            _text(run["steps_to_target"]), str(run["attempts"]), run["error"] or "",
        )
    return table


def _text(value: Any) -> str:
    return "" if value is None else str(value)
