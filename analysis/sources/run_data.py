"""One run as every source delivers it: its runs-frame row, its metrics and its layer rows as
Arrow tables (``RunData``), and the builders of those tables. How a run's config, summary and
history become its row is ``analysis.sources.raw_run``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analysis import frames as F

__all__ = ["RunData", "SkippedFileWarning", "skip", "metrics_long", "layers_table", "table_from_rows",
           "METRICS_SCHEMA", "LAYERS_SCHEMA"]


class SkippedFileWarning(UserWarning):
    """A run's file could not be read and was left out (the message names it)."""


def skip(message: str) -> None:
    """Warn once that a file is left out: ``message`` names it and says why."""
    warnings.warn(message, SkippedFileWarning, stacklevel=3)


@dataclass
class RunData:
    """One run: ``row`` (runs-frame columns), ``metrics`` (long) and ``layers`` as Arrow tables,
    each carrying ``path`` so that the cache can replace one run's rows. ``skipped`` is set when a
    file was left out (such a run is read again next time, and warns again); ``key``, what its
    rows depend on, is set by ``load``."""

    row: dict[str, Any]
    metrics: pa.Table
    layers: pa.Table
    skipped: bool = False
    key: Any = field(default=None)


def table_from_rows(rows: Iterable[dict[str, Any]]) -> pa.Table:
    """Rows with differing keys → one table (a missing key is null; a NaN stays NaN)."""
    rows = list(rows)
    keys = list(dict.fromkeys(k for row in rows for k in row))
    return pa.table({k: pa.array([row.get(k) for row in rows]) for k in keys})


def _ids(table: pa.Table, study: str, run_id: str, path: str) -> list[pa.Array]:
    return [_constant(v, len(table)) for v in (study, run_id, path)]


def _constant(value: str, n: int) -> pa.DictionaryArray:
    """``value`` n times, dictionary-encoded (one copy of the string)."""
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([value], pa.string()))


def _column(table: pa.Table, name: str, dtype: pa.DataType) -> pa.Array:
    if name not in table.column_names:
        return pa.nulls(len(table), dtype)
    return pc.cast(table[name], dtype, safe=False)


METRICS_SCHEMA = pa.schema([
    ("study", pa.dictionary(pa.int32(), pa.string())), ("run_id", pa.dictionary(pa.int32(), pa.string())),
    ("step", pa.int64()), ("epoch", pa.float64()), ("wall_time", pa.float64()),
    ("metric", pa.dictionary(pa.int32(), pa.string())), ("value", pa.float64()),
    ("path", pa.dictionary(pa.int32(), pa.string())),
])
LAYERS_SCHEMA = pa.schema([
    ("study", pa.dictionary(pa.int32(), pa.string())), ("run_id", pa.dictionary(pa.int32(), pa.string())),
    ("step", pa.int64()), ("layer", pa.dictionary(pa.int32(), pa.string())),
    *[(name, pa.float64()) for name in F.LAYER_VALUES],
    ("path", pa.dictionary(pa.int32(), pa.string())),
])


def metrics_long(wide: Optional[pa.Table], study: str, run_id: str, path: str, *, step: Optional[str] = "step",
                 epoch: Optional[str] = "epoch", wall_time: Optional[str] = "wall_time", skip: Iterable[str] = (),
                 last_per_step: bool = False) -> pa.Table:
    """Logged rows (a column per key; ``step``, ``epoch``, ``wall_time`` name the columns that
    give each row's context, None: none) → the long metrics rows: one per non-null value of each
    numeric column other than those, the ``skip`` keys and keys starting with ``_`` (wandb's
    own), in step order per metric. A row without a step is no metric row, and a run without a
    step key has none. ``last_per_step``: of the values a metric logged at one step, only the
    last counts."""
    if wide is None or len(wide) == 0 or step is None or step not in wide.column_names:
        return METRICS_SCHEMA.empty_table()
    context = {"step": _column(wide, step, pa.int64()), "epoch": _column(wide, epoch or "", pa.float64()),
               "wall_time": _column(wide, wall_time or "", pa.float64())}
    skipped = {step, epoch, wall_time, *skip}
    parts = []
    for name in wide.column_names:
        column = wide[name]
        if name in skipped or name.startswith("_") or not (
                pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
            continue
        keep = pc.and_(pc.is_valid(column), pc.is_valid(context["step"]))
        part = {key: values.filter(keep) for key, values in context.items()}
        part["value"] = pc.cast(column.filter(keep), pa.float64())
        if last_per_step:
            part = _last_per_step(part)
        parts.append(pa.table({**{k: part[k] for k in context}, "metric": _constant(name, len(part["value"])),
                               "value": part["value"]}))
    if not parts:
        return METRICS_SCHEMA.empty_table()
    long = pa.concat_tables(parts)
    study_, run_, path_ = _ids(long, study, run_id, path)
    return pa.table({"study": study_, "run_id": run_, **{n: long[n] for n in long.column_names},
                     "path": path_}).select(METRICS_SCHEMA.names).cast(METRICS_SCHEMA)


def _last_per_step(part: dict[str, Any]) -> dict[str, Any]:
    """The last of each step's values, in step order (the columns of ``part`` taken alike)."""
    steps = part["step"].to_numpy(zero_copy_only=False)
    if len(steps) < 2 or (np.diff(steps) > 0).all():
        return part
    _, first_from_end = np.unique(steps[::-1], return_index=True)
    keep = pa.array(len(steps) - 1 - first_from_end)
    return {key: values.take(keep) for key, values in part.items()}


def layers_table(wide: Optional[pa.Table], study: str, run_id: str, path: str) -> pa.Table:
    """layers.jsonl-style rows → the layers rows (missing statistics are NaN)."""
    if wide is None or len(wide) == 0 or "layer" not in wide.column_names:
        return LAYERS_SCHEMA.empty_table()
    study_, run_, path_ = _ids(wide, study, run_id, path)
    values = {n: pc.fill_null(_column(wide, n, pa.float64()), float("nan")) for n in F.LAYER_VALUES}
    return pa.table({
        "study": study_, "run_id": run_, "step": _column(wide, "step", pa.int64()),
        "layer": pc.dictionary_encode(_column(wide, "layer", pa.string())), **values, "path": path_,
    }).cast(LAYERS_SCHEMA)
