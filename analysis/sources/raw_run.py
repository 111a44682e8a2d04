"""One run as a source read it (``RawRun``: who it is, its config, its summary, its history as a
wide table) and the one mapping from it to its runs-frame row and metrics rows (``run_data``),
so that a run read from the store and the same run read from wandb give the same row, and a
foreign run gives the row its map and the conventions say.

Each field comes from, first to last: the map's block that sets it (``analysis.run_map``),
optbench's summary (a run that has one), the conventions (``analysis.conventions``). What a run
still lacks of what a comparison needs (task, optimizer, lr, batch size, a step key) is named in
its ``left_out`` column; the metric of a run without a summary is found later, from its metrics
rows (``analysis.unfinished``), unless the map names it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analysis import conventions as C
from analysis import frames as F
from analysis.run_map import MISSING, Identity, MapReport, RunMap, available_keys, convert, resolve
from analysis.sources.run_data import RunData, metrics_long
from analysis.unfinished import curve_results, metric_of
from experiments.dotted_keys import flatten

__all__ = ["RawRun", "run_data"]

_CELL = (F.TASK, F.OPTIMIZER, F.BATCH_SIZE, F.LR)  # what a comparison groups runs by: a run lacking one is left out
_KINDS = {"task": "text", "optimizer": "text", "lr": "number", "batch_size": "integer", "seed": "integer",
          "max_steps": "integer", "metric.higher_is_better": "boolean", "metric.target": "number"}


@dataclass
class RawRun:
    """One run before mapping. ``summary``: returns the run's summary (optbench's summary.json,
    or the wandb summary; empty if none), read only when asked for (replaying a wandb run's
    summary updates costs as much as its history, and a foreign run's summary is needed only
    where a map names a key of it); ``ours``: the summary, if any, is optbench's (a store run,
    or a wandb run whose config optbench logged); ``status``: the source's own word for the run,
    used when the summary has none; ``history``: one row per logged row, a column per numeric key;
    ``last_per_step``: a value logged again at a step replaces the earlier one (a resumed wandb
    run logs the rows after its checkpoint twice); ``layers``: the layer rows, given each
    history row's step (None where the run has no step key)."""

    source: str
    path: str
    study: str
    run_id: str
    identity: Identity
    config: dict[str, Any]
    summary: Callable[[], dict[str, Any]]
    ours: bool
    status: str
    history: pa.Table
    layers: Callable[[Optional[np.ndarray]], pa.Table]
    skipped: bool = False
    last_per_step: bool = False


@dataclass
class _Fields:
    """The map's sources for one run, resolved on demand; what they missed goes to ``report``."""

    raw: RawRun
    run_map: Optional[RunMap]
    report: MapReport = field(init=False)
    chosen: dict = field(init=False)

    def __post_init__(self) -> None:
        self.report = MapReport(self.raw.identity)
        self.chosen = {}
        if self.run_map is not None:
            self.report.blocks, self.chosen = self.run_map.sources(self.raw.identity)

    def given(self, name: str) -> bool:
        return name in self.chosen

    def value(self, name: str) -> Any:
        number, source = self.chosen[name]
        value = resolve(source, self.raw.config, self.raw.summary)
        if value is MISSING:
            self._miss(number, name, source.where, source.key,
                       self.raw.config if source.where == "config" else self.raw.summary())
            return None
        return convert(value, _KINDS[name])

    def history_key(self, name: str) -> Optional[str]:
        number, source = self.chosen[name]
        if source.constant in self.raw.history.column_names:
            return source.constant
        self._miss(number, name, "history", source.constant, {k: None for k in self.raw.history.column_names})
        return None

    def _miss(self, number: int, name: str, where: str, key: str, have: dict[str, Any]) -> None:
        self.report.misses.append((number, name, where, key))
        self.report.keys.setdefault(where, available_keys(have))

    def pick(self, name: str, ours: Any, convention: Callable[[], Any]) -> Any:
        """The map's value if it sets the field, else the summary's (``ours``), else the convention's."""
        if self.given(name):
            return self.value(name)
        return ours if ours is not None else convention()


