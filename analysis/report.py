"""``optbench analyze``'s outputs: the tables (CSV, and the paper table as Markdown, LaTeX and
CSV), the figures (PNG and SVG) and ``index.html``, one self-contained page with the figures
embedded as base64 PNG.

Layout under the output directory (names are a contract)::

    index.html
    tables/  runs.csv scaling.csv stability.csv memory.csv paper.md paper.tex paper.csv
             targets.csv critical_batch.csv stable_lr.csv speed.csv budget.csv tuning.csv claims.csv
    figures/ <name>.png <name>.svg
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import jinja2
import pandas as pd

from analysis import figures as fig
from analysis import frames as F
from analysis.claims import claims_table, paper_claims
from analysis.compare import Comparison, compare
from analysis.findings import findings
from analysis.frames import Frames
from analysis.left_out import describe, lacking, split
from analysis.paper_table import entries, paper_footnote, paper_latex, paper_markdown
from analysis.roles import ROLE, read_roles
from analysis.significance import MIN_SEEDS, TEST
from experiments.store import COMPLETED, RUN_STATUSES

__all__ = ["write_report", "write_tables", "write_figures", "Figure", "RUNS_COLUMNS"]

RUNS_COLUMNS = [F.STUDY, F.RUN_ID, F.TASK, F.SIZE, F.OPTIMIZER, F.BATCH_SIZE, F.LR, F.WEIGHT_DECAY, F.SEED, F.STATUS,
                F.METRIC, F.TARGET, F.BEST, F.FINAL, F.STEPS_TO_TARGET, F.GLOBAL_STEP, F.MAX_STEPS, F.WALL_TIME_S,
                F.STEP_TIME_S, F.THROUGHPUT, F.PEAK_MEMORY, F.STATE_BYTES, F.NUM_PARAMETERS, F.GRAD_NOISE_SCALE,
                F.LEFT_OUT, F.ERROR, F.PATH]
_PROBLEMS = tuple(status for status in RUN_STATUSES if status != COMPLETED)  # listed, with their error line


@dataclass(frozen=True)
class Figure:
    """A figure written under ``figures/``: its name, caption and PNG path."""

    name: str
    caption: str
    png: Path


def write_tables(c: Comparison, out: Path, left_out: Optional[pd.DataFrame] = None) -> dict[str, pd.DataFrame]:
    """Write every table under ``out/tables``; return the CSV tables by file stem. ``runs.csv``
    lists the compared runs and then those ``left_out`` of the comparisons."""
    runs = c.runs[[*RUNS_COLUMNS, ROLE]].sort_values([F.TASK, F.OPTIMIZER, F.BATCH_SIZE, F.LR, F.SEED])
    if left_out is not None and len(left_out):
        runs = pd.concat([runs, left_out[RUNS_COLUMNS].sort_values([F.STUDY, F.RUN_ID])], ignore_index=True)
    tables = {
        "runs": runs,
        "scaling": c.scaling, "stability": c.stability, "memory": c.memory, "targets": c.targets,
        "critical_batch": c.critical_batch, "stable_lr": c.stable_lr, "paper": c.paper, "speed": _speed_table(c),
        "budget": c.budget, "tuning": c.tuning, "claims": claims_table(paper_claims(c)),
    }
    directory = out / "tables"
    directory.mkdir(parents=True, exist_ok=True)
    for stem, table in tables.items():
        table.to_csv(directory / f"{stem}.csv", index=False)
    if len(c.paper):
        (directory / "paper.md").write_text(paper_markdown(c.paper))
        (directory / "paper.tex").write_text(paper_latex(c.paper, caption=_paper_caption()))
    return tables


def _paper_caption() -> str:
    return ("Best validation metric per optimizer and task: mean ± std over the seeds that score each "
            "optimizer's best batch size and learning rate.")


def _speed_table(c: Comparison) -> pd.DataFrame:
    """Steps and time to target of each optimizer's fastest cell, with the orderings."""
    return pd.concat([rows.assign(cost=name) for name, rows in c.speed.items()], ignore_index=True)


