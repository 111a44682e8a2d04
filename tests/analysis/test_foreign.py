"""Runs optbench did not write: real offline wandb runs from a Lightning script (``WandbLogger``,
``save_hyperparameters``) and from a bare ``wandb.init``/``wandb.log(step=)`` loop, both in
``tests/analysis/foreign/`` and neither importing optbench, analysed with and without a map and
checked against what the scripts logged; the map's errors; the map on the store and online."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from analysis import frames as F
from analysis.analyze import analyze
from analysis.conventions import explicit_steps, higher_is_better, validation_metrics
from analysis.load import load
from analysis.run_map import EXAMPLE, parse_map, read_map
from experiments.cli import main
from tests.analysis.support import summary_for, write_run

SCRIPTS = Path(__file__).parent / "foreign"
LOOP_TARGET, LIGHTNING_TARGET = 0.5, 0.9
MAP = f"""
- match: {{project: foreign-loop}}
  task: loop-task
  optimizer: {{config: opt}}
  lr: {{config: learning_rate}}
  batch_size: {{config: bs}}
  metric: {{key: accuracy/val, higher_is_better: true, target: {LOOP_TARGET}}}
- match: {{name: counted}}
  step: _step
- match: {{project: foreign-lightning}}
  task: digits
  max_steps: {{config: max_steps, default: 100}}
  step: trainer/global_step
  wall_time: _runtime
  metric: {{key: val_acc, higher_is_better: true, target: {LIGHTNING_TARGET}}}
- match: {{tag: rmsprop}}
  seed: 7
"""


def _write_runs(script: str, out: Path) -> dict:
    """Run ``script`` as a user would (a fresh process, wandb offline: the package's conftest
    sets it) and check that it never imported optbench; its truth file back."""
    code = (f"import runpy, sys; sys.argv = [{str(SCRIPTS / script)!r}, {str(out)!r}, {str(out / 'truth.json')!r}]; "
            f"runpy.run_path(sys.argv[0], run_name='__main__'); "
            f"ours = [m for m in sys.modules if m.split('.')[0] in ('analysis', 'experiments', 'optimizers')]; "
            f"sys.exit(f'imported optbench: {{ours}}' if ours else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=out, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / "truth.json").read_text())


@pytest.fixture(scope="module")
def loop(tmp_path_factory) -> tuple[Path, dict]:
    """Five bare-loop runs (their own hyper-parameter names; one logged without step=)."""
    out = tmp_path_factory.mktemp("loop")
    return out / "wandb", _write_runs("wandb_loop_runs.py", out)


@pytest.fixture(scope="module")
def lightning(tmp_path_factory) -> tuple[Path, dict]:
    """Four Lightning runs: sgd and adam at two learning rates each."""
    out = tmp_path_factory.mktemp("lightning")
    return out / "wandb", _write_runs("lightning_runs.py", out)


@pytest.fixture
def map_file(tmp_path) -> Path:
    path = tmp_path / "map.yaml"
    path.write_text(MAP)
    return path


def _curve_results(curve: list[list[float]], target: float | None) -> tuple[float, float, float]:
    """Best, final and steps-to-target of a logged curve, from the script's own numbers."""
    values = [v for _, v in curve]
    reached = [s for s, v in curve if target is not None and v >= target]
    return max(values), values[-1], reached[0] if reached else math.nan


def _check_metric(run: pd.Series, metrics: pd.DataFrame, key: str, curve: list, target: float | None) -> None:
    best, final, steps = _curve_results(curve, target)
    assert (run[F.METRIC], run[F.HIGHER_IS_BETTER]) == (key, True)
    assert (run[F.BEST], run[F.FINAL]) == (best, final)
    assert run[F.STEPS_TO_TARGET] == steps or (math.isnan(steps) and math.isnan(run[F.STEPS_TO_TARGET]))
    logged = metrics[(metrics[F.RUN_ID] == run.name) & (metrics[F.METRIC] == key)].sort_values(F.STEP)
    assert logged[[F.STEP, F.VALUE]].values.tolist() == [[s, v] for s, v in curve]


