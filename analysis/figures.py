"""Every figure of the report, and all of their styling: one seaborn theme, one colour per
optimizer (the same in every figure), log axes where the quantity scales. Each function takes
frames the comparisons computed and returns a matplotlib ``Figure``; ``save`` writes it as PNG
and SVG. A line of more than ``_POINTS`` points (a long run's curve) is drawn through that many,
evenly spaced; the tables keep every point. Matplotlib runs on its Agg backend (no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from analysis import frames as F  # noqa: E402
from analysis.scaling import steps_model  # noqa: E402

__all__ = ["optimizer_colors", "save", "convergence_figure", "targets_figure", "memory_figure",
           "stability_figure", "scaling_figure", "profile_figure", "layer_figure", "tuning_figure"]

_THEME = {"style": "whitegrid", "context": "paper", "font_scale": 1.1}
_PANEL = (4.2, 3.2)  # inches per panel
_DPI = 110
_BAND_ALPHA = 0.2
_POINTS = 400  # per line, at most: a figure's width holds no more, and drawing more only costs time


def _thin(line: pd.DataFrame) -> pd.DataFrame:
    """At most ``_POINTS`` rows of a line's (ordered) rows, evenly spaced, first and last kept."""
    if len(line) <= _POINTS:
        return line
    return line.iloc[np.unique(np.linspace(0, len(line) - 1, _POINTS).round().astype(int))]


def optimizer_colors(optimizers: list[str]) -> dict[str, tuple]:
    """One colour per optimizer, by sorted name: seaborn's colour-blind palette, then tab20."""
    names = sorted(set(optimizers))
    palette = sns.color_palette("colorblind", 10) + sns.color_palette("tab20", 20)
    return {name: palette[i % len(palette)] for i, name in enumerate(names)}


def _figure(rows: int, cols: int) -> tuple[Figure, np.ndarray]:
    sns.set_theme(**_THEME)
    fig, axes = plt.subplots(rows, cols, figsize=(_PANEL[0] * cols, _PANEL[1] * rows), squeeze=False,
                             constrained_layout=True)
    return fig, axes


def _legend(fig: Figure, axes: np.ndarray) -> None:
    """One legend for the figure, from the first axes that has labelled artists."""
    for ax in axes.flat:
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            unique = dict(zip(labels, handles))
            fig.legend(unique.values(), unique.keys(), loc="outside right upper", frameon=False)
            return


def save(fig: Figure, directory: Path, name: str) -> Path:
    """Write ``name.png`` and ``name.svg`` under ``directory``; close the figure; return the PNG."""
    directory.mkdir(parents=True, exist_ok=True)
    png = directory / f"{name}.png"
    fig.savefig(png, dpi=_DPI)
    fig.set_layout_engine("none")  # the layout the PNG's drawing computed holds for the SVG: not again
    fig.savefig(directory / f"{name}.svg")
    plt.close(fig)
    return png


def convergence_figure(curves: pd.DataFrame, colors: dict, title: str) -> Figure:
    """One task's metric against steps, samples and wall time: mean over seeds with its 95%
    t-interval as a band, one line per optimizer (its best cell)."""
    fig, axes = _figure(1, 3)
    metric = curves[F.METRIC].iloc[0]
    for ax, (x, label) in zip(axes[0], ((F.STEP, "step"), ("samples", "samples"), (F.WALL_TIME, "wall time (s)"))):
        for optimizer, line in curves.groupby(F.OPTIMIZER, sort=True):
            line = _thin(line.sort_values(F.STEP))
            ax.plot(line[x], line["mean"], color=colors[optimizer], label=optimizer, marker=".")
            ax.fill_between(line[x], line["ci_low"], line["ci_high"], color=colors[optimizer], alpha=_BAND_ALPHA,
                            linewidth=0)
        ax.set(xlabel=label, ylabel=metric)
        # The axis follows the means: with two seeds a t-interval (t = 12.7) spans far beyond
        # any value the metric takes, and would flatten every curve.
        low, high = curves["mean"].min(), curves["mean"].max()
        pad = 0.1 * (high - low) or 0.1 * abs(high) or 1.0
        ax.set_ylim(low - pad, high + pad)
    fig.suptitle(title)
    _legend(fig, axes)
    return fig