def _plans(c: Comparison) -> list[tuple[str, str, str, Callable[[], object]]]:
    """(name, caption, why it would be skipped or "", builder) for every figure the report can hold."""
    colors = fig.optimizer_colors(list(c.runs[F.OPTIMIZER].dropna()))
    plans = []
    for task, curves in c.curves.groupby(F.TASK, sort=True):
        many_steps = curves.groupby(F.OPTIMIZER)[F.STEP].nunique().max() >= 2
        plans.append((f"convergence_{task}", f"{task}: validation metric of each optimizer's best configuration "
                      "against steps, samples and wall time (mean and 95% t-interval over seeds).",
                      "" if many_steps else f"convergence on {task}: fewer than 2 validation points per run",
                      lambda curves=curves, task=task: fig.convergence_figure(curves, colors, task)))
    plans.append(("targets", "Steps and time to target of each optimizer's fastest configuration over the seeds "
                  "that score it (mean and 95% t-interval; hatched: some runs never reached it and count at their "
                  "budget).",
                  "" if len(c.best_targets) else "steps to target: no finished run has a target (a map's metric.target sets one)",
                  lambda: fig.targets_figure(c.best_targets, colors)))
    has_memory = len(c.memory) and c.memory[[F.STATE_BYTES, F.PEAK_MEMORY]].notna().any().any()
    plans.append(("memory", "Optimizer state and peak memory (median over runs).",
                  "" if has_memory else "memory: no run recorded state or peak memory",
                  lambda: fig.memory_figure(c.memory, colors)))
    several_lrs = len(c.stability) and c.stability.groupby([F.TASK, F.OPTIMIZER])[F.LR].nunique().max() >= 2
    plans.append(("stability", "Divergence rate and best metric (mean ± std over runs) against the learning rate.",
                  "" if several_lrs else "stability: no optimizer was run at 2 or more learning rates on a task",
                  lambda: fig.stability_figure(c.stability, colors)))
    reached = c.scaling.dropna(subset=[F.STEPS_TO_TARGET])
    several_batches = len(reached) and reached.groupby([F.TASK, F.OPTIMIZER])[F.BATCH_SIZE].nunique().max() >= 2
    plans.append(("scaling", "Steps to target against effective batch size at the best learning rate per batch "
                  "size, with perfect scaling and the fit S_min·(1 + B_crit/B) (McCandlish et al.); below, "
                  "the best learning rate with the linear and square-root rules.",
                  "" if several_batches else "batch-size scaling: no optimizer reached the target at 2 or more batch sizes",
                  lambda: fig.scaling_figure(c.scaling, c.critical_batch, colors)))
    costs = c.costs["steps to target"]
    enough = costs[F.TASK].nunique() >= 2 and costs[F.OPTIMIZER].nunique() >= 2
    plans.append(("profiles", "Performance profiles (Dolan–Moré): the share of tasks on which each optimizer "
                  "reaches the target within τ times the best optimizer's steps (left) and time (right).",
                  "" if enough else "performance profiles: need 2 or more tasks and optimizers with targets",
                  lambda: fig.profile_figure(c.profiles, colors)))
    several_trials = len(c.tuning) and c.tuning["n_points"].max() >= 2
    plans.append(("tuning", "Tuning variance (AlgoPerf): the expected steps to target of the best of k trials "
                  "drawn from those run, over the best of all of them, and the chance that k trials find a "
                  "point reaching the target; averaged over batch sizes.",
                  "" if several_trials else "tuning variance: no search tried 2 or more points",
                  lambda: fig.tuning_figure(c.tuning, colors)))
    if c.layers.empty:
        plans.append(("layers", "", "layer statistics: no LARC/LARS run logged trust ratios", lambda: None))
    for (task, optimizer), rows in c.layers.groupby([F.TASK, F.OPTIMIZER], sort=True):
        plans.append((f"layers_{task}_{optimizer}", f"{optimizer} on {task} (run {rows[F.RUN_ID].iloc[0]}): trust "
                      "ratio and update/weight ratio of every layer over training.", "",
                      lambda rows=rows, title=f"{optimizer} on {task}": fig.layer_figure(rows, title)))
    return plans


