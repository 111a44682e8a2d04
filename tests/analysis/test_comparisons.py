"""Every comparison on hand-built frames whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import frames as F
from analysis.cells import best_cells
from analysis.convergence import convergence_curves, run_targets, target_summary
from analysis.frames import typed_runs
from analysis.intervals import mean_ci
from analysis.layer_stats import layer_trajectories
from analysis.memory import memory_table
from analysis.profiles import performance_profile, performance_ratios
from analysis.scaling import critical_batch_table, fit_critical_batch, scaling_table, steps_model
from analysis.stability import largest_stable_lr, stability_table
from tests.analysis.synthetic import layers_frame, metrics_frame, run_record


def runs_of(*records: dict) -> pd.DataFrame:
    return typed_runs([run_record(**{F.RUN_ID: f"r{i}", **r}) for i, r in enumerate(records)])


def test_t_interval_matches_a_hand_computation():
    frame = pd.DataFrame({"g": ["a"] * 4 + ["b"], "v": [1.0, 2.0, 3.0, 4.0, 7.0]})
    out = mean_ci(frame, ["g"], "v").set_index("g")
    s = math.sqrt(sum((x - 2.5) ** 2 for x in (1, 2, 3, 4)) / 3)
    half = 3.182446305284263 * s / 2  # t_{0.975, 3}
    assert out.loc["a", "mean"] == 2.5 and out.loc["a", "n"] == 4
    assert out.loc["a", "ci_high"] - out.loc["a", "ci_low"] == pytest.approx(2 * half, rel=1e-9)
    assert math.isnan(out.loc["b", "ci_low"]) and out.loc["b", "mean"] == 7.0  # one value: no interval


def test_best_cell_prefers_cells_without_divergence_and_follows_the_direction():
    runs = runs_of(
        {F.LR: 0.1, F.BEST: 0.99, F.STATUS: "diverged"}, {F.LR: 0.1, F.BEST: 0.98},  # best mean, one diverged
        {F.LR: 0.01, F.BEST: 0.95}, {F.LR: 0.01, F.BEST: 0.93},
        {F.LR: 0.001, F.BEST: 0.90}, {F.LR: 0.001, F.BEST: 0.70, F.STATUS: "failed"},  # failed: not a result
        {F.TASK: "lm", F.METRIC: "val/ppl", F.HIGHER_IS_BETTER: False, F.LR: 1.0, F.BEST: 5.0},
        {F.TASK: "lm", F.METRIC: "val/ppl", F.HIGHER_IS_BETTER: False, F.LR: 2.0, F.BEST: 4.0},
    )
    cells = best_cells(runs).set_index(F.TASK)
    assert cells.loc["vision", F.LR] == 0.01 and cells.loc["vision", "best_mean"] == pytest.approx(0.94)
    assert cells.loc["vision", "n_seeds"] == 2 and cells.loc["vision", "n_diverged"] == 0
    assert cells.loc["lm", F.LR] == 2.0  # lower perplexity wins


def test_steps_and_time_to_target_with_censoring():
    runs = runs_of(
        # reaches 0.9 at step 300 (wall 3.0); its best comes later, at step 500 (wall 5.0)
        {F.RUN_ID: "hit", F.STEPS_TO_TARGET: 300, F.BEST: 0.97, F.WALL_TIME_S: 10.0},
        # never reaches it: censored at the budget, 1000 steps and its whole 10 s
        {F.RUN_ID: "miss", F.SEED: 1, F.BEST: 0.8, F.WALL_TIME_S: 10.0},
        # diverged at step 100 after 1 s: censored at 1000 steps and the 10 s the budget would take
        {F.RUN_ID: "boom", F.SEED: 2, F.STATUS: "diverged", F.GLOBAL_STEP: 100, F.WALL_TIME_S: 1.0},
        {F.RUN_ID: "live", F.SEED: 3, F.STATUS: "running"},  # not a result
    )
    metrics = metrics_frame([
        ("s", "hit", 100, 1.0, "val/acc", 0.5), ("s", "hit", 300, 3.0, "val/acc", 0.91),
        ("s", "hit", 400, 4.0, "val/acc", 0.85), ("s", "hit", 500, 5.0, "val/acc", 0.97),
        ("s", "hit", 200, 2.5, "train/loss", 0.95),  # another metric meeting the number: ignored
        ("s", "miss", 500, 5.0, "val/acc", 0.8), ("s", "boom", 100, 1.0, "val/acc", 0.2),
    ])
    targets = run_targets(runs, metrics).set_index(F.RUN_ID)
    assert sorted(targets.index) == ["boom", "hit", "miss"]
    assert targets.loc["hit", [F.STEPS_TO_TARGET, "time_to_target"]].tolist() == [300, 3.0]
    assert not targets.loc["hit", "censored"]
    assert targets.loc["miss", [F.STEPS_TO_TARGET, "time_to_target"]].tolist() == [1000, 10.0]
    assert targets.loc["boom", [F.STEPS_TO_TARGET, "time_to_target"]].tolist() == [1000, 10.0]
    assert targets.loc["miss", "censored"] and targets.loc["boom", "censored"]
    summary = target_summary(targets.reset_index()).iloc[0]
    assert (summary["n_runs"], summary["n_reached"], summary["n_censored"]) == (3, 1, 2)
    assert summary["steps_mean"] == pytest.approx((300 + 1000 + 1000) / 3)
    assert summary["time_mean"] == pytest.approx((3 + 10 + 10) / 3)


def test_target_for_lower_is_better_metrics():
    runs = runs_of({F.METRIC: "val/ppl", F.HIGHER_IS_BETTER: False, F.TARGET: 8.0, F.STEPS_TO_TARGET: 200})
    metrics = metrics_frame([("s", "r0", 100, 1.0, "val/ppl", 9.0), ("s", "r0", 200, 2.2, "val/ppl", 7.9)])
    assert run_targets(runs, metrics)["time_to_target"].tolist() == [2.2]


def test_best_lr_per_batch_size():
    runs = runs_of(*(
        {F.BATCH_SIZE: batch, F.LR: lr, F.SEED: seed, F.STEPS_TO_TARGET: steps,
         F.STATUS: "diverged" if steps is None and lr == 0.4 else "completed"}
        for batch, lr, seed, steps in [
            (32, 0.1, 0, 400), (32, 0.1, 1, 500),        # mean 450
            (32, 0.2, 0, 300), (32, 0.2, 1, 500),        # mean 400: the best at 32
            (32, 0.4, 0, None), (32, 0.4, 1, None),      # diverged: censored at 1000
            (64, 0.2, 0, 250), (64, 0.2, 1, None),       # mean (250 + 1000) / 2 = 625
            (64, 0.4, 0, 350), (64, 0.4, 1, 350),        # mean 350: the best at 64
            (128, 0.4, 0, None), (128, 0.8, 0, None),    # nothing reached it
        ]))
    table = scaling_table(runs, run_targets(runs, metrics_frame([]))).set_index(F.BATCH_SIZE)
    assert table.loc[32, ["best_lr", F.STEPS_TO_TARGET, "censored", "n_runs", "n_diverged"]].tolist() == [0.2, 400, 0, 6, 2]
    assert table.loc[64, ["best_lr", F.STEPS_TO_TARGET, "censored"]].tolist() == [0.4, 350, 0]
    assert math.isnan(table.loc[128, "best_lr"]) and math.isnan(table.loc[128, F.STEPS_TO_TARGET])


def test_divergence_rates_and_largest_stable_lr():
    statuses = {0.01: ["completed"] * 3, 0.1: ["completed", "completed", "diverged"], 0.3: ["diverged"] * 2,
                0.05: ["completed", "failed"]}
    runs = runs_of(*({F.LR: lr, F.SEED: i, F.STATUS: s, F.BEST: 0.9 if s == "completed" else 0.1}
                     for lr, ss in statuses.items() for i, s in enumerate(ss)),
                   {F.OPTIMIZER: "sgd", F.LR: 1.0, F.BEST: 0.5})
    table = stability_table(runs)
    adamw = table[table[F.OPTIMIZER] == "adamw"].set_index(F.LR)
    assert adamw["divergence_rate"].to_dict() == {0.01: 0.0, 0.05: 0.0, 0.1: pytest.approx(1 / 3), 0.3: 1.0}
    assert adamw.loc[0.05, "n_runs"] == 1  # the failed run is no result
    assert adamw.loc[0.1, "best_mean"] == pytest.approx((0.9 + 0.9 + 0.1) / 3)
    stable = largest_stable_lr(table).set_index(F.OPTIMIZER)
    assert stable.loc["adamw", ["largest_stable_lr", "smallest_diverging_lr", "bounded"]].tolist() == [0.05, 0.1, True]
    assert stable.loc["sgd", "largest_stable_lr"] == 1.0 and not stable.loc["sgd", "bounded"]


def test_memory_ratios_to_adam_or_adamw():
    runs = runs_of(
        {F.OPTIMIZER: "adam", F.STATE_BYTES: 800, F.PEAK_MEMORY: 2000},
        {F.OPTIMIZER: "adamw", F.STATE_BYTES: 800, F.PEAK_MEMORY: 2100},
        {F.OPTIMIZER: "novograd", F.STATE_BYTES: 400, F.PEAK_MEMORY: 1500},
        {F.TASK: "lm", F.OPTIMIZER: "adamw", F.STATE_BYTES: 1000, F.PEAK_MEMORY: 4000},
        {F.TASK: "lm", F.OPTIMIZER: "sgd", F.STATE_BYTES: 500, F.PEAK_MEMORY: 3000},
        {F.TASK: "asr", F.OPTIMIZER: "sgd", F.STATE_BYTES: 500, F.PEAK_MEMORY: 3000},
    )
    table = memory_table(runs).set_index([F.TASK, F.OPTIMIZER])
    assert table.loc[("vision", "novograd"), ["reference", "state_ratio", "peak_ratio"]].tolist() == ["adam", 0.5, 0.75]
    assert table.loc[("lm", "sgd"), ["reference", "state_ratio"]].tolist() == ["adamw", 0.5]
    assert table.loc[("asr", "sgd"), "reference"] == "" and math.isnan(table.loc[("asr", "sgd"), "state_ratio"])


def test_critical_batch_fit_recovers_known_parameters():
    batch = np.array([16, 32, 64, 128, 256, 512])
    fit = fit_critical_batch(batch, steps_model(batch, 200.0, 300.0))
    assert fit.s_min == pytest.approx(200.0, rel=1e-6) and fit.b_crit == pytest.approx(300.0, rel=1e-6)
    noisy = steps_model(batch, 200.0, 300.0) * np.array([1.04, 0.97, 1.02, 0.96, 1.03, 0.98])
    fit = fit_critical_batch(batch, noisy)
    assert 0 < fit.b_crit_se < 100 and abs(fit.b_crit - 300.0) < 3 * fit.b_crit_se
    assert abs(fit.s_min - 200.0) < 3 * fit.s_min_se
    with pytest.raises(ValueError, match="3 or more batch sizes"):
        fit_critical_batch(batch[:2], noisy[:2])


def test_critical_batch_table_with_the_measured_noise_scale():
    batch = [32, 64, 128, 256]
    scaling = pd.DataFrame({F.TASK: "vision", F.OPTIMIZER: "novograd", F.BATCH_SIZE: batch,
                            F.STEPS_TO_TARGET: steps_model(np.array(batch), 100.0, 64.0), "censored": 0, "n_scored": 3})
    runs = runs_of({F.OPTIMIZER: "novograd", F.GRAD_NOISE_SCALE: 50.0}, {F.OPTIMIZER: "novograd", F.GRAD_NOISE_SCALE: 70.0})
    row = critical_batch_table(runs, scaling).iloc[0]
    assert row["b_crit"] == pytest.approx(64.0, rel=1e-6) and row[F.GRAD_NOISE_SCALE] == 60.0
    assert critical_batch_table(runs, scaling.head(2)).empty  # two batch sizes: no fit


def test_performance_profile_values():
    costs = pd.DataFrame({F.TASK: ["a", "b"] * 3, F.OPTIMIZER: ["x", "x", "y", "y", "z", "z"],
                          "cost": [1.0, 2.0, 2.0, 1.0, 4.0, np.inf]})
    ratios = performance_ratios(costs).set_index([F.OPTIMIZER, F.TASK])["ratio"]
    assert ratios[("x", "b")] == 2.0 and ratios[("z", "a")] == 4.0 and np.isinf(ratios[("z", "b")])
    rho = performance_profile(costs).set_index([F.OPTIMIZER, "tau"])["rho"]
    assert sorted({t for _, t in rho.index}) == [1.0, 2.0, 4.0]
    assert [rho[("x", t)] for t in (1.0, 2.0, 4.0)] == [0.5, 1.0, 1.0]
    assert [rho[("z", t)] for t in (1.0, 2.0, 4.0)] == [0.0, 0.0, 0.5]  # never solves b


def test_convergence_curves_average_seeds_per_step():
    runs = runs_of({F.RUN_ID: "a", F.SEED: 0}, {F.RUN_ID: "b", F.SEED: 1}, {F.RUN_ID: "c", F.LR: 0.5})
    metrics = metrics_frame([("s", "a", 10, 1.0, "val/acc", 0.5), ("s", "b", 10, 3.0, "val/acc", 0.7),
                             ("s", "c", 10, 1.0, "val/acc", 0.1), ("s", "a", 10, 1.0, "train/loss", 9.0)])
    cells = best_cells(runs.assign(**{F.BEST: [0.5, 0.7, 0.1]}))
    curve = convergence_curves(runs, metrics, cells).iloc[0]
    assert (curve["mean"], curve["n"], curve[F.WALL_TIME], curve["samples"]) == (pytest.approx(0.6), 2, 2.0, 320.0)
    assert curve["ci_high"] - curve["mean"] == pytest.approx(12.706204736 * 0.1414213562 / math.sqrt(2), rel=1e-6)


def test_layer_trajectories_keep_one_layerwise_run_per_optimizer():
    runs = runs_of({F.RUN_ID: "l0", F.OPTIMIZER: "larc_sgd", F.BEST: 0.9}, {F.RUN_ID: "l1", F.OPTIMIZER: "larc_sgd",
                   F.SEED: 1, F.BEST: 0.9}, {F.RUN_ID: "a", F.BEST: 0.9})
    row = {"grad_norm": 1.0, "weight_norm": 1.0, "update_norm": 0.1, "update_ratio": 0.1}
    layers = layers_frame([{F.STUDY: "s", F.RUN_ID: r, F.STEP: 1, F.LAYER: "w", **row, "trust_ratio": t}
                           for r, t in (("l0", 0.5), ("l1", 0.6), ("a", np.nan))])
    out = layer_trajectories(runs, layers, best_cells(runs))
    assert out[F.RUN_ID].tolist() == ["l0"] and out["trust_ratio"].tolist() == [0.5]


def test_the_critical_batch_interval_is_taken_in_log_b_crit():
    """Three noisy batch sizes (1 degree of freedom): an interval wide enough to reach below 0 on
    the linear scale stays positive, b_crit its geometric middle, t·se(log B_crit) its half-width."""
    batch = [16, 32, 64]
    steps = steps_model(np.array(batch), 50.0, 40.0) * np.array([1.0, 1.25, 0.85])
    scaling = pd.DataFrame({F.TASK: "vision", F.OPTIMIZER: "sgd", F.BATCH_SIZE: batch, F.STEPS_TO_TARGET: steps,
                            "censored": 0, "n_scored": 3})
    row = critical_batch_table(runs_of({F.OPTIMIZER: "sgd"}), scaling).iloc[0]
    half = stats.t.ppf(0.975, 1) * row["b_crit_se"] / row["b_crit"]
    assert row["b_crit"] - stats.t.ppf(0.975, 1) * row["b_crit_se"] < 0 < row["b_crit_low"]
    assert row["b_crit_low"] == pytest.approx(row["b_crit"] * np.exp(-half), rel=1e-12)
    assert row["b_crit_high"] == pytest.approx(row["b_crit"] * np.exp(half), rel=1e-12)
