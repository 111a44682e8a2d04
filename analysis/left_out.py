"""Runs left out of the comparisons, and why: each lacks a field that a comparison needs and that
neither the run (its config, summary and history, read by ``analysis.conventions``) nor the map
gave it.

The runs frame's ``left_out`` column names those fields by their map names: the sources fill in
what they know when they read a run (task, optimizer, batch_size, lr, step), ``mark_metrics``
adds what the metrics rows decide (metric and its direction, for a finished run). This module
also says it in words, for the report and for the error of a load where no run is usable.
"""

from __future__ import annotations

import pandas as pd

from analysis import frames as F
from analysis.frames import Frames
from experiments.store import FINISHED

__all__ = ["mark_metrics", "split", "describe", "lacking", "none_usable_message", "NEEDED"]

NEEDED = ("task", "optimizer", "batch_size", "lr", "step", "metric", "metric.higher_is_better")
_WORDS = {
    "task": "no task known (map task:)",
    "optimizer": "no optimizer known (map optimizer:)",
    "batch_size": "no batch size known (map batch_size:)",
    "lr": "no learning rate known (map lr:)",
    "step": "no step key (map step: to the history key that counts optimizer steps, e.g. trainer/global_step; "
            "wandb's _step counts log calls unless the run passed step= to wandb.log)",
    "metric": "no validation metric known (map metric: {key: ...})",
    "metric.higher_is_better": "no direction known for its metric (map metric: {higher_is_better: ...})",
}
_NOUNS = {"task": "task", "optimizer": "optimizer", "batch_size": "batch size", "lr": "learning rate",
          "step": "step key", "metric": "validation metric", "metric.higher_is_better": "metric direction"}


def mark_metrics(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with ``metric`` (no metric) or ``metric.higher_is_better`` (a metric of unknown
    direction) added to the ``left_out`` of each finished run lacking it (not to a run without a
    step key: it has no metrics rows, and the step is the cause to name)."""
    stepless = runs[F.LEFT_OUT].fillna("").str.split().map(lambda fields: "step" in fields).astype(bool)
    finished = runs[F.STATUS].isin(FINISHED) & ~stepless
    lacking = {"metric": finished & runs[F.METRIC].isna(),
               "metric.higher_is_better": finished & runs[F.METRIC].notna() & runs[F.HIGHER_IS_BETTER].isna()}
    if not any(mask.any() for mask in lacking.values()):
        return runs
    runs = runs.copy()
    for name, mask in lacking.items():
        before = runs.loc[mask, F.LEFT_OUT]
        runs.loc[mask, F.LEFT_OUT] = before.fillna("").map(lambda text: f"{text} {name}".strip())
    return runs


def split(frames: Frames) -> tuple[Frames, pd.DataFrame]:
    """The frames of the runs that can be compared, and the runs left out."""
    out = frames.runs[F.LEFT_OUT].notna()
    return Frames(frames.runs[~out].reset_index(drop=True), frames.metrics, frames.layers), frames.runs[out]


def describe(left_out: str) -> str:
    """A ``left_out`` value in words, each field with the map field that would give it."""
    return "; ".join(_WORDS[name] for name in left_out.split())


def lacking(runs: pd.DataFrame, fields: tuple[str, ...] = NEEDED) -> str:
    """How many of ``runs`` lack each of ``fields``, in words: ``"6 have no learning rate, 2
    have no step key"`` ("" if none lacks any)."""
    tally = runs[F.LEFT_OUT].dropna().str.split().explode().value_counts()
    return ", ".join(f"{int(tally[name])} {'has' if tally[name] == 1 else 'have'} no {_NOUNS[name]}"
                     for name in fields if name in tally)


def none_usable_message(runs: pd.DataFrame) -> str:
    """The one line for a load whose every run is left out: how many lack which field, and the map."""
    return (f"none of the {len(runs)} runs can be compared: {lacking(runs)} that optbench can find; "
            f"say where each is with --map MAP.yaml (optbench analyze --help shows one)")
