"""Sources → one set of tidy frames (``analysis.frames``), cached to parquet.

A source is a run-store directory (any depth of ``<out_dir>/<study>/<run_id>/``), a directory of
wandb run folders (``offline-run-*``, ``run-*``, or a folder holding them at any depth, e.g.
``wandb/``), or ``wandb:ENTITY/PROJECT[/GROUP]`` (the public API). A directory that holds run
store runs is read as a store (the wandb folders inside its runs are copies of the same runs);
pass ``<run>/wandb`` to read those instead.

Each run is cached with a key (its files' sizes and mtimes; online, wandb's state, heartbeat and
history length; and the map's digest): a second load reads again only the runs whose key
changed, plus those that left a file out. Whether a run without a summary is running is decided
at every load (a live lock, or a wandb file written to in the last minute), never cached.

A map (``analysis.run_map``) says where the fields of runs optbench did not write are; it is
applied as each run is read, and checked against all of them once they are.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Optional

import pyarrow as pa

from analysis.cache import Cache, CachedRuns, default_cache_dir
from analysis.frames import Frames, typed_runs
from analysis.left_out import mark_metrics
from analysis.run_map import MapReport, RunMap, check
from analysis.sources import store as store_source
from analysis.sources import wandb_api, wandb_files
from analysis.sources.run_data import LAYERS_SCHEMA, METRICS_SCHEMA, RunData
from analysis.unfinished import complete_unfinished

__all__ = ["load", "Frames"]

_DEFAULT = object()


@dataclass
class _Unit:
    """One run of a source: where it is, what its cached rows depend on, how to read it."""

    path: str
    key: Any
    read: Callable[[], RunData]


@dataclass
class _Source:
    cache_id: str
    units: list[_Unit]
    is_live: Callable[[str], bool]


def _resolve(spec: str, api: Optional[Any], run_map: Optional[RunMap]) -> _Source:
    digest = run_map.digest if run_map is not None else None
    if spec.startswith("wandb:"):
        runs = wandb_api.api_runs(spec, api)
        return _Source(spec, [_Unit(f"wandb:{'/'.join(wandb_api.parse_spec(spec)[:2])}/{r.id}",
                                    [wandb_api.api_run_key(r), digest], partial(wandb_api.read_api_run, spec, r, run_map))
                              for r in runs], lambda path: False)
    root = Path(spec).resolve()
    if not root.is_dir():
        raise ValueError(f"no such source: {spec} (a run-store directory, a directory of wandb runs, "
                         f"or wandb:ENTITY/PROJECT[/GROUP])")
    runs = [] if wandb_files.is_wandb_dir(root) else store_source.store_runs(root)
    if runs:
        return _Source(f"store:{root}", [_Unit(str(p), [store_source.store_run_key(p), digest],
                                               partial(store_source.read_store_run, p, run_map)) for p in runs],
                       lambda path: store_source.is_live(Path(path)))
    folders = wandb_files.find_wandb_runs(root)
    return _Source(f"wandb-files:{root}", [_Unit(str(f[0]), [wandb_files.wandb_run_key(f), digest],
                                                 partial(wandb_files.read_wandb_run, f, run_map)) for f in folders],
                   wandb_files.is_live)


def _read_source(source: _Source, cache: Cache, workers: int) -> tuple[list[dict], pa.Table, pa.Table]:
    cached = cache.read()
    fresh = [u for u in source.units if cached.entries.get(u.path, {}).get("key") != u.key]
    fresh_paths = {u.path for u in fresh}
    kept = cached.only([u.path for u in source.units if u.path not in fresh_paths])
    if not fresh and len(kept.entries) == len(cached.entries):
        data: list[RunData] = []
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            data = list(pool.map(lambda unit: unit.read(), fresh))
        for unit, read in zip(fresh, data):
            read.key = unit.key
        good = [d for d in data if not d.skipped]
        kept = CachedRuns(
            {**kept.entries, **{d.row["path"]: {"key": d.key, "row": d.row} for d in good}},
            pa.concat_tables([kept.metrics, *(d.metrics for d in good)]),
            pa.concat_tables([kept.layers, *(d.layers for d in good)]),
        )
        cache.write(kept)
    bad = [d for d in data if d.skipped]
    rows = [dict(kept.entries[u.path]["row"]) if u.path in kept.entries else None for u in source.units]
    rows = [r for r in rows if r is not None] + [d.row for d in bad]
    for row in rows:
        if row["status"] == "incomplete" and source.is_live(row["path"]):
            row["status"] = "running"
    return (rows, pa.concat_tables([kept.metrics, *(d.metrics for d in bad)]),
            pa.concat_tables([kept.layers, *(d.layers for d in bad)]))


def load(sources: list[str], cache_dir: Optional[Path | str] = _DEFAULT, *, api: Optional[Any] = None,
         workers: Optional[int] = None, run_map: Optional[RunMap] = None) -> Frames:  # type: ignore[assignment]
    """Read ``sources`` into ``Frames(runs, metrics, layers)`` (schema: ``analysis.frames``).

    ``cache_dir``: where the parquet cache lives (default ``default_cache_dir()``; None: no
    cache). ``api``: the wandb public-API client for ``wandb:`` sources (default ``wandb.Api()``;
    see ``analysis.sources.wandb_api`` for what a stub needs). ``workers``: threads reading runs.
    ``run_map``: where the fields of runs optbench did not write are (``analysis.run_map.read_map``).
    A file that cannot be read is left out with one ``SkippedFileWarning`` naming it. A source
    that is not there, or holds no runs, raises ``ValueError`` naming it, and so does a map that
    does not fit the runs (a block that matches none, a key none of its runs has).
    """
    cache_root = default_cache_dir() if cache_dir is _DEFAULT else cache_dir
    workers = workers or os.cpu_count() or 2
    rows: list[dict] = []
    metrics, layers = [METRICS_SCHEMA.empty_table()], [LAYERS_SCHEMA.empty_table()]
    for spec in sources:
        source = _resolve(str(spec), api, run_map)
        if not source.units:
            raise ValueError(f"no runs in {spec}")
        source_rows, source_metrics, source_layers = _read_source(source, Cache(cache_root, source.cache_id), workers)
        rows += source_rows
        metrics.append(source_metrics)
        layers.append(source_layers)
    if run_map is not None:
        check(run_map, [MapReport.from_json(row["_map"]) for row in rows])
    metrics_frame = pa.concat_tables(metrics).drop_columns(["path"]).to_pandas()
    layers_frame = pa.concat_tables(layers).drop_columns(["path"]).to_pandas()
    runs = mark_metrics(complete_unfinished(typed_runs(rows), metrics_frame))
    return Frames(runs, metrics_frame, layers_frame)
