"""The report: tables, figures (only those the data supports), a self-contained index.html;
``analyze`` (the ``optbench analyze`` command) end to end on a hand-built store; analysis never
imports torch."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from analysis import frames as F
from analysis.analyze import analyze
from analysis.frames import Frames, typed_runs
from analysis.load import load
from analysis.report import write_report
from experiments.cli import main
from tests.analysis import synthetic
from tests.analysis.support import write_run

ROOT = Path(__file__).resolve().parents[2]


def _self_contained(page: str) -> None:
    """No file the page would need beside it: every src is a data: URI, no link or href to files."""
    assert all(src.startswith("data:") for src in re.findall(r'\bsrc="([^"]*)"', page))
    assert not re.search(r'\bhref="(?!#)', page) and "<link" not in page and "url(" not in page


@pytest.mark.slow
def test_analysis_never_imports_torch_or_training_code():
    code = ("import sys, analysis.load, analysis.compare, analysis.report, analysis.figures, analysis.analyze\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'pytorch_lightning', 'lightning',"
            " 'optimizers') or m in ('experiments.train', 'experiments.tasks', 'experiments.callbacks'))\n"
            "print(bad); sys.exit(bool(bad))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_a_small_study_gets_the_figures_it_supports_and_says_what_it_skipped(tmp_path):
    """One task, one batch size, one lr per optimizer: convergence, targets and memory only."""
    data = synthetic.frames(tasks=("vision",))
    keep = (data.runs[F.BATCH_SIZE] == 64) & (data.runs[F.LR].isin([1e-3, 1e-2])) & (data.runs[F.STATUS] != "failed")
    runs = data.runs[keep].reset_index(drop=True)
    ids = set(runs[F.RUN_ID])
    page = write_report(Frames(runs, data.metrics[data.metrics[F.RUN_ID].isin(ids)],
                               data.layers[data.layers[F.RUN_ID].isin(ids)].iloc[0:0]), tmp_path, ["hand-built"])
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == [
        f"{n}.{e}" for n in ("convergence_vision", "memory", "targets") for e in ("png", "svg")]
    html = page.read_text()
    _self_contained(html)
    for why in ("stability: no optimizer was run at 2 or more learning rates",
                "batch-size scaling: no optimizer reached the target at 2 or more batch sizes",
                "performance profiles: need 2 or more tasks", "layer statistics: no LARC/LARS run"):
        assert why in html
    assert "None: every run completed." in html
    assert "On vision, the best mean val/acc is novograd&#39;s" in html  # two seeds each: no ordering claimed
    assert "no ordering is claimed: it has 2 seed(s), and an ordering needs 3 per cell" in html
    claims = pd.read_csv(tmp_path / "tables" / "claims.csv")
    assert "<h2>Paper claims</h2>" in html and len(claims) == 6
    assert claims.set_index("key").loc["novograd-state", "verdict"] == "supported"  # 0.5× adamw's state


@pytest.mark.slow
def test_optbench_analyze_end_to_end(tmp_path):
    """A rich hand-built store (2 tasks × 3 optimizers × batch sizes × lrs × 2 seeds, diverged and
    failed runs, LARC layer statistics) through the command's function."""
    store, out = tmp_path / "runs", tmp_path / "report"
    data = synthetic.frames()
    synthetic.write_store(store, data)
    console = Console(file=io.StringIO(), width=200)
    page = analyze([store], out, cache_dir=tmp_path / "cache", console=console)
    assert page == out / "index.html"
    assert console.file.getvalue() == f"report: {page} ({len(data.runs)} runs)\n"

    html = (out / "index.html").read_text()
    _self_contained(html)
    images = re.findall(r'<img [^>]*src="data:image/png;base64,[A-Za-z0-9+/=]{1000,}"', html)
    assert len(images) >= 4
    assert "RuntimeError: out of memory" in html and "Traceback" not in html  # the failure's last line
    for name in ("convergence_vision", "convergence_lm", "targets", "memory", "stability", "scaling", "profiles",
                 "layers_vision_larc_sgd"):
        assert (out / "figures" / f"{name}.png").is_file() and (out / "figures" / f"{name}.svg").is_file(), name

    runs = pd.read_csv(out / "tables" / "runs.csv")
    assert len(runs) == len(data.runs)
    assert {F.STUDY, F.RUN_ID, F.TASK, F.OPTIMIZER, F.BATCH_SIZE, F.LR, F.SEED, F.STATUS, F.BEST, F.STEPS_TO_TARGET,
            F.WALL_TIME_S, F.PEAK_MEMORY, F.STATE_BYTES} <= set(runs.columns)
    scaling = pd.read_csv(out / "tables" / "scaling.csv")
    assert list(scaling.columns[:7]) == [F.TASK, F.OPTIMIZER, F.BATCH_SIZE, "best_lr", F.STEPS_TO_TARGET, "censored",
                                         "n_runs"]
    novograd = scaling[(scaling[F.TASK] == "vision") & (scaling[F.OPTIMIZER] == "novograd")]
    assert novograd["best_lr"].tolist() == [synthetic.BASE_LR["novograd"]] * 4  # the middle lr is the fastest
    assert novograd["n_runs"].tolist() == [6] * 4
    assert scaling.loc[scaling[F.OPTIMIZER] == "adamw", "n_diverged"].eq(2).all()
    stability = pd.read_csv(out / "tables" / "stability.csv")
    rates = stability[(stability[F.TASK] == "vision") & (stability[F.OPTIMIZER] == "adamw")]
    assert rates.set_index(F.LR)["divergence_rate"].to_dict() == {0.0005: 0.0, 0.001: 0.0, 0.002: 1.0}
    memory = pd.read_csv(out / "tables" / "memory.csv")
    assert memory.loc[memory[F.OPTIMIZER] == "novograd", "state_ratio"].eq(0.5).all()
    assert memory["reference"].eq("adamw").all()
    fits = pd.read_csv(out / "tables" / "critical_batch.csv")
    assert fits["b_crit"].between(80, 160).all()  # the law's 128, seen through validation every 50 steps
    paper = (out / "tables" / "paper.md").read_text()
    assert paper.count("**") == 0  # two seeds per cell: no ordering, so nothing in bold, and the footnote says why
    assert "vision: no entry in bold: the best has 2 seed(s); an ordering needs 3 per cell." in paper
    assert (out / "tables" / "paper.tex").read_text().count("{") > 0 and (out / "tables" / "paper.csv").is_file()


