"""The parquet cache of one source's runs, so that a second load reads only what changed.

``<cache_dir>/<hash of the source>/``: ``metrics.parquet`` and ``layers.parquet`` (every cached
run's rows, with their ``path``), ``report_metrics.parquet`` and ``report_layers.parquet`` (the
few of those rows the report reads: ``analysis.load``'s ``report_rows``, so that ``optbench
analyze`` reads megabytes, not the whole history) and ``runs.json`` (per run: its key, the
sizes and mtimes of its files (or, online, wandb's state and history length), and its
runs-frame row), written last and atomically: rows in the parquet files of a run whose key is
not in runs.json are never used.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from analysis.sources.run_data import LAYERS_SCHEMA, METRICS_SCHEMA

__all__ = ["Cache", "CachedRuns", "default_cache_dir", "TABLES", "ALL_ROWS", "REPORT_ROWS"]

VERSION = 4  # of the cache's layout and of the rows it holds: another version is ignored
TABLES = {"metrics": METRICS_SCHEMA, "layers": LAYERS_SCHEMA,
          "report_metrics": METRICS_SCHEMA, "report_layers": LAYERS_SCHEMA}
ALL_ROWS, REPORT_ROWS = ("metrics", "layers"), ("report_metrics", "report_layers")


def default_cache_dir() -> Path:
    """``$OPTBENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/optbench/analysis`` (``~/.cache/...``)."""
    if "OPTBENCH_CACHE_DIR" in os.environ:
        return Path(os.environ["OPTBENCH_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "optbench" / "analysis"


@dataclass
class CachedRuns:
    """A source's cached runs: ``entries`` maps a run's path to ``{"key", "row"}``; ``tables``
    holds those of ``TABLES`` that were read (each a table of every cached run's rows)."""

    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    tables: dict[str, pa.Table] = field(default_factory=lambda: {n: s.empty_table() for n, s in TABLES.items()})

    def only(self, paths: list[str]) -> "CachedRuns":
        """The cached runs among ``paths`` (all of them without a copy when nothing else is cached)."""
        if set(paths) == set(self.entries):
            return self
        keep = pa.array(paths, pa.string())
        return CachedRuns({p: self.entries[p] for p in paths},
                          {name: t.filter(pc.is_in(pc.cast(t["path"], pa.string()), value_set=keep))
                           for name, t in self.tables.items()})


class Cache:
    """The cache directory of one source (``None`` as ``cache_dir``: no cache)."""

    def __init__(self, cache_dir: Optional[Path], source: str) -> None:
        digest = hashlib.sha1(source.encode()).hexdigest()[:16]
        self.root = Path(cache_dir) / digest if cache_dir is not None else None

    def entries(self) -> dict[str, dict[str, Any]]:
        """The cached runs' keys and rows (runs.json); none when there is no cache or it cannot
        be read."""
        if self.root is None:
            return {}
        try:
            manifest = json.loads((self.root / "runs.json").read_text())
        except (OSError, ValueError):
            return {}
        return manifest["runs"] if isinstance(manifest, dict) and manifest.get("version") == VERSION else {}

    def read(self, entries: dict[str, dict[str, Any]], names: Iterable[str] = tuple(TABLES)) -> CachedRuns:
        """The cached runs ``entries`` (from ``entries()``) with the tables ``names``; nothing
        when a table cannot be read (a cache is never a reason to fail: the runs are read again)."""
        if not entries:
            return CachedRuns()
        try:
            tables = {name: pq.read_table(self.root / f"{name}.parquet", schema=TABLES[name]) for name in names}
        except (OSError, ValueError, pa.ArrowException):
            return CachedRuns()
        return CachedRuns(entries, tables)

    def write(self, runs: CachedRuns) -> None:
        """Write every table of ``TABLES`` (``runs`` holds them all), then runs.json."""
        if self.root is None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        for name in TABLES:
            tmp = self.root / f".{name}.parquet.tmp"
            # One chunk, one dictionary per column: a table of a thousand runs' pieces otherwise
            # writes and reads back as thousands of small pages.
            pq.write_table(runs.tables[name].unify_dictionaries().combine_chunks(), tmp, compression="lz4")
            os.replace(tmp, self.root / f"{name}.parquet")
        tmp = self.root / ".runs.json.tmp"
        tmp.write_text(json.dumps({"version": VERSION, "runs": runs.entries}))
        os.replace(tmp, self.root / "runs.json")
