"""Bad study input is one line on stderr (exit 2) naming the problem, before anything is written."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from experiments.cli import main
from experiments.studies.spec import builtin_names, load_spec
from tests.experiments.studies.conftest import TINY_SPEC


def changed(**changes: Any) -> dict[str, Any]:
    """TINY_SPEC with top-level keys replaced (None: removed)."""
    spec = copy.deepcopy(TINY_SPEC)
    for key, value in changes.items():
        if value is None:
            spec.pop(key)
        else:
            spec[key] = value
    return spec


BAD_SPECS = [
    ("misspelt spec key", {**changed(seeds=None), "seeds_": [1]}, "unknown key 'seeds_' (did you mean 'seeds'?)"),
    ("unknown key in base", changed(base={"trainer": {"max_step": 5}}),
     "base: unknown config key 'trainer.max_step' (did you mean 'trainer.max_steps'?)"),
    ("unknown key in grid", changed(grid={"trainer.max_step": [5]}), "grid: unknown config key 'trainer.max_step'"),
    ("empty value list", changed(grid={"data.batch_size": []}), "grid: 'data.batch_size' is an empty list"),
    ("unknown optimizer in grid", changed(grid={"optimizer.name": ["adamw", "novogard"]}),
     "grid: unknown optimizer 'novogard' (did you mean 'novograd'?); valid names: sgd,"),
    ("unknown task in grid", changed(grid={"task": ["vision", "speech"]}),
     "grid: invalid value for 'task': 'speech'; valid: vision, asr, lm"),
    ("invalid value", changed(grid={"data.batch_size": [16, -8]}),
     "grid: invalid value for 'data.batch_size': -8 (must be > 0)"),
    ("unknown optimizer section", changed(optimizers={"adamx": {"base": {}}}), "optimizers: unknown optimizer 'adamx'"),
    ("invalid optimizer option", changed(optimizers={"sgd": {"base": {"optimizer.momentum": -0.5}}}),
     "run optimizer.name=sgd"),
    ("unknown search key", changed(search={"metod": "grid"}), "search: unknown key 'metod' (did you mean 'method'?)"),
    ("unknown search method", changed(search={"method": "random", "trials": 4}), "search: invalid method 'random'"),
    ("quasi-random without trials", changed(search={"method": "sobol", "space": {"optimizer.lr": {"log_range": [1e-3, 1]}}}),
     "search: method sobol needs 'trials'"),
    ("bad range", changed(search={"space": {"optimizer.lr": {"log_range": [0, 1], "points": 3}}}), "needs low > 0"),
    ("seeds without a search", changed(search=None, optimizers=None), "'seeds' re-run the point each cell's search selects"),
    ("batch not a multiple of the micro-batch", {**TINY_SPEC, "max_micro_batch": 48},
     "data.batch_size=64 is not a multiple of max_micro_batch=48"),
    ("linked keys of the wrong width", changed(grid={"data.batch_size,trainer.max_steps": [[16, 20], [32]]}),
     "links 2 keys: each value must be a list of 2"),
    ("name not a directory name", changed(name="a/b"), "'name' must be a directory name"),
    ("a seed both selects and scores", changed(search={**TINY_SPEC["search"], "seeds": [0, 1]}, seeds=[1, 2]),
     "seed 1 is in both 'seeds' and 'search.seeds': the seeds that score a selected point must not be those that "
     "selected it"),
    ("a repeated search seed", changed(search={**TINY_SPEC["search"], "seeds": [0, 0]}), "search: 'seeds' repeats a seed"),
    ("negative extend", changed(search={**TINY_SPEC["search"], "extend": -1}),
     "search: 'extend' must be a non-negative integer, got -1"),
    ("noise scale without seeds", changed(seeds=None, measure_noise_scale=True),
     "'measure_noise_scale' adds a run to the seeds phase: add 'seeds'"),
]


def run_cli(capsys: pytest.CaptureFixture, spec: str, out_dir: Path, *argv: str) -> tuple[int, str]:
    code = main(["study", "run", spec, f"out_dir={out_dir}", *argv])
    return code, capsys.readouterr().err


def assert_one_line_error(code: int, err: str, message: str, out_dir: Path) -> None:
    assert code == 2
    assert err.startswith("optbench: error: ") and err.count("\n") == 1, err
    assert message in err, err
    assert not out_dir.exists()  # nothing written


@pytest.mark.parametrize("case, spec, message", BAD_SPECS, ids=[case for case, *_ in BAD_SPECS])
def test_bad_spec_is_a_one_line_error(case, spec, message, write_spec, tmp_path, capsys) -> None:
    code, err = run_cli(capsys, str(write_spec(spec)), tmp_path / "out")
    assert_one_line_error(code, err, message, tmp_path / "out")


@pytest.mark.parametrize("case, argv, message", [
    ("missing file", ["missing.yaml"], "study spec not found: missing.yaml"),
    ("unknown built-in", ["bs-scaling"], "unknown study 'bs-scaling': not a file, nor a built-in study (bs-scaling-asr,"),
    ("unknown override key", ["quick", "trainer.max_step=3"], "command line: unknown config key 'trainer.max_step'"),
    ("override of a swept key", ["quick", "optimizer.name=sgd"], "'optimizer.name' is swept by the study"),
    ("override not key=value", ["quick", "trainer.max_steps"], "is not of the form key=value"),
])
def test_bad_command_is_a_one_line_error(case, argv, message, tmp_path, capsys) -> None:
    code, err = run_cli(capsys, argv[0], tmp_path / "out", *argv[1:])
    assert_one_line_error(code, err, message, tmp_path / "out")


# The executor is checked once the study is planned: a small spec plans in a fraction of the time.
@pytest.mark.parametrize("case, argv, message", [
    ("unknown executor", ["--executor", "pbs"], "unknown executor 'pbs' (valid: local, slurm)"),
    ("options for the local executor", ["--executor-options", "partition=x"],
     "the local executor takes no --executor-options partition (valid: warm; runs at a time: --max-parallel)"),
    ("warm not a boolean", ["--executor-options", "warm=sometimes"],
     "--executor-options warm=sometimes is not a boolean (true or false)"),
    ("option not key=value", ["--executor-options", "partition"], "--executor-options 'partition' is not of the form"),
])
def test_bad_executor_is_a_one_line_error(case, argv, message, write_spec, tmp_path, capsys) -> None:
    code, err = run_cli(capsys, str(write_spec(TINY_SPEC)), tmp_path / "out", *argv)
    assert_one_line_error(code, err, message, tmp_path / "out")


def test_unparsable_yaml_names_line_and_column(tmp_path, capsys) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\ngrid:\n  optimizer.name: [adamw, sgd\nbase: {}\n")
    code, err = run_cli(capsys, str(path), tmp_path / "out")
    assert_one_line_error(code, err, f"cannot parse {path}: ", tmp_path / "out")
    assert "line 4, column 5: did not find expected ',' or ']' (while parsing a flow sequence that starts at " \
           "line 3, column 19)" in err  # the same words as a run config's YAML error


def test_slurm_executor_without_sbatch(write_spec, tmp_path, capsys, monkeypatch) -> None:
    spec = str(write_spec(TINY_SPEC))
    monkeypatch.setenv("PATH", str(tmp_path))  # a machine without SLURM's commands
    code, err = run_cli(capsys, spec, tmp_path / "out", "--executor", "slurm")
    assert_one_line_error(code, err, "--executor slurm needs SLURM's sbatch on PATH", tmp_path / "out")


def test_every_builtin_parses() -> None:
    assert {"quick", "bs-scaling-vision", "bs-scaling-asr", "bs-scaling-lm", "stability", "paper-table"} <= set(
        builtin_names())
    for name in builtin_names():
        assert load_spec(name).name == name