@pytest.mark.slow  # four reports drawn
def test_the_report_depends_on_neither_the_cache_nor_the_rows_it_skips(tmp_path):
    """``analyze`` loads only the rows the report reads, from the cache when it can: its tables
    and page, cold, cached and without a cache, equal those of the report of every row (a killed
    run, whose metric is found from its rows after the load, among them)."""
    store = tmp_path / "runs"
    synthetic.write_store(store, synthetic.frames())
    write_run(store, "sweep", "killed", val=[(10, 0.3), (20, 0.5)], losses=[(5, 2.0), (10, 1.5)])
    console = Console(file=io.StringIO())
    outs = [tmp_path / name for name in ("full", "no-cache", "cold", "cached")]
    write_report(load([store], cache_dir=None), outs[0], [str(store)])
    analyze([store], outs[1], cache=False, console=console)
    for out in outs[2:]:
        analyze([store], out, cache_dir=tmp_path / "cache", console=console)
    tables = sorted(p.name for p in (outs[0] / "tables").iterdir())
    assert "paper.md" in tables and "runs.csv" in tables
    for out in outs[1:]:
        assert sorted(p.name for p in (out / "tables").iterdir()) == tables
        for name in tables:
            assert (out / "tables" / name).read_text() == (outs[0] / "tables" / name).read_text(), (out, name)
        assert (out / "index.html").read_text() == (outs[0] / "index.html").read_text(), out