# What each figure needs of a run (by the first word of the figure's name), so that a figure not
# drawn names the fields the runs left out lack, the cause, beside its consequence.
_NEEDS = {"convergence": ("task", "optimizer", "step", "metric", "metric.higher_is_better"),
          "targets": ("task", "optimizer", "step", "metric"), "memory": (),
          "stability": ("task", "optimizer", "lr", "metric"),
          "scaling": ("task", "optimizer", "batch_size", "lr", "step", "metric"),
          "profiles": ("task", "optimizer", "step", "metric"), "tuning": ("task", "optimizer", "lr", "step", "metric"),
          "layers": ()}


def _cause(name: str, left_out: Optional[pd.DataFrame]) -> str:
    """``"; of the runs left out, 6 have no learning rate known"`` for the fields a figure needs
    that runs left out lack; "" if none does."""
    if left_out is None or left_out.empty:
        return ""
    words = lacking(left_out, _NEEDS[name.split("_")[0]])
    return f"; of the runs left out, {words} known" if words else ""


def write_figures(c: Comparison, out: Path, left_out: Optional[pd.DataFrame] = None) -> tuple[list[Figure], list[str]]:
    """Write the figures the data supports under ``out/figures``; return them and, for each
    figure left out, why (and, where runs were ``left_out`` lacking what it needs, that cause)."""
    written, skipped = [], []
    for name, caption, why, build in _plans(c):
        if why:
            skipped.append(why + _cause(name, left_out))
            continue
        written.append(Figure(name, caption, fig.save(build(), out / "figures", name)))
    return written, skipped


def _html_table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.4g}", border=0, classes="table")


def _paper_html(paper: pd.DataFrame) -> str:
    texts = entries(paper)
    wide = paper.assign(cell=[("<b>{}</b>" if bold else "{}").format(html.escape(text)) for text, bold in
                              (texts[(o, t)] for o, t in zip(paper[F.OPTIMIZER], paper[F.TASK]))])
    wide = wide.pivot(index=F.OPTIMIZER, columns=F.TASK, values="cell").fillna("")
    heads = {t: f"{t} ({paper.loc[paper[F.TASK] == t, F.METRIC].iloc[0]} "
                f"{'↑' if paper.loc[paper[F.TASK] == t, F.HIGHER_IS_BETTER].iloc[0] else '↓'})" for t in wide.columns}
    wide = wide.rename(columns={t: html.escape(h) for t, h in heads.items()}).reset_index()
    return wide.to_html(index=False, escape=False, border=0, classes="table")


def _problems(runs: pd.DataFrame) -> pd.DataFrame:
    rows = runs[runs[F.STATUS].isin(_PROBLEMS)]
    rows = rows.assign(error=rows[F.ERROR].fillna("").map(lambda e: e.strip().splitlines()[-1] if e.strip() else ""))
    return rows[[F.STUDY, F.RUN_ID, F.TASK, F.OPTIMIZER, F.BATCH_SIZE, F.LR, F.SEED, F.STATUS, F.GLOBAL_STEP, F.ERROR]]


def _overview(c: Comparison, sources: list[str], left_out: pd.DataFrame) -> dict[str, object]:
    runs = c.runs

    def values(column: str) -> str:
        return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in sorted(runs[column].dropna().unique()))

    tasks = [f"{t} ({c.metrics.get(t, '?')}, {'higher' if c.directions.get(t, True) else 'lower'} is better"
             + (f", target {c.targets.loc[c.targets[F.TASK] == t, F.TARGET].iloc[0]:g}" if (c.targets[F.TASK] == t).any() else "")
             + ")" for t in sorted(runs[F.TASK].dropna().unique())]
    return {"sources": sources, "n_runs": len(runs) + len(left_out), "n_left_out": len(left_out),
            "statuses": pd.concat([runs[F.STATUS], left_out[F.STATUS]]).value_counts().to_dict(),
            "studies": values(F.STUDY), "tasks": tasks, "optimizers": values(F.OPTIMIZER),
            "batch_sizes": values(F.BATCH_SIZE), "lrs": values(F.LR), "seeds": values(F.SEED)}


