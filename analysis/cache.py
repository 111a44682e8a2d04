"""The parquet cache of one source's runs, so that a second load reads only what changed.

``<cache_dir>/<hash of the source>/``: ``metrics.parquet`` and ``layers.parquet`` (every cached
run's rows, with their ``path``) and ``runs.json`` (per run: its key, the sizes and mtimes of its
files (or, online, wandb's state and history length), and its runs-frame row), written last and
atomically: rows in the parquet files of a run whose key is not in runs.json are never used.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from analysis.sources.run_data import LAYERS_SCHEMA, METRICS_SCHEMA

__all__ = ["Cache", "CachedRuns", "default_cache_dir"]

VERSION = 3  # of the cache's layout and of the rows it holds: another version is ignored


def default_cache_dir() -> Path:
    """``$OPTBENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/optbench/analysis`` (``~/.cache/...``)."""
    if "OPTBENCH_CACHE_DIR" in os.environ:
        return Path(os.environ["OPTBENCH_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "optbench" / "analysis"


@dataclass
class CachedRuns:
    """A source's cached runs: ``entries`` maps a run's path to ``{"key", "row"}``."""

    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    metrics: pa.Table = field(default_factory=METRICS_SCHEMA.empty_table)
    layers: pa.Table = field(default_factory=LAYERS_SCHEMA.empty_table)

    def only(self, paths: list[str]) -> "CachedRuns":
        """The cached runs among ``paths`` (all of them without a copy when nothing else is cached)."""
        if set(paths) == set(self.entries):
            return self
        keep = pa.array(paths, pa.string())
        return CachedRuns({p: self.entries[p] for p in paths},
                          *(t.filter(pc.is_in(pc.cast(t["path"], pa.string()), value_set=keep))
                            for t in (self.metrics, self.layers)))


class Cache:
    """The cache directory of one source (``None`` as ``cache_dir``: no cache)."""

    def __init__(self, cache_dir: Optional[Path], source: str) -> None:
        digest = hashlib.sha1(source.encode()).hexdigest()[:16]
        self.root = Path(cache_dir) / digest if cache_dir is not None else None

    def read(self) -> CachedRuns:
        """What is cached; nothing when there is no cache or it cannot be read."""
        if self.root is None or not (self.root / "runs.json").is_file():
            return CachedRuns()
        try:
            manifest = json.loads((self.root / "runs.json").read_text())
            if manifest.get("version") != VERSION:
                return CachedRuns()
            tables = [pq.read_table(self.root / f"{name}.parquet", schema=schema)
                      for name, schema in (("metrics", METRICS_SCHEMA), ("layers", LAYERS_SCHEMA))]
        except (OSError, ValueError, pa.ArrowException):
            return CachedRuns()  # a cache is never a reason to fail: read the runs again
        return CachedRuns(manifest["runs"], *tables)

    def write(self, runs: CachedRuns) -> None:
        if self.root is None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        for name, table in (("metrics", runs.metrics), ("layers", runs.layers)):
            tmp = self.root / f".{name}.parquet.tmp"
            pq.write_table(table, tmp, compression="lz4")
            os.replace(tmp, self.root / f"{name}.parquet")
        tmp = self.root / ".runs.json.tmp"
        tmp.write_text(json.dumps({"version": VERSION, "runs": runs.entries}))
        os.replace(tmp, self.root / "runs.json")