@pytest.mark.parametrize("name, message", [
    ("missing", "optbench: error: no such source: "),
    ("empty", "optbench: error: no runs in "),
])
@pytest.mark.slow
def test_optbench_analyze_refuses_a_source_without_runs(tmp_path, capsys, name, message):
    """Of several sources, the one that is missing or holds no runs is named, in one line: exit 2."""
    store, source = tmp_path / "runs", tmp_path / name
    synthetic.write_store(store, synthetic.frames(tasks=("lm",), seeds=1))
    if name == "empty":
        source.mkdir()
    code = main(["analyze", str(store), str(source), "--out", str(tmp_path / "out"), "--no-cache"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"{message}{source}") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("records", [
    [{F.STATUS: "failed", F.ERROR: "Traceback ...\nValueError: boom"}],
    [{F.STATUS: "running", F.BEST: 0.5}],
    [{F.TARGET: None, F.BEST: 0.5}],
    [{F.METRIC: None, F.HIGHER_IS_BETTER: None, F.TARGET: None}],
    [{F.STATUS: "diverged", F.RUN_ID: f"r{i}", F.LR: 0.1 * (i + 1)} for i in range(3)],
], ids=["only-failed", "only-running", "no-target", "no-metric", "all-diverged"])
@pytest.mark.slow
def test_sparse_data_gives_a_report_not_a_crash(tmp_path, records):
    runs = typed_runs([synthetic.run_record(**r) for r in records])
    page = write_report(Frames(runs, synthetic.metrics_frame([("s", "r", 10, 1.0, "val/acc", 0.5)]),
                               synthetic.layers_frame([])), tmp_path, ["hand-built"])
    html = page.read_text()
    _self_contained(html)
    assert "Not drawn, for lack of data" in html
    assert ("ValueError: boom" in html) == (records[0].get(F.STATUS) == "failed")
    assert pd.read_csv(tmp_path / "tables" / "runs.csv")[F.STATUS].tolist() == [r.get(F.STATUS, "completed") for r in records]


@pytest.mark.slow  # two figures drawn
def test_a_figure_not_drawn_names_what_the_runs_left_out_lack(tmp_path):
    """The runs left out lack a learning rate (as when the config names it otherwise): the
    stability and scaling lines name that cause beside the consequence, counted per field the
    figure needs; a line whose figure needs nothing they lack (memory) says only the consequence;
    the runs left out are listed with why, and counted in the overview and in runs.csv."""
    kept = [synthetic.run_record(**{F.RUN_ID: "kept", F.BEST: 0.8, F.FINAL: 0.8})]
    left = [synthetic.run_record(**{F.RUN_ID: f"l{i}", F.OPTIMIZER: optimizer, F.LR: None, F.LEFT_OUT: "lr"})
            for i, optimizer in enumerate(("sgd", "sgd", "adamw"))]
    left.append(synthetic.run_record(**{F.RUN_ID: "l3", F.OPTIMIZER: None, F.BATCH_SIZE: None,
                                        F.LEFT_OUT: "optimizer batch_size"}))
    metrics = synthetic.metrics_frame([("s", "kept", step, step / 10, "val/acc", 0.5 + step / 1000)
                                       for step in (100, 200, 300)])
    page = write_report(Frames(typed_runs(kept + left), metrics, synthetic.layers_frame([])), tmp_path, ["hand-built"])
    html = page.read_text()
    skipped = re.findall(r"<li>([^<]*)</li>", html.split("Not drawn, for lack of data:")[1].split("</ul>")[0])
    assert "stability: no optimizer was run at 2 or more learning rates on a task; of the runs left out, 1 has no " \
           "optimizer, 3 have no learning rate known" in skipped
    assert "batch-size scaling: no optimizer reached the target at 2 or more batch sizes; of the runs left out, 1 " \
           "has no optimizer, 1 has no batch size, 3 have no learning rate known" in skipped
    assert "memory: no run recorded state or peak memory" in skipped
    assert "5 runs: 5 completed; 4 left out of the comparisons" in html
    assert html.count("no learning rate known (map lr:)") == 3
    assert "no optimizer known (map optimizer:); no batch size known (map batch_size:)" in html
    listed = pd.read_csv(tmp_path / "tables" / "runs.csv")
    assert listed[F.RUN_ID].tolist() == ["kept", "l0", "l1", "l2", "l3"]
    assert listed[F.LEFT_OUT].fillna("").tolist() == ["", "lr", "lr", "lr", "optimizer batch_size"]


def test_a_long_curve_is_drawn_through_a_few_hundred_points_first_and_last_kept():
    """A convergence line of 5000 steps is drawn through at most 400 of them, evenly spaced,
    its first and last among them; a short line keeps every point."""
    import matplotlib.pyplot as plt

    from analysis import figures as fig

    steps = list(range(10, 50_001, 10))
    curves = pd.DataFrame({F.OPTIMIZER: ["sgd"] * len(steps) + ["adamw"] * 3, F.STEP: steps + [1, 2, 3],
                           F.METRIC: "val/acc", "mean": 0.5, "ci_low": 0.4, "ci_high": 0.6})
    curves["samples"], curves[F.WALL_TIME] = curves[F.STEP] * 64, curves[F.STEP] / 10
    figure = fig.convergence_figure(curves, {"sgd": "C0", "adamw": "C1"}, "vision")
    adamw, sgd = figure.axes[0].lines[:2]
    assert list(adamw.get_xdata()) == [1, 2, 3]
    drawn = list(sgd.get_xdata())
    assert len(drawn) == 400 and (drawn[0], drawn[-1]) == (10, 50_000) and drawn == sorted(drawn)
    assert max(b - a for a, b in zip(drawn, drawn[1:])) <= 2 * 50_000 / 400
    plt.close(figure)
