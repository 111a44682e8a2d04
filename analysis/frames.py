"""The three tidy frames every analysis step works on, and their schema (a contract).

``load`` (``analysis/load.py``) turns run stores and wandb runs into ``Frames(runs, metrics,
layers)``; comparisons, tables and figures read only these columns.

**runs**: one row per run.

=============================  =====================================================================
column                         meaning
=============================  =====================================================================
source                         ``store`` or ``wandb``
path                           the run directory, the wandb run folder, or ``wandb:ENTITY/PROJECT/ID``
study, run_id                  the run store's names (wandb: the config's ``study``, else the group,
                               else the project; and, for a run optbench logged, its summary's
                               ``run_id``, else the run's name)
task, size, optimizer          from the map, else the summary, else the config (a wandb run without
                               a task: its project); ``analysis.conventions`` lists the names read
batch_size                     effective batch size (batch × accumulation × devices), int
lr                             the effective learning rate (after ``lr_scaling``)
weight_decay                   ``optimizer.weight_decay`` as configured; NaN = the optimizer's default
seed                           int
status                         completed | diverged | failed | interrupted | running | incomplete
                               (``experiments.store.RUN_STATUSES``; incomplete: no summary and no
                               live process: killed or not started)
error                          the failure's one line, else missing
metric, higher_is_better       the validation metric (``val/acc``, ``val/wer``, ``val/ppl``) and its
                               direction (nullable boolean: missing when nothing tells it)
target                         the steps-to-target threshold
best, final                    the metric's best and last value (NaN: none, or not finite)
steps_to_target                first step that met the target; NaN if none did
global_step, max_steps         steps taken and the budget, int
wall_time_s                    training seconds, validations included
train_step_time_s,             a training step's mean time (validations and warm-up left out) and
throughput_samples_per_s       the effective batch over it
peak_memory_bytes,
optimizer_state_bytes,
num_parameters,
grad_noise_scale               from the summary (NaN without one)
left_out                       the fields a comparison needs that nothing gave the run, as map field
                               names (``lr step``; task, optimizer, batch_size, lr, step, and for a
                               finished run metric and metric.higher_is_better): such a run is left
                               out of the comparisons; missing when none is lacking
config.<dotted.key>            every config key, flattened (lists as JSON text):
                               ``config.optimizer.options.momentum``, ``config.trainer.max_steps``
=============================  =====================================================================

Runs without a summary (running, killed, and runs optbench did not write) get metric, direction,
target, best, final, steps_to_target, global_step and wall_time_s from their metrics rows
(``analysis.unfinished``), unless a map names the metric (then at read, the same way).

**metrics**: long format, one row per logged value: study, run_id, step (int), epoch (float),
wall_time (training seconds), metric (``train/loss``, ``lr``, ``throughput``, ``val/acc``,
``val/acc_best``, ``gns/simple``, ...), value (float; a logged NaN stays NaN, a JSON null is no
value). Rows come per run, then per metric, in step order.

**layers**: study, run_id, step, layer, grad_norm, weight_norm, update_norm, update_ratio,
trust_ratio (NaN where the optimizer has none).

study, run_id, metric and layer are pandas categoricals in metrics and layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

__all__ = [
    "Frames", "RUN_COLUMNS", "METRIC_COLUMNS", "LAYER_COLUMNS", "LAYER_VALUES", "CONFIG_PREFIX",
    "SOURCE", "PATH", "STUDY", "RUN_ID", "TASK", "SIZE", "OPTIMIZER", "BATCH_SIZE", "LR", "WEIGHT_DECAY", "SEED",
    "STATUS", "ERROR", "METRIC", "HIGHER_IS_BETTER", "TARGET", "BEST", "FINAL", "STEPS_TO_TARGET", "GLOBAL_STEP",
    "MAX_STEPS", "WALL_TIME_S", "STEP_TIME_S", "THROUGHPUT", "PEAK_MEMORY", "STATE_BYTES", "NUM_PARAMETERS",
    "GRAD_NOISE_SCALE", "LEFT_OUT",
    "STEP", "EPOCH", "WALL_TIME", "VALUE", "LAYER",
]

SOURCE, PATH, STUDY, RUN_ID = "source", "path", "study", "run_id"
TASK, SIZE, OPTIMIZER, BATCH_SIZE, LR, WEIGHT_DECAY, SEED = (
    "task", "size", "optimizer", "batch_size", "lr", "weight_decay", "seed")
STATUS, ERROR = "status", "error"
METRIC, HIGHER_IS_BETTER, TARGET, BEST, FINAL, STEPS_TO_TARGET = (
    "metric", "higher_is_better", "target", "best", "final", "steps_to_target")
GLOBAL_STEP, MAX_STEPS, WALL_TIME_S, STEP_TIME_S = "global_step", "max_steps", "wall_time_s", "train_step_time_s"
THROUGHPUT, PEAK_MEMORY, STATE_BYTES, NUM_PARAMETERS, GRAD_NOISE_SCALE = (
    "throughput_samples_per_s", "peak_memory_bytes", "optimizer_state_bytes", "num_parameters", "grad_noise_scale")
LEFT_OUT = "left_out"
STEP, EPOCH, WALL_TIME, VALUE, LAYER = "step", "epoch", "wall_time", "value", "layer"
CONFIG_PREFIX = "config."

# The fixed columns of runs, in order (config.* columns follow), with their dtypes.
_RUN_DTYPES: dict[str, str] = {
    SOURCE: "str", PATH: "str", STUDY: "str", RUN_ID: "str", TASK: "str", SIZE: "str", OPTIMIZER: "str",
    BATCH_SIZE: "Int64", LR: "float64", WEIGHT_DECAY: "float64", SEED: "Int64", STATUS: "str", ERROR: "str",
    METRIC: "str", HIGHER_IS_BETTER: "boolean", TARGET: "float64", BEST: "float64", FINAL: "float64",
    STEPS_TO_TARGET: "float64", GLOBAL_STEP: "Int64", MAX_STEPS: "Int64", WALL_TIME_S: "float64",
    STEP_TIME_S: "float64", THROUGHPUT: "float64", PEAK_MEMORY: "float64", STATE_BYTES: "float64",
    NUM_PARAMETERS: "Int64", GRAD_NOISE_SCALE: "float64", LEFT_OUT: "str",
}
RUN_COLUMNS = tuple(_RUN_DTYPES)
METRIC_COLUMNS = (STUDY, RUN_ID, STEP, EPOCH, WALL_TIME, METRIC, VALUE)
LAYER_VALUES = ("grad_norm", "weight_norm", "update_norm", "update_ratio", "trust_ratio")
LAYER_COLUMNS = (STUDY, RUN_ID, STEP, LAYER, *LAYER_VALUES)


@dataclass(frozen=True)
class Frames:
    """What ``load`` returns: the runs, their logged metrics (long) and per-layer statistics."""

    runs: pd.DataFrame
    metrics: pd.DataFrame
    layers: pd.DataFrame


def typed_runs(records: list[dict]) -> pd.DataFrame:
    """The runs frame from one dict per run: the fixed columns in order and dtype, then the
    sorted ``config.*`` columns (numbers where every value is one, else text)."""
    frame = pd.DataFrame.from_records(records)
    for column in RUN_COLUMNS:
        if column not in frame:
            frame[column] = None
    config = sorted(c for c in frame.columns if c.startswith(CONFIG_PREFIX))
    frame = frame[[*RUN_COLUMNS, *config]].astype(_RUN_DTYPES)
    for column in config:
        frame[column] = _uniform(frame[column])
    return frame.reset_index(drop=True)


def _uniform(column: pd.Series) -> pd.Series:
    """One type per config column (parquet needs it): booleans, numbers (float if any is
    missing or fractional), else text."""
    values = column.dropna()
    if len(values) and values.map(lambda v: isinstance(v, bool)).all():
        return column.astype("boolean")
    if values.map(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)).all():
        whole = len(values) == len(column) and values.map(lambda v: isinstance(v, int)).all()
        return column.astype("int64" if whole else "float64")
    return column.map(lambda v: v if v is None or isinstance(v, str) else str(v)).astype("str")
