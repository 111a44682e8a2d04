"""The paper table: which cell is bold, number formatting, Markdown and LaTeX renderings."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from analysis import frames as F
from analysis.paper_table import format_mean_std, latex_escape, paper_footnote, paper_latex, paper_markdown, paper_table


def _paper() -> pd.DataFrame:
    cells = pd.DataFrame({
        F.TASK: ["vision", "vision", "lm_100%", "lm_100%"], F.OPTIMIZER: ["larc_sgd", "adam&w", "larc_sgd", "adam&w"],
        "best_mean": [0.95, 0.96, 5.0, 6.0], "best_std": [0.01, 0.002, 0.5, float("nan")], "n_seeds": [3, 3, 3, 1],
        F.BATCH_SIZE: [64] * 4, F.LR: [0.1] * 4, "n_diverged": [0] * 4,
    })
    return paper_table(cells, {"vision": "val/acc", "lm_100%": "val/p#p"}, {"vision": True, "lm_100%": False})


def test_best_per_task_in_its_direction():
    table = _paper().set_index([F.TASK, F.OPTIMIZER])
    assert table["is_best"].to_dict() == {("vision", "larc_sgd"): False, ("vision", "adam&w"): True,
                                          ("lm_100%", "larc_sgd"): True, ("lm_100%", "adam&w"): False}


@pytest.mark.parametrize("mean, std, text", [
    (0.9554, 0.0041, "0.9554 ± 0.0041"), (10.02, 0.3, "10.02 ± 0.30"), (1234.5, 56.0, "1234 ± 56"),
    (0.5, float("nan"), "0.5"), (float("nan"), 1.0, "–"), (0.5, 0.0, "0.5000 ± 0.0000"),
])
def test_format_mean_std(mean, std, text):
    assert format_mean_std(mean, std) == text


def test_markdown_bolds_every_entry_not_significantly_worse_and_says_why():
    """vision: 0.95 ± 0.01 against 0.96 ± 0.002, 3 seeds each, is within noise (Welch: both bold);
    lm: adam&w's one seed cannot be ranked against the best (bold, for want of seeds)."""
    text = paper_markdown(_paper())
    lines = text.splitlines()
    assert lines[0] == "| optimizer | lm_100% (val/p#p ↓) | vision (val/acc ↑) |"
    assert lines[2] == "| adam&w | **6** | **0.9600 ± 0.0020** |"
    assert lines[3] == "| larc_sgd | **5.00 ± 0.50** | **0.950 ± 0.010** |"
    assert lines[5] == paper_footnote(_paper())
    assert "Welch's t-interval of the difference of means, 95%" in lines[5]
    assert "seeds per cell: lm_100% 1–3; vision 3." in lines[5]
    assert "lm_100%: adam&w bold for want of 3 seeds to rank." in lines[5]


def _cells(means: list[float], stds: list[float], seeds: list[int], held_out: bool = True) -> pd.DataFrame:
    return pd.DataFrame({F.TASK: "vision", F.OPTIMIZER: ["a", "b", "c"][:len(means)], "best_mean": means,
                         "best_std": stds, "n_seeds": seeds, F.BATCH_SIZE: 64, F.LR: 0.1, "n_diverged": 0,
                         "held_out": held_out})


@pytest.mark.parametrize("means, stds, seeds, bold, claims", [
    ([0.96, 0.90, 0.955], [0.002, 0.003, 0.004], [3, 3, 3], [True, False, True], ["best", "behind", "tie"]),
    ([0.96, 0.90, 0.955], [0.002, 0.003, 0.004], [2, 3, 3], [False, False, False], ["best", "too few seeds", "too few seeds"]),
    ([0.96, 0.90], [0.002, 0.003], [5, 4], [True, False], ["best", "behind"]),
], ids=["tie-and-behind", "best-has-two-seeds", "unequal-seeds"])
def test_bold_follows_the_test_over_seeds(means, stds, seeds, bold, claims):
    table = paper_table(_cells(means, stds, seeds), {"vision": "val/acc"}, {"vision": True})
    assert table["bold"].tolist() == bold and table["claim"].tolist() == claims
    footnote = paper_footnote(table)
    assert ("vision: no entry in bold: the best has 2 seed(s); an ordering needs 3 per cell." in footnote) == (
        not any(bold))
    assert "scored on its confirmation seeds only" in footnote


def test_the_footnote_says_when_scores_include_the_selecting_runs():
    table = paper_table(_cells([0.96, 0.90], [0.002, 0.003], [3, 3], held_out=False), {"vision": "val/acc"},
                        {"vision": True})
    assert "Scores include the runs that selected each entry" in paper_footnote(table)
    mixed = paper_table(_cells([0.96, 0.90], [0.002, 0.003], [3, 3]).assign(held_out=[True, False]),
                        {"vision": "val/acc"}, {"vision": True})
    assert "| b | 0.9000 ± 0.0030* |" in paper_markdown(mixed) and "marked *" in paper_footnote(mixed)


@pytest.mark.parametrize("raw, escaped", [
    ("a_b", r"a\_b"), ("50%", r"50\%"), ("x&y", r"x\&y"), ("#1", r"\#1"), ("$5", r"\$5"), ("{}", r"\{\}"),
    ("a~b^c", r"a\textasciitilde{}b\textasciicircum{}c"), ("\\", r"\textbackslash{}"), ("1 ± 2", r"1 $\pm$ 2"),
])
def test_latex_escape(raw, escaped):
    assert latex_escape(raw) == escaped


def _balanced(text: str) -> bool:
    depth = 0
    for char in re.sub(r"\\[{}]", "", text):  # escaped braces are text
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def test_latex_is_booktabs_balanced_and_escaped():
    text = paper_latex(_paper(), caption="Best 100% of runs_x")
    assert _balanced(text)
    for special in ("_", "%", "#"):
        assert not re.search(rf"(?<!\\){re.escape(special)}", text), special
    rows = [line for line in text.splitlines() if line.endswith(r"\\")]
    assert all(len(re.findall(r"(?<!\\)&", row)) == 2 for row in rows)  # three columns: the & in adam&w escaped
    for command in (r"\toprule", r"\midrule", r"\bottomrule", r"\begin{tabular}{lrr}", r"\end{tabular}"):
        assert command in text
    assert r"\textbf{0.9600 $\pm$ 0.0020}" in text and r"adam\&w" in text and r"lm\_100\%" in text
    assert r"\caption{Best 100\% of runs\_x}" in text
    assert text.count(r"\begin{") == text.count(r"\end{")
