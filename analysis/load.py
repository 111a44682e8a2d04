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

import multiprocessing as mp
import os
import warnings
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Optional

import pyarrow as pa
import pyarrow.compute as pc

from analysis import frames as F
from analysis.cache import ALL_ROWS, REPORT_ROWS, TABLES, Cache, CachedRuns, default_cache_dir
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
    """A source's runs; ``in_processes``: reading one holds the GIL (pure Python), so that many
    are read in a pool of processes rather than threads."""

    cache_id: str
    units: list[_Unit]
    is_live: Callable[[str], bool]
    in_processes: bool = False


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
                   wandb_files.is_live, in_processes=True)


PROCESSES_FROM = 64  # runs to read, at least, before processes pay for their start


def _read_units(units: list[_Unit], workers: int, in_processes: bool) -> list[RunData]:
    """Each unit read, in order: by ``workers`` threads, or forked processes where reading holds
    the GIL and there are enough runs (and fork exists); a process's warnings are warned here."""
    if not in_processes or workers < 2 or len(units) < PROCESSES_FROM or "fork" not in mp.get_all_start_methods():
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(lambda unit: unit.read(), units))
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("fork")) as pool:
        chunk = max(1, len(units) // (8 * workers))
        results = list(pool.map(_read_recording, [u.read for u in units], chunksize=chunk))
    for _, caught in results:
        for message, category in caught:
            warnings.warn(message, category, stacklevel=2)
    return [data for data, _ in results]


def _read_recording(read: Callable[[], RunData]) -> tuple[RunData, list[tuple[str, type[Warning]]]]:
    """``read()`` and the warnings it gave (a process's warnings do not reach its parent)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = read()
    return data, [(str(w.message), w.category) for w in caught]


def _report_part(data: RunData) -> tuple[pa.Table, pa.Table]:
    """The rows of ``data`` that the report reads: the metrics rows of the run's own metric
    (all of them while its metric is unknown: ``complete_unfinished`` picks it from them), and
    the layer rows with a trust ratio (``analysis.layer_stats``)."""
    metric, metrics, layers = data.row.get(F.METRIC), data.metrics, data.layers
    if isinstance(metric, str):
        metrics = metrics.filter(pc.equal(pc.cast(metrics["metric"], pa.string()), metric))
    return metrics, layers.filter(pc.invert(pc.is_nan(layers["trust_ratio"])))


def _read_source(source: _Source, cache: Cache, workers: int,
                 names: tuple[str, str]) -> tuple[list[dict], pa.Table, pa.Table]:
    """The rows, metrics and layers (the cache's tables ``names``) of ``source``'s runs: the
    cached ones from the cache, the others read (and the cache rewritten with them)."""
    entries = cache.entries()
    fresh = [u for u in source.units if entries.get(u.path, {}).get("key") != u.key]
    changed = bool(fresh) or len(entries) != len(source.units)
    cached = cache.read(entries, TABLES if changed else names)  # a rewrite needs every table
    if entries and not cached.entries:  # the cache could not be read: read every run
        fresh, changed = source.units, True
    fresh_paths = {u.path for u in fresh}
    kept = cached.only([u.path for u in source.units if u.path not in fresh_paths])
    data: list[RunData] = []
    if changed:
        data = _read_units(fresh, workers, source.in_processes)
        for unit, read in zip(fresh, data):
            read.key = unit.key
        good = [d for d in data if not d.skipped]
        parts = [(d.metrics, d.layers, *_report_part(d)) for d in good]
        kept = CachedRuns({**kept.entries, **{d.row["path"]: {"key": d.key, "row": d.row} for d in good}},
                          {name: pa.concat_tables([kept.tables[name], *(p[i] for p in parts)])
                           for i, name in enumerate(TABLES)})
        cache.write(kept)
    bad = [d for d in data if d.skipped]
    bad_parts = [(d.metrics, d.layers) if names == ALL_ROWS else _report_part(d) for d in bad]
    rows = [dict(kept.entries[u.path]["row"]) if u.path in kept.entries else None for u in source.units]
    rows = [r for r in rows if r is not None] + [d.row for d in bad]
    for row in rows:
        if row["status"] == "incomplete" and source.is_live(row["path"]):
            row["status"] = "running"
    return (rows, pa.concat_tables([kept.tables[names[0]], *(p[0] for p in bad_parts)]),
            pa.concat_tables([kept.tables[names[1]], *(p[1] for p in bad_parts)]))


def load(sources: list[str], cache_dir: Optional[Path | str] = _DEFAULT, *, api: Optional[Any] = None,
         workers: Optional[int] = None, run_map: Optional[RunMap] = None,
         report_rows: bool = False) -> Frames:  # type: ignore[assignment]
    """Read ``sources`` into ``Frames(runs, metrics, layers)`` (schema: ``analysis.frames``).

    ``cache_dir``: where the parquet cache lives (default ``default_cache_dir()``; None: no
    cache). ``api``: the wandb public-API client for ``wandb:`` sources (default ``wandb.Api()``;
    see ``analysis.sources.wandb_api`` for what a stub needs). ``workers``: threads (processes,
    for many runs of a wandb folder: reading .wandb files is pure Python) reading runs.
    ``run_map``: where the fields of runs optbench did not write are (``analysis.run_map.read_map``).
    ``report_rows``: the metrics and layers frames hold only the rows the report reads (each
    run's own validation metric, the layer rows with a trust ratio): a few percent of a long
    history, and what ``optbench analyze`` loads (the cache keeps them apart, so that a cached
    load reads no other).
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
        source_rows, source_metrics, source_layers = _read_source(source, Cache(cache_root, source.cache_id), workers,
                                                                  REPORT_ROWS if report_rows else ALL_ROWS)
        rows += source_rows
        metrics.append(source_metrics)
        layers.append(source_layers)
    if run_map is not None:
        check(run_map, [MapReport.from_json(row["_map"]) for row in rows])
    metrics_frame = pa.concat_tables(metrics).drop_columns(["path"]).to_pandas()
    layers_frame = pa.concat_tables(layers).drop_columns(["path"]).to_pandas()
    runs = mark_metrics(complete_unfinished(typed_runs(rows), metrics_frame))
    return Frames(runs, metrics_frame, layers_frame)
