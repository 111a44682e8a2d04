"""A wandb project online (``wandb:ENTITY/PROJECT[/GROUP]``) as a source, through the public API.

Histories are read in full with ``run.scan_history()`` (never the sampled ``run.history()``).
The client is ``wandb.Api()`` unless one is given: anything with ``runs(path, filters=None)``
returning runs that have ``id``, ``name``, ``group``, ``project``, ``state``, ``config`` (dict),
``summary_metrics`` (dict), ``scan_history()`` (iterable of dicts), optionally ``tags``, and,
for the cache key, ``heartbeatAt`` and ``historyLineCount`` (tests pass such a stub: there is
no network there).
A run is read again when its state, heartbeat or history length changed.
"""

from __future__ import annotations

from typing import Any, Optional

from analysis.run_map import Identity, RunMap
from analysis.sources.history import History
from analysis.sources.raw_run import run_data
from analysis.sources.run_data import RunData
from analysis.sources.wandb_history import LAYER_TABLE_KEY, wandb_raw_run
from experiments.store import COMPLETED, FAILED, INCOMPLETE, INTERRUPTED, RUNNING

__all__ = ["parse_spec", "api_runs", "read_api_run", "api_run_key"]

_STATES = {"finished": COMPLETED, "running": RUNNING, "crashed": INCOMPLETE, "failed": FAILED,
           "killed": INTERRUPTED}  # a wandb run's state → the run store's status


def parse_spec(spec: str) -> tuple[str, str, Optional[str]]:
    """``wandb:ENTITY/PROJECT[/GROUP]`` → (entity, project, group)."""
    parts = spec.removeprefix("wandb:").split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"bad wandb source {spec!r} (expected wandb:ENTITY/PROJECT or wandb:ENTITY/PROJECT/GROUP)")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None


def api_runs(spec: str, api: Optional[Any] = None) -> list[Any]:
    """The runs of the project (of the group, if given)."""
    entity, project, group = parse_spec(spec)
    if api is None:
        import wandb

        api = wandb.Api()
    return list(api.runs(f"{entity}/{project}", filters={"group": group} if group else None))


def api_run_key(run: Any) -> list:
    return [run.state, str(getattr(run, "heartbeatAt", None)), getattr(run, "historyLineCount", None)]


def read_api_run(spec: str, run: Any, run_map: Optional[RunMap] = None) -> RunData:
    """One run of the project → ``RunData`` (``run_map``: see ``analysis.sources.raw_run``)."""
    entity, project, _ = parse_spec(spec)
    history = History(json_values=False)
    for row in run.scan_history():
        history.add(row.items())
    raw = wandb_raw_run(
        f"wandb:{entity}/{project}/{run.id}",
        identity=Identity(project=project, group=run.group or None, name=run.name or run.id,
                          tags=tuple(getattr(run, "tags", None) or ())),
        config=dict(run.config), summary=lambda: dict(run.summary_metrics), history=history.table(),
        layer_tables=history.objects(LAYER_TABLE_KEY), status=_STATES.get(run.state, INCOMPLETE),
    )
    return run_data(raw, run_map)