@pytest.mark.slow
def test_mapped_foreign_runs_read_as_the_scripts_logged_them(loop, lightning, map_file):
    """With the map, every run of both scripts is comparable, with the lr, batch size, seed,
    budget, best, final and steps-to-target its script logged, per run; blocks match by
    project, name and tag, a later block over an earlier one; a key optbench does not know
    (hidden) is a config column and changes nothing."""
    (loop_dir, loop_truth), (lightning_dir, lightning_truth) = loop, lightning
    frames = load([lightning_dir, loop_dir], cache_dir=None, run_map=read_map(map_file))
    runs = frames.runs.set_index(F.RUN_ID)
    assert len(runs) == 9 and runs[F.LEFT_OUT].isna().all() and set(runs[F.STATUS]) == {"completed"}
    for run_id, truth in lightning_truth.items():
        run = runs.loc[run_id]
        assert (run[F.TASK], run[F.OPTIMIZER], run[F.LR], run[F.BATCH_SIZE], run[F.SEED], run[F.MAX_STEPS]) == (
            "digits", truth["optimizer"], truth["lr"], truth["batch_size"], truth["seed"], truth["max_steps"])
        assert run[F.TARGET] == LIGHTNING_TARGET and run["config.hidden"] == 64
        assert run[F.WALL_TIME_S] > 0 and run[F.GLOBAL_STEP] == max(s for s, _ in truth["val_acc"])
        _check_metric(run, frames.metrics, "val_acc", truth["val_acc"], LIGHTNING_TARGET)
    for run_id, truth in loop_truth.items():
        run, config = runs.loc[truth["name"] or run_id], truth["config"]  # a named run's run_id is its name
        seed = 7 if config["opt"] == "rmsprop" else config["seed"]
        assert (run[F.TASK], run[F.OPTIMIZER], run[F.LR], run[F.BATCH_SIZE], run[F.SEED]) == (
            "loop-task", config["opt"], config["learning_rate"], config["bs"], seed)
        assert run[F.STUDY] == "sweep" and run["config.model.width"] == 16
        _check_metric(run, frames.metrics, "accuracy/val", truth["accuracy/val"], LOOP_TARGET)
    wall = frames.metrics[frames.metrics[F.RUN_ID].isin(list(lightning_truth))][F.WALL_TIME]
    assert wall.notna().all() and (wall > 0).all()  # wandb's _runtime


@pytest.mark.slow
def test_the_report_of_mapped_foreign_runs_has_the_paper_table_convergence_and_stability(loop, lightning, map_file,
                                                                                         tmp_path):
    out = tmp_path / "report"
    analyze([lightning[0], loop[0]], out, cache=False, run_map=map_file)
    paper = pd.read_csv(out / "tables" / "paper.csv")
    assert sorted(set(zip(paper[F.TASK], paper[F.OPTIMIZER]))) == [
        ("digits", "adam"), ("digits", "sgd"), ("loop-task", "momentum"), ("loop-task", "rmsprop")]
    for figure in ("convergence_digits", "convergence_loop-task", "stability", "targets"):
        assert (out / "figures" / f"{figure}.png").is_file(), figure
    assert len(pd.read_csv(out / "tables" / "runs.csv")) == 9
    assert "Runs left out" not in (out / "index.html").read_text()


@pytest.mark.slow
def test_without_a_map_the_conventions_read_lightning_runs_and_the_rest_is_left_out_with_why(loop, lightning,
                                                                                              tmp_path):
    """Lightning's flat hyper-parameter names, trainer/global_step and val_acc need no map (the
    task is the project; no target, so no steps-to-target). The loop's own names (opt, bs) are
    not known: those runs are left out and the report says why; the loop's explicit steps are
    its step, but the run that logged without step= has none."""
    (loop_dir, loop_truth), (lightning_dir, lightning_truth) = loop, lightning
    out = tmp_path / "report"
    analyze([lightning_dir, loop_dir], out, cache=False)
    frames = load([lightning_dir, loop_dir], cache_dir=None)
    runs = frames.runs.set_index(F.RUN_ID)
    for run_id, truth in lightning_truth.items():
        run = runs.loc[run_id]
        assert (run[F.TASK], run[F.OPTIMIZER], run[F.LR], run[F.BATCH_SIZE], run[F.SEED], run[F.MAX_STEPS]) == (
            "foreign-lightning", truth["optimizer"], truth["lr"], truth["batch_size"], truth["seed"], truth["max_steps"])
        assert pd.isna(run[F.LEFT_OUT]) and pd.isna(run[F.TARGET])
        _check_metric(run, frames.metrics, "val_acc", truth["val_acc"], None)
    for run_id, truth in loop_truth.items():
        run = runs.loc[truth["name"] or run_id]
        assert run[F.LEFT_OUT] == ("optimizer batch_size step" if truth["name"] else "optimizer batch_size")
        assert (run[F.LR], run[F.SEED]) == (truth["config"]["learning_rate"], truth["config"]["seed"])
        assert run[F.METRIC] == "accuracy/val" or truth["name"]  # no step, no metrics rows
    html = (out / "index.html").read_text()
    assert "9 runs: 9 completed; 5 left out of the comparisons" in html
    assert "no optimizer known (map optimizer:); no batch size known (map batch_size:)" in html
    assert "no step key (map step: to the history key that counts optimizer steps" in html
    assert (out / "figures" / "stability.png").is_file() and (out / "tables" / "paper.md").is_file()
    assert len(pd.read_csv(out / "tables" / "runs.csv")) == 9