def _left_out_table(left_out: pd.DataFrame) -> pd.DataFrame:
    rows = left_out.assign(why=left_out[F.LEFT_OUT].map(describe))
    return rows[[F.STUDY, F.RUN_ID, F.TASK, F.OPTIMIZER, F.BATCH_SIZE, F.LR, F.SEED, F.STATUS, "why", F.PATH]]


def render_html(c: Comparison, figures: list[Figure], skipped: list[str], sources: list[str],
                left_out: Optional[pd.DataFrame] = None) -> str:
    """The report page: overview, findings, paper claims, paper table, figures (embedded), tables,
    problems, and the runs ``left_out`` of the comparisons with why."""
    left_out = c.runs.iloc[0:0] if left_out is None else left_out
    embedded = [(f.name, f.caption, base64.b64encode(f.png.read_bytes()).decode("ascii")) for f in figures]
    tables = [(title, _html_table(frame)) for title, frame in (
        ("Each optimizer's best configuration per task and the runs that scored it (held_out: its confirmation "
         "seeds only; n_selecting: the runs that chose it)", c.cells),
        (f"Steps and time to target of each optimizer's fastest configuration, with the orderings ({TEST}; "
         "difference leader − optimizer)", _speed_table(c)),
        ("Tuning budget: the runs that tuned each optimizer, and its confirmation runs", c.budget),
        ("Steps and time to target per configuration (censored runs at their budget)", c.cell_targets),
        ("Batch-size scaling: best learning rate per batch size", c.scaling),
        ("Critical batch size (S = S_min·(1 + B_crit/B); ± one standard error, and 95% intervals) beside the "
         "measured gradient noise scale B_simple", c.critical_batch),
        ("Tuning variance: expected steps to target of the best of k trials", c.tuning),
        ("Stability per learning rate", c.stability),
        ("Largest stable learning rate", c.stable_lr),
        ("Memory (ratios to Adam's)", c.memory),
    ) if len(frame)]
    problems = _problems(c.runs)
    template = jinja2.Environment(autoescape=True).from_string(_TEMPLATE)
    return template.render(overview=_overview(c, sources, left_out), findings=findings(c), min_seeds=MIN_SEEDS,
                           test=TEST, claims=paper_claims(c),
                           paper=_paper_html(c.paper) if len(c.paper) else "",
                           footnote=paper_footnote(c.paper) if len(c.paper) else "", figures=embedded, skipped=skipped,
                           tables=tables, problems=_html_table(problems) if len(problems) else "",
                           left_out=_html_table(_left_out_table(left_out)) if len(left_out) else "",
                           runs=_html_table(c.runs[RUNS_COLUMNS[:-3]]))


def write_report(frames: Frames, out: Path | str, sources: list[str]) -> Path:
    """Compare the runs of ``frames`` that can be compared (``analysis.left_out``) and write
    every table, figure and ``index.html`` under ``out``; return the page's path."""
    out = Path(out)
    kept, left_out = split(frames)
    c = compare(kept, read_roles(kept.runs))
    write_tables(c, out, left_out)
    figures, skipped = write_figures(c, out, left_out)
    page = out / "index.html"
    page.write_text(render_html(c, figures, skipped, sources, left_out))
    return page