def targets_figure(best_targets: pd.DataFrame, colors: dict) -> Figure:
    """Steps and time to target per task and optimizer (best cell each): mean with 95%
    t-interval; hatched bars hold censored runs (counted at their budget: a lower bound)."""
    tasks = sorted(best_targets[F.TASK].unique())
    fig, axes = _figure(2, len(tasks))
    for col, task in enumerate(tasks):
        rows = best_targets[best_targets[F.TASK] == task].sort_values(F.OPTIMIZER)
        for row_index, (prefix, label) in enumerate((("steps", "steps to target"), ("time", "time to target (s)"))):
            ax = axes[row_index, col]
            x = np.arange(len(rows))
            mean = rows[f"{prefix}_mean"].to_numpy(float)
            err = np.vstack([mean - rows[f"{prefix}_ci_low"], rows[f"{prefix}_ci_high"] - mean])
            bars = ax.bar(x, mean, color=[colors[o] for o in rows[F.OPTIMIZER]],
                          yerr=np.nan_to_num(err), capsize=3)
            for bar, censored in zip(bars, rows["n_censored"]):
                if censored:
                    bar.set_hatch("//")
            ax.set_xticks(x, rows[F.OPTIMIZER], rotation=30, ha="right")
            ax.set(ylabel=label, title=task if row_index == 0 else "")
    return fig


def memory_figure(memory: pd.DataFrame, colors: dict) -> Figure:
    """Optimizer state and peak memory per task and optimizer (median over runs, MiB), at each
    task's largest batch size that has the most optimizers."""
    tasks = sorted(memory[F.TASK].unique())
    fig, axes = _figure(2, len(tasks))
    for col, task in enumerate(tasks):
        rows = memory[memory[F.TASK] == task]
        counts = rows.groupby(F.BATCH_SIZE)[F.OPTIMIZER].nunique()
        batch = counts[counts == counts.max()].index.max()
        rows = rows[rows[F.BATCH_SIZE] == batch].sort_values(F.OPTIMIZER)
        for row_index, (column, label) in enumerate(((F.STATE_BYTES, "optimizer state (MiB)"),
                                                     (F.PEAK_MEMORY, "peak memory (MiB)"))):
            ax = axes[row_index, col]
            x = np.arange(len(rows))
            ax.bar(x, rows[column] / 2**20, color=[colors[o] for o in rows[F.OPTIMIZER]])
            ax.set_xticks(x, rows[F.OPTIMIZER], rotation=30, ha="right")
            ax.set(ylabel=label, title=f"{task} (batch {batch})" if row_index == 0 else "")
    return fig


def stability_figure(stability: pd.DataFrame, colors: dict) -> Figure:
    """Per task: divergence rate against learning rate (top) and the best metric against
    learning rate with its spread over runs (bottom, the sensitivity curve)."""
    tasks = sorted(stability[F.TASK].unique())
    fig, axes = _figure(2, len(tasks))
    for col, task in enumerate(tasks):
        rows = stability[stability[F.TASK] == task]
        for optimizer, line in rows.groupby(F.OPTIMIZER, sort=True):
            line = line.sort_values(F.LR)
            axes[0, col].plot(line[F.LR], line["divergence_rate"], color=colors[optimizer], marker="o", label=optimizer)
            axes[1, col].errorbar(line[F.LR], line["best_mean"], yerr=line["best_std"].fillna(0), color=colors[optimizer],
                                  marker="o", capsize=3, label=optimizer)
        axes[0, col].set(xscale="log", ylim=(-0.05, 1.05), ylabel="divergence rate", title=task)
        axes[1, col].set(xscale="log", xlabel="learning rate", ylabel="best metric")
    _legend(fig, axes)
    return fig


def scaling_figure(scaling: pd.DataFrame, fits: pd.DataFrame, colors: dict) -> Figure:
    """Per task: steps to target against batch size (log-log, best lr per batch size) with the
    perfect-scaling line S ∝ 1/B from the smallest batch and the fit S_min·(1 + B_crit/B);
    below, the best lr per batch size with the linear and square-root rules from the smallest."""
    reached = scaling.dropna(subset=[F.STEPS_TO_TARGET])
    tasks = sorted(t for t, rows in reached.groupby(F.TASK) if rows[F.BATCH_SIZE].nunique() >= 2)
    fig, axes = _figure(2, len(tasks))
    for col, task in enumerate(tasks):
        rows = reached[reached[F.TASK] == task]
        top, bottom = axes[0, col], axes[1, col]
        for optimizer, line in rows.groupby(F.OPTIMIZER, sort=True):
            line = line.sort_values(F.BATCH_SIZE)
            b = line[F.BATCH_SIZE].to_numpy(float)
            color = colors[optimizer]
            top.plot(b, line[F.STEPS_TO_TARGET], color=color, marker="o", label=optimizer)
            top.plot(b, line[F.STEPS_TO_TARGET].iloc[0] * b[0] / b, color=color, linestyle=":", linewidth=1)
            fit = fits[(fits[F.TASK] == task) & (fits[F.OPTIMIZER] == optimizer)]
            if len(fit):
                grid = np.geomspace(b[0], b[-1], 50)
                top.plot(grid, steps_model(grid, fit["s_min"].iloc[0], fit["b_crit"].iloc[0]), color=color,
                         linestyle="--", linewidth=1)
            bottom.plot(b, line["best_lr"], color=color, marker="o", label=optimizer)
            bottom.plot(b, line["best_lr"].iloc[0] * b / b[0], color=color, linestyle=":", linewidth=1)
            bottom.plot(b, line["best_lr"].iloc[0] * np.sqrt(b / b[0]), color=color, linestyle="--", linewidth=1)
        top.set(xscale="log", yscale="log", ylabel="steps to target", title=f"{task}: dotted perfect scaling, dashed fit")
        bottom.set(xscale="log", yscale="log", xlabel="effective batch size", ylabel="best learning rate",
                   title="dotted linear rule, dashed sqrt rule")
        for ax in (top, bottom):
            _batch_ticks(ax, sorted(rows[F.BATCH_SIZE].unique()))
    _legend(fig, axes)
    return fig