@pytest.mark.slow
def test_runs_found_but_none_usable_is_one_line_naming_what_is_missing(loop, tmp_path, capsys):
    out = tmp_path / "report"
    code = main(["analyze", str(loop[0]), "--out", str(out), "--no-cache"])
    assert code == 2 and not out.exists()
    assert capsys.readouterr().err == (
        "optbench: error: none of the 5 runs can be compared: 5 have no optimizer, 5 have no batch size, 1 has no "
        "step key that optbench can find; say where each is with --map MAP.yaml (optbench analyze --help shows one)\n")


@pytest.mark.slow
@pytest.mark.parametrize("text, message", [
    ("- {learning_rate: {config: learning_rate}}",
     "block 1: unknown field 'learning_rate' (did you mean 'lr'?); fields: match, task, optimizer, lr, batch_size, "
     "seed, max_steps, step, wall_time, metric"),
    ("- {match: {project: foreign-lop}, task: t}",
     "block 1: match {project: foreign-lop} matches none of the 5 runs (did you mean 'foreign-loop'?)"),
    ("- {task: t}\n- {match: {group: sweeep, tag: loop}, task: t}",
     "block 2: match {group: sweeep, tag: loop} matches none of the 5 runs (did you mean 'sweep'?)"),
    ("- {batch_size: {config: bss}}",
     "block 1, batch_size: none of the 5 runs it matches has config key 'bss' (did you mean 'bs'?)"),
    ("- {seed: {summary: accuracy}}",
     "block 1, seed: none of the 5 runs it matches has summary key 'accuracy' (did you mean 'accuracy/val'?)"),
    ("- {metric: {key: accuracy/vall}}",
     "block 1, metric.key: none of the 5 runs it matches logged 'accuracy/vall' (did you mean 'accuracy/val'?)"),
])
def test_a_bad_map_is_one_line_with_did_you_mean_and_exit_2(loop, tmp_path, capsys, text, message):
    path, out = tmp_path / "map.yaml", tmp_path / "report"
    path.write_text(text)
    code = main(["analyze", str(loop[0]), "--out", str(out), "--no-cache", "--map", str(path)])
    assert code == 2 and not out.exists()
    assert capsys.readouterr().err == f"optbench: error: {path}, {message}\n"


@pytest.mark.slow
def test_the_example_map_in_the_help_reads_the_lightning_runs(lightning, capsys):
    """The map ``optbench analyze --help`` prints works on Lightning's WandbLogger runs as is."""
    with pytest.raises(SystemExit):
        main(["analyze", "--help"])
    shown = capsys.readouterr().out
    assert all(line.strip() in shown for line in EXAMPLE.read_text().splitlines())
    runs = load([lightning[0]], cache_dir=None, run_map=read_map(EXAMPLE)).runs
    assert runs[F.LEFT_OUT].isna().all() and set(runs[F.TASK]) == {"my-task"} and runs[F.TARGET].eq(0.9).all()