_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>optbench report</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
table.table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em; }
table.table th, table.table td { padding: 0.2em 0.6em; border-bottom: 1px solid #ddd; text-align: right; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; } figcaption { font-size: 0.9em; color: #555; }
details summary { cursor: pointer; }
</style></head><body>
<h1>optbench report</h1>
<h2>What was compared</h2>
<ul>
<li>Sources: {% for s in overview.sources %}<code>{{ s }}</code>{% if not loop.last %}, {% endif %}{% endfor %}</li>
<li>{{ overview.n_runs }} runs: {% for status, n in overview.statuses.items() %}{{ n }} {{ status }}{% if not loop.last %}, {% endif %}{% endfor %}{% if overview.n_left_out %}; {{ overview.n_left_out }} left out of the comparisons (<a href="#left-out">why</a>){% endif %}</li>
<li>Studies: {{ overview.studies }}</li>
<li>Tasks: {{ overview.tasks | join("; ") }}</li>
<li>Optimizers: {{ overview.optimizers }}</li>
<li>Effective batch sizes: {{ overview.batch_sizes }}; learning rates: {{ overview.lrs }}; seeds: {{ overview.seeds }}</li>
</ul>
<p>Only completed and diverged runs are results. Each optimizer is compared at its best configuration per task:
the batch size and learning rate with the best mean metric (or, for the target, the fewest mean steps) over the
runs that selected it, among those where no run diverged. Where a study confirmed the selected points with seeds,
only confirmed points are candidates and each is scored on its confirmation seeds alone (the runs that selected it
left out); otherwise the scores include the selecting runs, and the report says so. Every ordering it states rests
on {{ test }}: a difference whose interval contains 0 is a tie ("within noise"), and with fewer than {{ min_seeds }}
seeds per compared cell no ordering is stated.</p>
<h2>Findings</h2>
<ul>{% for line in findings %}<li>{{ line }}</li>{% else %}<li>No finished run has a metric to compare.</li>{% endfor %}</ul>
<h2>Paper claims</h2>
<p>Each claim of the NovoGrad and LARC papers and of Shallue et al. that these runs can test, with the verdict the
tests over seeds give (also <code>tables/claims.csv</code>; <code>optbench claims</code> checks them alone).</p>
<table class="table"><tr><th>claim</th><th>verdict</th><th>evidence</th><th>studies</th></tr>
{% for claim in claims %}<tr><td>{{ claim.statement }} <small>({{ claim.source }})</small></td><td><b>{{ claim.verdict }}</b></td>
<td style="text-align: left">{{ claim.evidence }}</td><td>{{ claim.studies }}</td></tr>{% endfor %}</table>
{% if paper %}<h2>Comparison table</h2>
<p>Best validation metric, mean ± std over the seeds that score each entry (also <code>tables/paper.md</code>, <code>.tex</code>, <code>.csv</code>).</p>
{{ paper | safe }}<p><small>{{ footnote }}</small></p>{% endif %}
<h2>Figures</h2>
{% for name, caption, data in figures %}<figure id="{{ name }}"><img alt="{{ name }}" src="data:image/png;base64,{{ data }}">
<figcaption>{{ caption }} (<code>figures/{{ name }}.svg</code>)</figcaption></figure>
{% else %}<p>No figure: the data supports none.</p>{% endfor %}
{% if skipped %}<p>Not drawn, for lack of data:</p><ul>{% for why in skipped %}<li>{{ why }}</li>{% endfor %}</ul>{% endif %}
<h2>Tables</h2>
{% for title, table in tables %}<h3>{{ title }}</h3>{{ table | safe }}{% endfor %}
{% if left_out %}<h2 id="left-out">Runs left out</h2>
<p>Each lacks a field a comparison needs that neither its config, summary and history nor the map gave it
(<code>optbench analyze --map MAP.yaml</code>; <code>optbench analyze --help</code> shows a map).</p>
{{ left_out | safe }}{% endif %}
<h2>Runs that diverged, failed or did not finish</h2>
{% if problems %}{{ problems | safe }}{% else %}<p>None: every run completed.</p>{% endif %}
<details><summary>All runs</summary>{{ runs | safe }}</details>
</body></html>
"""