def run_data(raw: RawRun, run_map: Optional[RunMap] = None) -> RunData:
    """``raw`` as the runs-frame row, metrics and layer rows that ``load`` assembles; with a map,
    the row carries the map's report for ``run_map.check`` under ``_map``."""
    fields = _Fields(raw, run_map)
    config = raw.config
    ours = raw.summary() if raw.ours else {}
    ours = ours if ours.get("status") is not None else {}  # optbench's summary: the run finished
    batch, lr = ours.get("effective_batch_size"), ours.get("lr")
    if batch is None or lr is None:
        scaled = C.optbench_batch_and_lr(config)
        batch, lr = batch if batch is not None else scaled[0], lr if lr is not None else scaled[1]
    project = raw.identity.project if raw.source == "wandb" else None
    row: dict[str, Any] = {
        F.SOURCE: raw.source, F.PATH: raw.path, F.STUDY: raw.study, F.RUN_ID: raw.run_id,
        F.TASK: fields.pick("task", ours.get("task"), lambda: C.config_value(config, "task", "text") or project),
        F.SIZE: config.get("size"),
        F.OPTIMIZER: fields.pick("optimizer", ours.get("optimizer"),
                                 lambda: C.config_value(config, "optimizer", "text")),
        F.BATCH_SIZE: fields.pick("batch_size", batch, lambda: C.config_value(config, "batch_size", "integer")),
        F.LR: fields.pick("lr", lr, lambda: C.config_value(config, "lr", "number")),
        F.WEIGHT_DECAY: C.config_value(config, "weight_decay", "number"),
        F.SEED: fields.pick("seed", ours.get("seed"), lambda: C.config_value(config, "seed", "integer")),
        F.STATUS: ours.get("status", raw.status), F.ERROR: ours.get("error"),
        F.METRIC: ours.get("metric"), F.HIGHER_IS_BETTER: ours.get("higher_is_better"), F.TARGET: ours.get("target"),
        F.BEST: (ours.get("best") or {}).get(ours.get("metric")), F.FINAL: (ours.get("final") or {}).get(ours.get("metric")),
        F.STEPS_TO_TARGET: ours.get("steps_to_target"), F.GLOBAL_STEP: ours.get("global_step"),
        F.MAX_STEPS: fields.pick("max_steps", None, lambda: C.config_value(config, "max_steps", "integer")),
        F.WALL_TIME_S: ours.get("wall_time_s"), F.STEP_TIME_S: ours.get("train_step_time_s"),
        F.THROUGHPUT: ours.get("throughput_samples_per_s"), F.PEAK_MEMORY: ours.get("peak_memory_bytes"),
        F.STATE_BYTES: ours.get("optimizer_state_bytes"), F.NUM_PARAMETERS: ours.get("num_parameters"),
        F.GRAD_NOISE_SCALE: ours.get("grad_noise_scale"),
        **_config_columns(config),
    }
    step_key = _step_key(raw, fields)
    wall_key = fields.history_key("wall_time") if fields.given("wall_time") else next(
        (k for k in C.WALL_TIME_KEYS if k in raw.history.column_names), None)
    metrics = metrics_long(raw.history, raw.study, raw.run_id, raw.path, step=step_key,
                           epoch=C.EPOCH_KEY if C.EPOCH_KEY in raw.history.column_names else None,
                           wall_time=wall_key, skip=C.CONTEXT_KEYS, last_per_step=raw.last_per_step)
    if any(fields.given(name) for name in ("metric.key", "metric.higher_is_better", "metric.target")):
        row.update(_mapped_metric(fields, ours, metrics))
    lacking = [name for name in _CELL if _absent(row[name])] + (["step"] if step_key is None and len(raw.history) else [])
    row[F.LEFT_OUT] = " ".join(lacking) or None
    if run_map is not None:
        row["_map"] = fields.report.to_json()
    steps = None if step_key is None else raw.history[step_key].to_numpy(zero_copy_only=False)
    return RunData(row, metrics, raw.layers(steps), raw.skipped)


def _absent(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _config_columns(config: dict[str, Any]) -> dict[str, Any]:
    """``{"optimizer": {"lr": 0.1}}`` → ``{"config.optimizer.lr": 0.1}``; lists as JSON text."""
    return {key: json.dumps(value) if isinstance(value, (list, tuple)) else value
            for key, value in flatten(config, F.CONFIG_PREFIX).items()}


def _step_key(raw: RawRun, fields: _Fields) -> Optional[str]:
    """The history key counting optimizer steps: the map's, else the first of the conventions'
    step keys logged, else wandb's ``_step`` where the run logged with explicit steps."""
    if fields.given("step"):
        return fields.history_key("step")
    columns = raw.history.column_names
    key = next((k for k in C.STEP_KEYS if k in columns), None)
    if key is None and C.WANDB_STEP in columns:
        steps = raw.history[C.WANDB_STEP].drop_null().to_numpy()
        key = C.WANDB_STEP if C.explicit_steps(steps) else None
    return key


def _mapped_metric(fields: _Fields, ours: dict[str, Any], metrics: pa.Table) -> dict[str, Any]:
    """Metric, direction, target and what the history says of them (best, final,
    steps-to-target, steps and time taken) for a run whose map sets any of them; the map's
    settings over the summary's (for the summary's own metric) over the conventions'."""
    if fields.given("metric.key"):
        metric = fields.history_key("metric.key")
    else:
        metric = ours.get("metric") or metric_of(set(pc.unique(pc.cast(metrics["metric"], pa.string())).to_pylist()))
    same = metric is not None and metric == ours.get("metric")
    higher = fields.pick("metric.higher_is_better", ours.get("higher_is_better") if same else None,
                         lambda: C.higher_is_better(metric) if metric else None)
    target = fields.pick("metric.target", ours.get("target") if same else None, lambda: None)
    out: dict[str, Any] = {F.METRIC: metric, F.HIGHER_IS_BETTER: higher, F.TARGET: target,
                           F.BEST: None, F.FINAL: None, F.STEPS_TO_TARGET: None}
    if metric is None:
        return out
    rows = metrics.filter(pc.equal(pc.cast(metrics["metric"], pa.string()), metric))
    out.update(curve_results(rows["step"].to_numpy(), rows["value"].to_numpy(zero_copy_only=False), higher, target))
    if ours.get("global_step") is None and len(metrics):
        out[F.GLOBAL_STEP] = pc.max(metrics["step"]).as_py()
        out[F.WALL_TIME_S] = pc.max(metrics["wall_time"]).as_py()
    return out