@pytest.mark.parametrize("data, message", [
    ({"lr": 1}, "map: expected a list of blocks, each '- match: ...' and its fields (optbench analyze --help "
                "shows one), got a mapping"),
    ([], "map: expected a list of blocks, each '- match: ...' and its fields (optbench analyze --help shows one), "
         "got nothing"),
    (["lr"], "map, block 1: expected a mapping of fields (task: ..., lr: {config: lr}), got 'lr'"),
    ([{"match": {"projct": "x"}}], "map, block 1, match: unknown match key 'projct' (did you mean 'project'?); "
                                   "match keys: project, group, tag, name"),
    ([{"metric": {"higher_is_beter": True}}], "map, block 1, metric: unknown metric key 'higher_is_beter' (did you mean "
                                     "'higher_is_better'?); metric keys: key, higher_is_better, target"),
    ([{"lr": "fast"}], "map, block 1, lr: expected a number, got 'fast'"),
    ([{"batch_size": 12.5}], "map, block 1, batch_size: expected a whole number, got 12.5"),
    ([{"metric": {"higher_is_better": "yes"}}], "map, block 1, metric.higher_is_better: expected true or false, got 'yes'"),
    ([{"lr": {"config": "lr", "summary": "lr"}}],
     "map, block 1, lr: expected exactly one of config or summary, got {'config': 'lr', 'summary': 'lr'}"),
    ([{"lr": {"confi": "lr"}}], "map, block 1, lr: unknown key 'confi' (did you mean 'config'?); keys: config, "
                                "summary, default (a value is a constant, {config: KEY} or {summary: KEY}, with an "
                                "optional default)"),
    ([{"step": {"config": "s"}}], "map, block 1, step: expected the name of a logged (history) key, got {'config': 's'}"),
])
def test_a_malformed_map_is_one_line(data, message):
    with pytest.raises(ValueError) as error:
        parse_map(data)
    assert str(error.value) == message


def test_the_docs_show_the_example_map_as_it_is():
    page = (Path(__file__).resolve().parents[2] / "docs" / "analysis.md").read_text()
    block = page.split("<!-- lightning-map:begin -->\n```yaml\n")[1].split("```\n<!-- lightning-map:end -->")[0]
    assert block == EXAMPLE.read_text()


