"""The run store as a source: each run directory (``experiments.store``) → ``RunData``.

Files are read through ``RunStore``; metrics.jsonl and layers.jsonl go first through Arrow's
JSON reader (C++, no Python object per value) and only when it refuses a file (a last line cut
short by a killed writer, a corrupt line) through ``RunStore.rows``, which owns those rules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, TypeVar

import pyarrow as pa
import pyarrow.json as pj

from analysis.run_map import Identity, RunMap
from analysis.sources.raw_run import RawRun, run_data
from analysis.sources.run_data import RunData, layers_table, skip, table_from_rows
from experiments.store import INCOMPLETE, RunStore, StoreError, find_runs

__all__ = ["store_runs", "read_store_run", "store_run_key", "is_live"]

_FILES = ("config.yaml", "summary.json", "metrics.jsonl", "layers.jsonl")
T = TypeVar("T")


def store_runs(root: Path) -> list[Path]:
    """Every run directory under ``root`` (``find_runs``)."""
    return find_runs(root)


def store_run_key(root: Path) -> list:
    """What a run's cached rows depend on: size and mtime of each of its files."""
    key = []
    for name in _FILES:
        try:
            stat = (root / name).stat()
            key.append([name, stat.st_size, stat.st_mtime_ns])
        except OSError:
            key.append([name, None, None])
    return key


def is_live(root: Path) -> bool:
    """A live process holds the run's lock (the status is then ``running``, whatever is cached)."""
    return (root / "lock.json").exists() and RunStore(root).lock.holder() is not None


def read_store_run(root: Path, run_map: Optional[RunMap] = None) -> RunData:
    """One run directory → its row, metrics and layer rows (``run_map``: see ``raw_run``; a
    map's ``match`` sees the study as the group and the run_id as the name); an unreadable file
    is left out with one warning naming it."""
    store = RunStore(root)
    skipped = False

    def read(what: Callable[[], T], name: str, default: T) -> T:
        nonlocal skipped
        try:
            return what()
        except StoreError as error:  # its message names the file
            skip(f"skipping {error}")
        except (OSError, ValueError) as error:  # e.g. bytes that are not UTF-8
            skip(f"skipping {store.path(name)}: {error}")
        skipped = True
        return default

    config = read(store.config, "config.yaml", None)
    if not isinstance(config, dict):
        if config is not None:
            skip(f"skipping {store.config_path}: not a mapping")
            skipped = True
        config = {}
    summary = read(store.summary, "summary.json", None)
    study, run_id, path = store.study, store.run_id, str(root)
    history = read(lambda: _jsonl(store, "metrics.jsonl"), "metrics.jsonl", None)
    layers = layers_table(read(lambda: _jsonl(store, "layers.jsonl"), "layers.jsonl", None), study, run_id, path)
    raw = RawRun("store", path, study, run_id, Identity(group=study, name=run_id), config, lambda: summary or {}, True,
                 INCOMPLETE, history if history is not None else pa.table({}), lambda steps: layers, skipped)
    return run_data(raw, run_map)


def _jsonl(store: RunStore, name: str) -> Optional[pa.Table]:
    path = store.path(name)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    except OSError as error:
        raise StoreError(f"cannot read {path}: {error}") from None
    try:
        return pj.read_json(path, read_options=pj.ReadOptions(use_threads=False, block_size=size + 1))
    except (pa.ArrowInvalid, OSError):
        return table_from_rows(store.rows(name))
