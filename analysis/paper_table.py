"""The paper-style comparison table (optimizer × task, best metric mean ± std over seeds, the best
per task in bold) and its renderings as Markdown and LaTeX (booktabs)."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from analysis import frames as F

__all__ = ["paper_table", "format_mean_std", "latex_escape", "paper_markdown", "paper_latex"]


def paper_table(cells: pd.DataFrame, metrics: dict[str, str], directions: dict[str, bool]) -> pd.DataFrame:
    """Long form, one row per task × optimizer (``cells``: ``cells.best_cells``): task, metric,
    higher_is_better, optimizer, mean, std, n_seeds, batch_size, lr, is_best (the best mean of
    its task, in the metric's direction). ``metrics``: task → metric name."""
    table = cells.rename(columns={"best_mean": "mean", "best_std": "std"})
    table = table[[F.TASK, F.OPTIMIZER, "mean", "std", "n_seeds", F.BATCH_SIZE, F.LR]].copy()
    table.insert(1, F.METRIC, table[F.TASK].map(metrics))
    table.insert(2, F.HIGHER_IS_BETTER, table[F.TASK].map(directions))
    signed = np.where(table[F.HIGHER_IS_BETTER].astype(bool), table["mean"], -table["mean"])
    table["is_best"] = signed == pd.Series(signed, index=table.index).groupby(table[F.TASK]).transform("max")
    return table.reset_index(drop=True)


def format_mean_std(mean: float, std: float) -> str:
    """``mean ± std`` with two significant digits of std and the mean to the same decimal place;
    the mean alone (4 significant digits) where std is unknown (one seed)."""
    if not math.isfinite(mean):
        return "–"
    if not math.isfinite(std):
        return f"{mean:.4g}"
    decimals = 4 if std == 0 else min(6, max(0, 1 - math.floor(math.log10(std))))
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def _wide(table: pd.DataFrame) -> tuple[list[str], list[str], dict[tuple[str, str], tuple[str, bool]]]:
    tasks = sorted(table[F.TASK].unique())
    optimizers = sorted(table[F.OPTIMIZER].unique())
    cells = {(row[F.OPTIMIZER], row[F.TASK]): (format_mean_std(row["mean"], row["std"]), bool(row["is_best"]))
             for _, row in table.iterrows()}
    return tasks, optimizers, cells


def _header(table: pd.DataFrame, task: str) -> tuple[str, str, bool]:
    row = table[table[F.TASK] == task].iloc[0]
    return task, row[F.METRIC], bool(row[F.HIGHER_IS_BETTER])


def paper_markdown(table: pd.DataFrame) -> str:
    """The paper table as a Markdown pipe table, the best per task in bold."""
    tasks, optimizers, cells = _wide(table)
    heads = [f"{t} ({m} {'↑' if up else '↓'})" for t, m, up in (_header(table, t) for t in tasks)]
    lines = ["| optimizer | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(tasks)]
    for optimizer in optimizers:
        row = []
        for task in tasks:
            text, best = cells.get((optimizer, task), ("", False))
            row.append(f"**{text}**" if best else text)
        lines.append(f"| {optimizer} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "–": "--"}


def latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped (and ± as math)."""
    return re.sub("|".join(re.escape(c) for c in _LATEX_SPECIAL), lambda m: _LATEX_SPECIAL[m.group()], text)


def paper_latex(table: pd.DataFrame, caption: str = "") -> str:
    """The paper table as a LaTeX ``table`` with a booktabs ``tabular``, best per task bold."""
    tasks, optimizers, cells = _wide(table)
    arrows = {True: r"$\uparrow$", False: r"$\downarrow$"}
    heads = [f"{latex_escape(t)} ({latex_escape(m)} {arrows[up]})" for t, m, up in (_header(table, t) for t in tasks)]
    lines = [r"\begin{table}[t]", r"\centering"]
    if caption:
        lines.append(rf"\caption{{{latex_escape(caption)}}}")
    lines += [rf"\begin{{tabular}}{{l{'r' * len(tasks)}}}", r"\toprule", "Optimizer & " + " & ".join(heads) + r" \\",
              r"\midrule"]
    for optimizer in optimizers:
        row = []
        for task in tasks:
            text, best = cells.get((optimizer, task), ("", False))
            row.append(rf"\textbf{{{latex_escape(text)}}}" if best else latex_escape(text))
        lines.append(latex_escape(optimizer) + " & " + " & ".join(row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"
