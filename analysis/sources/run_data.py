"""One run as every source delivers it: its runs-frame row, its metrics and its layer rows.

The mapping from a run's config and summary to the runs-frame row lives here once, so that a
run read from the store and the same run read from wandb give the same row.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analysis import frames as F
from experiments.dotted_keys import flatten
from experiments.store import INCOMPLETE

__all__ = ["RunData", "SkippedFileWarning", "skip", "run_row", "metrics_long", "layers_table",
           "table_from_rows", "KEY_COLUMNS"]

KEY_COLUMNS = ("step", "epoch", "wall_time")  # per-row context in metrics.jsonl, not metrics


class SkippedFileWarning(UserWarning):
    """A run's file could not be read and was left out (the message names it)."""


def skip(message: str) -> None:
    """Warn once that a file is left out: ``message`` names it and says why."""
    warnings.warn(message, SkippedFileWarning, stacklevel=3)


@dataclass
class RunData:
    """One run: ``row`` (runs-frame columns), ``metrics`` (long) and ``layers`` as Arrow tables,
    each carrying ``path`` so that the cache can replace one run's rows. ``skipped`` is set when a
    file was left out (such a run is read again next time, and warns again)."""

    row: dict[str, Any]
    metrics: pa.Table
    layers: pa.Table
    skipped: bool = False
    key: Any = field(default=None)


def _config_columns(config: dict[str, Any]) -> dict[str, Any]:
    """``{"optimizer": {"lr": 0.1}}`` → ``{"config.optimizer.lr": 0.1}``; lists as JSON text."""
    return {key: json.dumps(value) if isinstance(value, (list, tuple)) else value
            for key, value in flatten(config, F.CONFIG_PREFIX).items()}


def _get(config: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        config = config.get(part) if isinstance(config, dict) else None
    return config


def run_row(source: str, path: str, study: str, run_id: str, config: dict[str, Any],
            summary: Optional[dict[str, Any]]) -> dict[str, Any]:
    """The runs-frame row of a run from its config and summary (None: not finished, or killed).

    Batch size and learning rate without a summary come from the config through the training
    code's own (torch-free) formulas; what only metrics can tell is filled in later
    (``analysis.unfinished``).
    """
    from experiments.config import RunConfig, effective_batch_size
    from experiments.schedule import scaled_lr
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    s = summary or {}
    metric = s.get("metric")
    batch, lr = s.get("effective_batch_size"), s.get("lr")
    if (batch is None or lr is None) and _get(config, "data.batch_size") is not None:
        try:  # a config.yaml written before a field existed takes that field's default
            node = OmegaConf.merge(OmegaConf.structured(RunConfig), config)
        except OmegaConfBaseException:  # or one from a later optbench, with fields unknown here
            node = None
        if node is not None:
            batch = effective_batch_size(node) if batch is None else batch
            lr = scaled_lr(node.optimizer.lr, node.optimizer.lr_scaling, batch,
                           node.optimizer.reference_batch_size) if lr is None else lr
    return {
        F.SOURCE: source, F.PATH: path, F.STUDY: study, F.RUN_ID: run_id,
        F.TASK: s.get("task", config.get("task")), F.SIZE: config.get("size"),
        F.OPTIMIZER: s.get("optimizer", _get(config, "optimizer.name")),
        F.BATCH_SIZE: batch, F.LR: lr, F.WEIGHT_DECAY: _get(config, "optimizer.weight_decay"),
        F.SEED: s.get("seed", config.get("seed")),
        F.STATUS: s.get("status", INCOMPLETE), F.ERROR: s.get("error"),
        F.METRIC: metric, F.HIGHER_IS_BETTER: s.get("higher_is_better"), F.TARGET: s.get("target"),
        F.BEST: (s.get("best") or {}).get(metric), F.FINAL: (s.get("final") or {}).get(metric),
        F.STEPS_TO_TARGET: s.get("steps_to_target"), F.GLOBAL_STEP: s.get("global_step"),
        F.MAX_STEPS: _get(config, "trainer.max_steps"), F.WALL_TIME_S: s.get("wall_time_s"),
        F.STEP_TIME_S: s.get("train_step_time_s"), F.THROUGHPUT: s.get("throughput_samples_per_s"),
        F.PEAK_MEMORY: s.get("peak_memory_bytes"), F.STATE_BYTES: s.get("optimizer_state_bytes"),
        F.NUM_PARAMETERS: s.get("num_parameters"), F.GRAD_NOISE_SCALE: s.get("grad_noise_scale"),
        **_config_columns(config),
    }


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


def metrics_long(wide: Optional[pa.Table], study: str, run_id: str, path: str) -> pa.Table:
    """metrics.jsonl-style rows (step, epoch, wall_time, <metric>...) → the long metrics rows:
    one per non-null value of each numeric column, in step order per metric."""
    if wide is None or len(wide) == 0 or "step" not in wide.column_names:
        return METRICS_SCHEMA.empty_table()
    step, epoch, wall = (_column(wide, n, t) for n, t in
                         (("step", pa.int64()), ("epoch", pa.float64()), ("wall_time", pa.float64())))
    parts = []
    for name in wide.column_names:
        column = wide[name]
        if name in KEY_COLUMNS or not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
            continue
        keep = pc.is_valid(column)
        values = pc.cast(column.filter(keep), pa.float64())
        parts.append(pa.table({
            "step": step.filter(keep), "epoch": epoch.filter(keep), "wall_time": wall.filter(keep),
            "metric": _constant(name, len(values)),
            "value": values,
        }))
    if not parts:
        return METRICS_SCHEMA.empty_table()
    long = pa.concat_tables(parts)
    study_, run_, path_ = _ids(long, study, run_id, path)
    return pa.table({"study": study_, "run_id": run_, **{n: long[n] for n in long.column_names},
                     "path": path_}).select(METRICS_SCHEMA.names).cast(METRICS_SCHEMA)


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