def test_a_missing_or_unparsable_map_file_is_one_line(tmp_path):
    with pytest.raises(ValueError, match=f"^no such map file: {tmp_path / 'nope.yaml'}$"):
        read_map(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("- {lr: [1\n")
    with pytest.raises(ValueError, match=f"^cannot parse {tmp_path / 'bad.yaml'}: line 2, column 1"):
        read_map(tmp_path / "bad.yaml")


@pytest.mark.slow
def test_the_map_renames_a_store_task_and_the_cache_follows_the_map(tmp_path):
    """On optbench's own store a block matches the study as its group and the run_id as its
    name; a changed map reads the runs again (its digest is in every run's cache key)."""
    root = write_run(tmp_path / "runs", "s", "done", val=[(10, 0.7)], summary=summary_for("done", 0.7, 0.7, 10)).parent
    cache = tmp_path / "cache"
    for task in ("cifar", "svhn"):
        run_map = parse_map([{"match": {"group": "s", "name": "do*"}, "task": task}])
        runs = load([root], cache_dir=cache, run_map=run_map).runs
        assert runs[F.TASK].tolist() == [task] and runs[F.BEST].tolist() == [0.7]
    assert load([root], cache_dir=cache).runs[F.TASK].tolist() == ["vision"]


def test_a_mapped_metric_on_a_store_run_is_computed_from_its_rows(tmp_path):
    """A map naming another metric (and target) than the summary's: best, final and
    steps-to-target come from that metric's logged rows, by the summary's rules."""
    root = write_run(tmp_path / "runs", "s", "r", val=[(10, 0.3), (20, 0.65), (30, 0.5)],
                     losses=[(5, 2.0), (10, 1.5), (20, 0.9)], summary=summary_for("r", 0.65, 0.5, 20)).parent
    run_map = parse_map([{"metric": {"key": "train/loss", "higher_is_better": False, "target": 1.0}}])
    run = load([root], cache_dir=None, run_map=run_map).runs.iloc[0]
    assert (run[F.METRIC], run[F.HIGHER_IS_BETTER], run[F.TARGET]) == ("train/loss", False, 1.0)
    assert (run[F.BEST], run[F.FINAL], run[F.STEPS_TO_TARGET]) == (0.9, 0.9, 20)


class StubRun(SimpleNamespace):
    def scan_history(self):
        return iter(self.rows)


class StubApi:
    def __init__(self, runs):
        self.runs_ = runs

    def runs(self, path, filters=None):
        return self.runs_


def test_the_map_applies_to_an_online_project(tmp_path):
    """``wandb:ENTITY/PROJECT`` through a stub client (no network here): tags match, the
    history's own step key and _runtime are read, a Lightning-style config maps."""
    rows = [{"trainer/global_step": s, "_step": i, "_runtime": 1.0 + i, "epoch": 0, "val_acc": v}
            for i, (s, v) in enumerate([(50, 0.4), (100, 0.8), (150, 0.7)])]
    runs = [StubRun(id=f"id{n}", name=f"run-{n}", group=None, project="p", tags=tags, state="finished",
                    config={"optimizer": "sgd", "lr": lr, "bs": 32, "_wandb": {}}, summary_metrics={"val_acc": 0.7},
                    rows=rows, heartbeatAt="t", historyLineCount=3)
            for n, (tags, lr) in enumerate([(["keep"], 0.1), (["other"], 0.2)])]
    run_map = parse_map([{"batch_size": {"config": "bs"}}, {"match": {"tag": "other"}, "task": "elsewhere"}])
    frames = load(["wandb:me/p"], cache_dir=None, api=StubApi(runs), run_map=run_map)
    got = frames.runs.set_index(F.RUN_ID)
    assert got[F.TASK].to_dict() == {"run-0": "p", "run-1": "elsewhere"}
    assert got[F.BATCH_SIZE].tolist() == [32, 32] and got[F.LEFT_OUT].isna().all()
    assert got[F.BEST].tolist() == [0.8, 0.8] and got[F.WALL_TIME_S].tolist() == [3.0, 3.0]
    assert frames.metrics[F.STEP].tolist()[:3] == [50, 100, 150]



def test_the_metric_direction_and_target_may_come_from_each_run(tmp_path):
    """``metric.higher_is_better`` and ``metric.target`` from the config, the target with a
    default for the run without it: best, final and steps-to-target follow each run's own."""
    rows = [{"trainer/global_step": s, "_step": i, "_runtime": 1.0 + i, "val_acc": v}
            for i, (s, v) in enumerate([(50, 0.4), (100, 0.8), (150, 0.7)])]
    configs = [{"optimizer": "sgd", "lr": 0.1, "batch_size": 32, "maximize": True, "goal": 0.75},
               {"optimizer": "sgd", "lr": 0.2, "batch_size": 32, "maximize": False}]
    runs = [StubRun(id=f"id{n}", name=f"run-{n}", group=None, project="p", tags=[], state="finished", config=config,
                    summary_metrics={}, rows=rows, heartbeatAt="t", historyLineCount=3)
            for n, config in enumerate(configs)]
    run_map = parse_map([{"metric": {"key": "val_acc", "higher_is_better": {"config": "maximize"},
                                     "target": {"config": "goal", "default": 0.5}}}])
    got = load(["wandb:me/p"], cache_dir=None, api=StubApi(runs), run_map=run_map).runs.set_index(F.RUN_ID)
    assert got[F.LEFT_OUT].isna().all()
    assert got.loc["run-0", [F.HIGHER_IS_BETTER, F.TARGET, F.BEST, F.FINAL, F.STEPS_TO_TARGET]].tolist() == [
        True, 0.75, 0.8, 0.7, 100]
    assert got.loc["run-1", [F.HIGHER_IS_BETTER, F.TARGET, F.BEST, F.FINAL, F.STEPS_TO_TARGET]].tolist() == [
        False, 0.5, 0.4, 0.7, 50]


@pytest.mark.parametrize("steps, explicit", [
    ([0, 1, 2, 3], False),  # the log-call counter (or every step from 0 once: ambiguous, so not)
    ([0, 5, 10], True),
    ([1, 2, 3], True),
    ([], False),
])
def test_explicit_steps(steps, explicit):
    assert explicit_steps(np.array(steps)) is explicit


@pytest.mark.parametrize("key, higher", [
    ("val_acc", True), ("accuracy/val", True), ("val/loss", False), ("val/wer", False), ("val_score", None),
    ("val/acc_loss", None),
])
def test_direction_from_a_metric_name(key, higher):
    assert higher_is_better(key) is higher


def test_validation_metrics_are_named_so():
    keys = ["train_loss", "val_acc", "val/acc_best", "accuracy/val", "_runtime", "validation-f1", "interval"]
    assert validation_metrics(keys) == ["accuracy/val", "val_acc", "validation-f1"]
