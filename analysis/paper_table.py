"""The paper-style comparison table (optimizer × task, best metric mean ± std over the seeds that
score each optimizer's best cell) and its renderings as Markdown and LaTeX (booktabs).

Bold marks the best mean of a task and every entry not significantly worse than it
(``analysis.orderings``: Welch's t-interval, 95%); a task whose best entry has fewer than
``MIN_SEEDS`` seeds has no bold entry, as no ordering can be tested. ``paper_footnote`` says so
under the table, with the seeds per cell and which runs scored them.
"""

from __future__ import annotations

import math
import re

import pandas as pd

from analysis import frames as F
from analysis.orderings import BEHIND, BEST, TOO_FEW, against_leader
from analysis.significance import MIN_SEEDS, TEST

__all__ = ["paper_table", "paper_footnote", "entries", "format_mean_std", "latex_escape", "paper_markdown",
           "paper_latex"]


def paper_table(cells: pd.DataFrame, metrics: dict[str, str], directions: dict[str, bool]) -> pd.DataFrame:
    """Long form, one row per task × optimizer (``cells``: ``cells.best_cells``): task, metric,
    higher_is_better, optimizer, mean, std, n_seeds, batch_size, lr, held_out (scored by
    confirmation seeds only), is_best (the best mean of its task, in the metric's direction),
    the difference best − entry with its 95% interval (``estimate``, ``ci_low``, ``ci_high``),
    ``claim`` (``analysis.orderings``) and ``bold``. ``metrics``: task → metric name."""
    table = cells.rename(columns={"best_mean": "mean", "best_std": "std"})
    held = table["held_out"] if "held_out" in table else False
    table = table[[F.TASK, F.OPTIMIZER, "mean", "std", "n_seeds", F.BATCH_SIZE, F.LR]].assign(held_out=held)
    table.insert(1, F.METRIC, table[F.TASK].map(metrics))
    table.insert(2, F.HIGHER_IS_BETTER, table[F.TASK].map(directions))
    ranked = against_leader(table.rename(columns={"n_seeds": "n"}), directions).rename(columns={"n": "n_seeds"})
    ranked["is_best"] = ranked["claim"].eq(BEST)
    leader_seeds = ranked["n_seeds"].where(ranked["is_best"]).groupby(ranked[F.TASK]).transform("max")
    ranked["bold"] = ranked["claim"].ne(BEHIND) & (leader_seeds >= MIN_SEEDS)
    return ranked.drop(columns="leader").reset_index(drop=True)


def paper_footnote(table: pd.DataFrame) -> str:
    """What bold means, the test, the seeds per cell and which runs scored them; per task
    without bold, why; the entries bold only because they have too few seeds to be ranked."""
    seeds = "; ".join(f"{task} {_span(rows['n_seeds'])}" for task, rows in table.groupby(F.TASK, sort=True))
    parts = [f"Bold: the best mean per task and every entry not significantly worse than it ({TEST}); "
             f"seeds per cell: {seeds}."]
    held = table["held_out"].astype(bool)
    if held.all():
        parts.append("Each entry is scored on its confirmation seeds only (the runs that selected it left out).")
    elif not held.any():
        parts.append("Scores include the runs that selected each entry (no seeds phase confirmed it).")
    else:
        parts.append("Entries marked * include the runs that selected them (no seeds phase confirmed them); "
                     "the others are scored on their confirmation seeds only.")
    for task, rows in table.groupby(F.TASK, sort=True):
        best = rows[rows["is_best"]]
        if len(best) and not rows["bold"].any():
            parts.append(f"{task}: no entry in bold: the best has {int(best['n_seeds'].iloc[0])} seed(s); "
                         f"an ordering needs {MIN_SEEDS} per cell.")
        unranked = rows[rows["bold"] & rows["claim"].eq(TOO_FEW)]
        if len(unranked):
            parts.append(f"{task}: {', '.join(unranked[F.OPTIMIZER])} bold for want of {MIN_SEEDS} seeds to rank.")
    return " ".join(parts)


def _span(counts: pd.Series) -> str:
    low, high = int(counts.min()), int(counts.max())
    return str(low) if low == high else f"{low}–{high}"


def format_mean_std(mean: float, std: float) -> str:
    """``mean ± std`` with two significant digits of std and the mean to the same decimal place;
    the mean alone (4 significant digits) where std is unknown (one seed)."""
    if not math.isfinite(mean):
        return "–"
    if not math.isfinite(std):
        return f"{mean:.4g}"
    decimals = 4 if std == 0 else min(6, max(0, 1 - math.floor(math.log10(std))))
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def entries(table: pd.DataFrame) -> dict[tuple[str, str], tuple[str, bool]]:
    """(optimizer, task) → (the entry's text, whether it is bold): ``mean ± std``, with a * where
    the table mixes held-out entries with entries whose scores include their selecting runs."""
    mixed = table["held_out"].astype(bool).nunique() > 1
    return {(row[F.OPTIMIZER], row[F.TASK]): (format_mean_std(row["mean"], row["std"])
                                              + ("*" if mixed and not row["held_out"] else ""), bool(row["bold"]))
            for _, row in table.iterrows()}


def _wide(table: pd.DataFrame) -> tuple[list[str], list[str], dict[tuple[str, str], tuple[str, bool]]]:
    return sorted(table[F.TASK].unique()), sorted(table[F.OPTIMIZER].unique()), entries(table)


def _header(table: pd.DataFrame, task: str) -> tuple[str, str, bool]:
    row = table[table[F.TASK] == task].iloc[0]
    return task, row[F.METRIC], bool(row[F.HIGHER_IS_BETTER])


def paper_markdown(table: pd.DataFrame) -> str:
    """The paper table as a Markdown pipe table, bold as ``paper_table`` decides, the footnote
    under it."""
    tasks, optimizers, cells = _wide(table)
    heads = [f"{t} ({m} {'↑' if up else '↓'})" for t, m, up in (_header(table, t) for t in tasks)]
    lines = ["| optimizer | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(tasks)]
    for optimizer in optimizers:
        row = []
        for task in tasks:
            text, best = cells.get((optimizer, task), ("", False))
            row.append(f"**{text}**" if best else text)
        lines.append(f"| {optimizer} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n\n" + paper_footnote(table) + "\n"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "–": "--"}


def latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped (and ± as math)."""
    return re.sub("|".join(re.escape(c) for c in _LATEX_SPECIAL), lambda m: _LATEX_SPECIAL[m.group()], text)


def paper_latex(table: pd.DataFrame, caption: str = "") -> str:
    """The paper table as a LaTeX ``table`` with a booktabs ``tabular``, bold as ``paper_table``
    decides, the footnote under it."""
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
    lines += [r"\bottomrule", r"\end{tabular}", rf"\par\footnotesize {latex_escape(paper_footnote(table))}",
              r"\end{table}"]
    return "\n".join(lines) + "\n"