def _batch_ticks(ax: plt.Axes, batches: list[int]) -> None:
    """Tick a log x axis at the batch sizes, written as plain numbers."""
    ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(batches))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FixedFormatter([str(int(b)) for b in batches]))
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())


def profile_figure(profiles: dict[str, pd.DataFrame], colors: dict) -> Figure:
    """Performance profiles ρ(τ), one panel per cost (e.g. steps, time to target)."""
    fig, axes = _figure(1, len(profiles))
    for ax, (cost, profile) in zip(axes[0], profiles.items()):
        end = profile["tau"].max() * 1.2  # past the last step, so that a profile reaching 1 there shows it
        for optimizer, line in profile.groupby(F.OPTIMIZER, sort=True):
            ax.step([*line["tau"], end], [*line["rho"], line["rho"].iloc[-1]], where="post", color=colors[optimizer],
                    label=optimizer)
        ax.set(xscale="log" if end > 10 else "linear", ylim=(-0.02, 1.02), xlabel="τ (ratio to the best optimizer)",
               ylabel="share of tasks within τ", title=cost)
    _legend(fig, axes)
    return fig


def tuning_figure(tuning: pd.DataFrame, colors: dict) -> Figure:
    """Per task: the expected steps to target of the best of k trials, over that of all trials
    (top), and the chance that k trials find a point reaching the target (bottom), against k;
    one line per optimizer, averaged over its batch sizes."""
    tasks = sorted(tuning[F.TASK].unique())
    fig, axes = _figure(2, len(tasks))
    ratio = tuning["expected_steps"] / tuning.groupby([F.TASK, F.OPTIMIZER, F.BATCH_SIZE])["expected_steps"].transform("last")
    curves = tuning.assign(ratio=ratio).groupby([F.TASK, F.OPTIMIZER, "k"], sort=True)[["ratio", "p_reached"]].mean()
    for col, task in enumerate(tasks):
        for optimizer, line in curves.loc[task].groupby(level=0, sort=True):
            k = line.index.get_level_values("k")
            axes[0, col].plot(k, line["ratio"], color=colors[optimizer], marker="o", label=optimizer)
            axes[1, col].plot(k, line["p_reached"], color=colors[optimizer], marker="o", label=optimizer)
        axes[0, col].set(ylabel="E[steps, best of k] / best of all", title=task)
        axes[1, col].set(ylim=(-0.05, 1.05), xlabel="trials k", ylabel="P(some trial reaches the target)")
        for ax in axes[:, col]:
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    _legend(fig, axes)
    return fig


def layer_figure(trajectories: pd.DataFrame, title: str) -> Figure:
    """One run's trust ratio and update/weight ratio per layer over training (log scale), one
    line per layer coloured by its depth."""
    fig, axes = _figure(1, 2)
    layers = list(dict.fromkeys(trajectories[F.LAYER]))
    shades = sns.color_palette("viridis", len(layers))
    for layer, shade in zip(layers, shades):
        rows = _thin(trajectories[trajectories[F.LAYER] == layer].sort_values(F.STEP))
        for ax, column in zip(axes[0], ("trust_ratio", "update_ratio")):
            ax.plot(rows[F.STEP], rows[column], color=shade, linewidth=1, label=layer if len(layers) <= 8 else None)
    axes[0, 0].set(yscale="log", xlabel="step", ylabel="trust ratio")
    axes[0, 1].set(yscale="log", xlabel="step", ylabel="‖Δw‖ / ‖w‖")
    fig.suptitle(f"{title}  ({len(layers)} layers, shallow → deep: dark → light)")
    _legend(fig, axes)
    return fig
