"""Loading run stores into the frames: known values, unfinished runs, corrupt files, the cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import yaml

from analysis import frames as F
from analysis.load import load
from analysis.sources.run_data import SkippedFileWarning
from analysis.unfinished import infer_direction
from experiments.store import RunLock
from tests.analysis.support import corrupt, summary_for, write_run

VAL = [(10, 0.3), (20, 0.65), (30, 0.5), (40, 0.7)]
LOSS = [(5, 2.0), (10, 1.5), (20, float("nan"))]


@pytest.fixture
def store(tmp_path):
    """A completed run, a killed one (no summary, no lock) and one with layer statistics."""
    root = tmp_path / "runs"
    write_run(root, "s", "done", val=VAL, losses=LOSS, summary=summary_for("done", 0.7, 0.7, 20))
    write_run(root, "s", "killed", lr=0.1, val=VAL[:3], losses=LOSS[:2])
    write_run(root, "s", "layered", val=VAL, summary=summary_for("layered", 0.7, 0.7, 20),
              layers=[{"step": 1, "layer": "w", "grad_norm": 1.0, "weight_norm": 2.0, "update_norm": 0.1,
                       "update_ratio": 0.05, "trust_ratio": float("nan")},
                      {"step": 1, "layer": "b", "grad_norm": 0.5, "weight_norm": 0.0, "update_norm": 0.0,
                       "update_ratio": None}])
    return root


def test_runs_frame_columns_and_known_values(store, tmp_path):
    """Summaries map onto the schema; config keys are flattened under config.; a run without a
    summary gets metric, direction, target, best, final and steps-to-target from its rows."""
    frames = load([store], cache_dir=tmp_path / "cache")
    runs = frames.runs.set_index(F.RUN_ID)
    assert list(frames.runs.columns[:len(F.RUN_COLUMNS)]) == list(F.RUN_COLUMNS)
    done, killed = runs.loc["done"], runs.loc["killed"]
    assert (done.status, done.best, done.steps_to_target, done.batch_size) == ("completed", 0.7, 20, 64)
    assert done["config.optimizer.options.momentum"] == 0.9 and done["config.trainer.max_steps"] == 100
    assert np.isnan(done.weight_decay)
    assert killed.status == "incomplete"
    assert (killed.metric, killed.higher_is_better, killed.target) == ("val/acc", True, 0.6)
    assert (killed.best, killed.final, killed.steps_to_target) == (0.65, 0.5, 20)
    assert (killed.global_step, killed.wall_time_s, killed.batch_size, killed.lr) == (30, 3.05, 64, 0.1)


def test_a_config_key_optbench_does_not_know_harms_nothing(tmp_path):
    """Batch size and lr of a run without a summary come from their own keys, not through the
    schema: a key the schema lacks is a config column, one it has that the config lacks takes
    its default (num_nodes: 1)."""
    root = write_run(tmp_path / "runs", "s", "r", lr=0.1, val=VAL)
    config = yaml.safe_load((root / "config.yaml").read_text())
    del config["trainer"]["devices"]
    (root / "config.yaml").write_text(yaml.safe_dump({**config, "hidden": 64, "model": {"depth": 3}}))
    run = load([tmp_path / "runs"], cache_dir=None).runs.iloc[0]
    assert (run[F.BATCH_SIZE], run[F.LR], run["config.hidden"], run["config.model.depth"]) == (64, 0.1, 64, 3)
    assert pd.isna(run[F.LEFT_OUT])


def test_metrics_long_format_keeps_nan(store, tmp_path):
    metrics = load([store], cache_dir=None).metrics
    assert list(metrics.columns) == list(F.METRIC_COLUMNS)
    done = metrics[metrics.run_id == "done"]
    loss = done[done.metric == "train/loss"].sort_values("step")
    assert loss.step.tolist() == [5, 10, 20] and np.isnan(loss.value.iloc[-1])
    assert done[done.metric == "val/acc"].value.tolist() == [v for _, v in VAL]
    assert len(done) == 3 + 3 + 4 + 4  # loss, lr, val/acc, val/acc_best: one row per logged value


def test_layers_frame(store):
    layers = load([store], cache_dir=None).layers
    assert list(layers.columns) == list(F.LAYER_COLUMNS)
    assert layers.layer.astype(str).tolist() == ["w", "b"]
    assert np.isnan(layers.update_ratio.iloc[1]) and layers.trust_ratio.isna().all()


def test_a_live_run_is_running(store):
    """A run whose lock a live process holds is running (decided at load, never cached)."""
    lock = RunLock(store / "s" / "killed")
    lock.acquire()
    try:
        assert load([store], cache_dir=None).runs.set_index(F.RUN_ID).loc["killed", F.STATUS] == "running"
    finally:
        lock.release()
    assert load([store], cache_dir=None).runs.set_index(F.RUN_ID).loc["killed", F.STATUS] == "incomplete"


@pytest.mark.parametrize("name, damage", [
    ("metrics.jsonl", corrupt),
    ("summary.json", lambda p: p.write_text("{")),
    ("config.yaml", lambda p: p.write_bytes(b"\xff\xfe: [")),
    ("layers.jsonl", corrupt),
])
def test_a_corrupt_file_is_skipped_with_one_warning_naming_it(store, tmp_path, name, damage):
    path = store / "s" / "layered" / name
    damage(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frames = load([store], cache_dir=tmp_path / "cache")
    skipped = [w for w in caught if issubclass(w.category, SkippedFileWarning)]
    assert len(skipped) == 1 and str(path) in str(skipped[0].message)
    assert set(frames.runs.run_id) == {"done", "killed", "layered"}
    with pytest.warns(SkippedFileWarning, match="layered"):  # not cached: it warns again
        load([store], cache_dir=tmp_path / "cache")


def test_a_last_line_cut_short_is_no_error(store):
    path = store / "s" / "killed" / "metrics.jsonl"
    with open(path, "a") as handle:
        handle.write('{"step": 50, "train/lo')
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics = load([store], cache_dir=None).metrics
    assert metrics[metrics.run_id == "killed"].step.max() == 30


def test_cache_hit_until_a_file_changes(store, tmp_path):
    """A second load takes an unchanged run from the cache (proof: a changed file with its old
    size and mtime is not read again); touching the file makes it read again."""
    cache = tmp_path / "cache"
    first = load([store], cache_dir=cache)
    path = store / "s" / "done" / "metrics.jsonl"
    stat = path.stat()
    path.write_text(path.read_text().replace("0.65", "0.66"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    cached = load([store], cache_dir=cache)
    pd.testing.assert_frame_equal(cached.metrics, first.metrics)
    pd.testing.assert_frame_equal(cached.runs, first.runs)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    fresh = load([store], cache_dir=cache).metrics
    assert 0.66 in fresh.value.values and 0.65 not in fresh[fresh.run_id == "done"].value.values


def test_a_cached_load_of_the_report_rows_reads_no_other(store, tmp_path):
    """The cache keeps the rows the report reads apart: a cached ``report_rows`` load never opens
    the file of every row (proof: it is gone) and gives each run's own metric rows (every row of
    the killed run, whose metric only its rows tell); a load of every row then reads the runs
    again and gives what it gave."""
    cache = tmp_path / "cache"
    full = load([store], cache_dir=cache)
    (root,) = cache.iterdir()
    (root / "metrics.parquet").unlink()
    slim = load([store], cache_dir=cache, report_rows=True)
    pd.testing.assert_frame_equal(slim.runs, full.runs)
    own = (full.metrics[F.METRIC] == "val/acc") | (full.metrics[F.RUN_ID] == "killed")
    pd.testing.assert_frame_equal(slim.metrics, full.metrics[own].reset_index(drop=True), check_categorical=False)
    assert 0 < len(slim.metrics) < len(full.metrics)
    assert slim.layers.empty and len(full.layers) == 2  # no layer row has a trust ratio
    again = load([store], cache_dir=cache)
    pd.testing.assert_frame_equal(again.metrics, full.metrics)


def test_a_still_running_study_gains_rows(store, tmp_path):
    cache = tmp_path / "cache"
    load([store], cache_dir=cache)
    with open(store / "s" / "killed" / "metrics.jsonl", "a") as handle:
        handle.write(json.dumps({"step": 40, "epoch": 0, "wall_time": 4.0, "val/acc": 0.8, "val/acc_best": 0.8}) + "\n")
    runs = load([store], cache_dir=cache).runs.set_index(F.RUN_ID)
    assert (runs.loc["killed", F.BEST], runs.loc["killed", F.GLOBAL_STEP]) == (0.8, 40)


def test_a_missing_source_is_a_one_line_error(tmp_path):
    with pytest.raises(ValueError, match="no such source"):
        load([tmp_path / "nope"], cache_dir=None)


@pytest.mark.parametrize("values, best, expected", [
    ([0.1, 0.3, 0.2], [0.1, 0.3, 0.3], True),
    ([3.0, 2.0, 2.5], [3.0, 2.0, 2.0], False),
    ([0.5], [0.5], None),
    ([0.5, 0.5], [0.5, 0.5], None),
])
def test_infer_direction(values, best, expected):
    assert infer_direction(pd.Series(values), pd.Series(best)) is expected


@pytest.mark.slow
def test_analysis_imports_no_torch():
    """analysis/ reads runs without torch, Lightning or the training code."""
    code = ("import sys, analysis.load, analysis.frames, analysis.cache, analysis.unfinished, "
            "analysis.sources.wandb_files, analysis.sources.wandb_api; "
            "bad = [m for m in ('torch', 'pytorch_lightning', 'lightning', 'experiments.train') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))
