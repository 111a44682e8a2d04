"""A user's optimizer through every command: config validation (one-line errors, exit 2), run
identity, ``optbench train``, ``optbench optimizers``, ``optbench study run`` on the local pool and
on the test SLURM cluster, and ``optbench analyze`` — as real subprocesses with the user's
package (and its plugin's distribution metadata) on ``PYTHONPATH``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from experiments.config import ConfigError, load_config, recorded, run_id
from tests.experiments.support import REPO, TINY, optbench_command, subprocess_env
from tests.experiments.test_cli import assert_one_line_error, run_main
from tests.outside_package import PACKAGE, write_user_package

SIGNSGD = f"{PACKAGE}:SignSGD"
DEADLINE_S = 400


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    return write_user_package(tmp_path_factory.mktemp("site"))


@pytest.fixture
def on_path(site, monkeypatch) -> Path:
    """The user's package importable in this process too."""
    monkeypatch.syspath_prepend(str(site))
    return site


def env_with(site: Path) -> dict[str, str]:
    """``subprocess_env()`` with ``site`` first on PYTHONPATH (the executors pass it on)."""
    env = subprocess_env()
    env["PYTHONPATH"] = os.pathsep.join([str(site), env["PYTHONPATH"]])
    return env


def optbench(site: Path, *args: str) -> subprocess.CompletedProcess:
    """``optbench ARGS`` with ``site`` on PYTHONPATH, printing tables 300 columns wide."""
    return subprocess.run([*optbench_command(), *args], capture_output=True, text=True, timeout=DEADLINE_S,
                          cwd=REPO, env={**env_with(site), "COLUMNS": "300"})


def run_ids(site: Path, *override_lists: list[str]) -> list[str]:
    """The run_id of each override list, computed in a fresh process that imports from ``site``."""
    code = ("import json, sys\nfrom experiments.config import load_config, run_id\n"
            "print(json.dumps([run_id(load_config(o)) for o in json.loads(sys.argv[1])]))")
    result = subprocess.run([sys.executable, "-c", code, json.dumps(override_lists)], capture_output=True,
                            text=True, timeout=120, cwd=REPO, env=env_with(site))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
def test_config_validation_builds_no_optimizer():
    """Loading a config checks the optimizer against its signature and defaults: torch._dynamo,
    which building any torch optimizer imports (over a second), stays unimported."""
    code = ("import sys\nfrom experiments.config import load_config\n"
            "load_config(['optimizer.name=larc_novograd', 'optimizer.lr=0.01', 'optimizer.betas=[0.9,0.99]'])\n"
            "load_config(['optimizer.name=torch.optim.RAdam'])\nprint('torch._dynamo' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO,
                            env=subprocess_env())
    assert (result.returncode, result.stdout.strip()) == (0, "False"), result.stderr


@pytest.mark.slow
def test_run_identity_follows_path_options_defaults_and_version(tmp_path, site):
    """Same optimizer and options → same run_id, whichever spelling of the path or explicit
    default; another option value, a changed default of the class, another version of its
    distribution (or, without metadata, of its ``__version__``) → a different run_id."""
    base = [*TINY, "optimizer.lr=0.01"]
    same = run_ids(site, [*base, f"optimizer.name={SIGNSGD}"], [*base, f"optimizer.name={PACKAGE}.SignSGD"],
                   [*base, f"optimizer.name={SIGNSGD}", "optimizer.momentum=0.9"],
                   [*base, f"optimizer.name={SIGNSGD}", "optimizer.momentum=0.5"],
                   [*base, f"optimizer.name={SIGNSGD}", "optimizer.larc=true"], [*base, f"optimizer.name=larc:{SIGNSGD}"])
    assert same[0] == same[1] == same[2] and len({same[0], same[3], same[4]}) == 3 and same[4] == same[5]
    name = [*base, f"optimizer.name={SIGNSGD}"]
    (new_default,) = run_ids(write_user_package(tmp_path / "default", momentum=0.8), name)
    (new_version,) = run_ids(write_user_package(tmp_path / "version", version="1.1"), name)
    bare = run_ids(write_user_package(tmp_path / "bare", metadata=False), name)
    bare_next = run_ids(write_user_package(tmp_path / "bare-next", version="1.1", metadata=False), name)
    assert len({same[0], new_default, new_version, *bare, *bare_next}) == 5


def test_config_records_the_resolved_optimizer(on_path):
    """``optimizer.resolved`` as config.yaml records it: the path, package, version and every
    option with its default; ``optimizer.larc=true`` is folded into the name, which then says LARC."""
    config = load_config([f"optimizer.name={PACKAGE}.SignSGD", "optimizer.momentum=0.5", "optimizer.larc=true"])
    assert config.optimizer.name == f"larc:{PACKAGE}.SignSGD" and config.optimizer.larc is False
    resolved = OmegaConf.to_container(recorded(config).optimizer.resolved)
    assert resolved.pop("options") == {"lr": 0.001, "momentum": 0.5, "weight_decay": 0.0, "larc_eta": 0.002,
                                       "larc_mode": "clip", "larc_eps": 1e-7, "larc_min_update": 1e-7}
    assert resolved == {"name": f"larc:{SIGNSGD}", "path": SIGNSGD, "distribution": PACKAGE, "version": "1.0"}
    assert run_id(config) == run_id(load_config([f"optimizer.name=larc:{SIGNSGD}", "optimizer.momentum=0.5"]))


@pytest.mark.parametrize("name, allowed", [("lamb", False), ("muon", False), ("adafactor", False), ("lion", True),
                                           ("schedule_free_adamw", True), (SIGNSGD, True), (f"larc:{SIGNSGD}", False)])
def test_fsdp_refuses_layer_wise_optimizers_by_behaviour(on_path, name, allowed):
    """Under FSDP an optimizer whose update depends on whole tensors is refused, found by running
    it (``optimizers.behaviour.is_layer_wise``), whatever its name."""
    overrides = ["trainer.strategy=fsdp", f"optimizer.name={name}"]
    if allowed:
        load_config(overrides)
    else:
        with pytest.raises(ConfigError, match=r"^trainer\.strategy=fsdp with optimizer .* is not supported: FSDP"):
            load_config(overrides)


# (overrides, the one stderr line): `optbench config` refuses each with exit status 2.
CONFIG_ERRORS = [
    pytest.param([f"optimizer.name={PACKAGE}.nothere:SignSGD"], r"cannot import module 'signsgd_pkg\.nothere'",
                 id="module-missing"),
    pytest.param([f"optimizer.name={PACKAGE}:Nope"], r"module 'signsgd_pkg' has no attribute 'Nope'",
                 id="attribute-missing"),
    pytest.param(["optimizer.name=torch.nn.Linear"], r"class Linear is not a torch\.optim\.Optimizer subclass",
                 id="not-an-optimizer"),
    pytest.param([f"optimizer.name={SIGNSGD}", "optimizer.momentun=0.9"],
                 r"Unknown option 'momentun' .* \(did you mean 'momentum'\?\)", id="unknown-option"),
    pytest.param([f"optimizer.name={SIGNSGD}", "optimizer.momentum=[0.9]"], r"option 'momentum' takes a number",
                 id="wrong-kind"),
    pytest.param([f"optimizer.name={SIGNSGD}", "optimizer.lr=-1"], r"'optimizer\.lr'.*-1", id="negative-lr"),
    pytest.param(["optimizer.name=larc_sgd", "optimizer.larc=true"], r"optimizer\.larc=true: .*under LARC already",
                 id="larc-twice"),
    pytest.param(["optimizer.name=signsgdd"], r"unknown optimizer 'signsgdd' \(did you mean 'signsgd'\?\)",
                 id="plugin-did-you-mean"),
]


@pytest.mark.parametrize("overrides, pattern", CONFIG_ERRORS)
def test_bad_outside_optimizers_are_one_line_errors(on_path, capsys, overrides, pattern):
    assert_one_line_error(run_main(capsys, "config", *overrides), pattern)


def test_a_factory_returning_no_optimizer_is_refused_before_anything_is_written(on_path, capsys, tmp_path):
    """What only building can tell (here: a factory's result) is still bad input: exit 2, one
    line, and no run directory."""
    result = run_main(capsys, "train", *TINY, f"optimizer.name={PACKAGE}:not_an_optimizer", f"out_dir={tmp_path}")
    assert_one_line_error(result, r"not_an_optimizer returned str, not a torch\.optim\.Optimizer")
    assert not any(tmp_path.iterdir())


def test_an_optimizer_whose_step_ignores_the_closure_is_refused_before_anything_is_written(on_path, capsys,
                                                                                           tmp_path):
    """Lightning's forward and backward pass is the closure it hands to ``step``: an optimizer
    that never calls it would fail at the first step, so the run refuses it as bad input."""
    result = run_main(capsys, "train", *TINY, f"optimizer.name={PACKAGE}:NoClosureSGD", f"out_dir={tmp_path}")
    assert_one_line_error(result, r"NoClosureSGD': its step\(closure\) does not call the closure")
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_optbench_train_runs_an_import_path_and_a_plugin_under_larc(tmp_path, site):
    """``optbench train`` with the user's class by import path completes, its summary and
    config.yaml record the path, package, version and options, and its state bytes are measured;
    ``larc_signsgd`` (the plugin under LARC) completes with trust ratios in its layer rows."""
    steps = ["trainer.max_steps=20", "trainer.val_every_n_steps=10", "trainer.layer_stats_every_n_steps=10"]
    result = optbench(site, "train", *TINY, *steps, f"optimizer.name={SIGNSGD}", "optimizer.lr=0.003",
                      f"out_dir={tmp_path / 'path'}")
    assert result.returncode == 0 and result.stdout.startswith("completed: "), result.stderr
    (root,) = (tmp_path / "path" / "default").iterdir()
    summary = json.loads((root / "summary.json").read_text())
    recorded = yaml.safe_load((root / "config.yaml").read_text())["optimizer"]["resolved"]
    assert summary["optimizer_resolved"] == recorded
    assert {k: recorded[k] for k in ("name", "path", "distribution", "version")} == {
        "name": SIGNSGD, "path": SIGNSGD, "distribution": PACKAGE, "version": "1.0"}
    assert recorded["options"] == {"lr": 0.003, "momentum": 0.9, "weight_decay": 0.0}
    assert summary["optimizer_state_bytes"] == 4 * summary["num_parameters"]  # one float32 buffer each

    result = optbench(site, "train", *TINY, *steps, "optimizer.name=larc_signsgd", f"out_dir={tmp_path / 'plugin'}")
    assert result.returncode == 0, result.stderr
    (root,) = (tmp_path / "plugin" / "default").iterdir()
    layers = [json.loads(line) for line in (root / "layers.jsonl").read_text().splitlines()]
    assert layers and all("trust_ratio" in row for row in layers)


@pytest.mark.slow
def test_optbench_optimizers_lists_plugins_with_their_package_and_the_peers(site):
    """``optbench optimizers`` (a subprocess with the plugin's metadata on its path) lists the
    plugin with its package and version, its LARC twin, and the peers."""
    result = optbench(site, "optimizers")
    assert result.returncode == 0, result.stderr
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") >= 4}
    assert {"lamb", "lion", "muon", "schedule_free_adamw", "radam", "nadam", "adafactor", "signsgd",
            "larc_signsgd"} <= set(rows)
    assert f"{PACKAGE} 1.0" in rows["signsgd"]


def test_a_plugin_that_does_not_load_is_listed_saying_why(on_path, tmp_path, monkeypatch):
    """``optbench optimizers`` still lists every name when one plugin's entry point is broken:
    that row says why it does not load; studies' ``all`` leaves it out."""
    from experiments.optimizer_listing import optimizer_rows
    from optimizers.registry import optimizer_names

    info = tmp_path / "broken_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken_plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[optbench.optimizers]\nbroken = {PACKAGE}:MISSING\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    rows = {row[0]: row for row in optimizer_rows()}
    assert rows["broken"][2].startswith(f"optimizer plugin 'broken' ({PACKAGE}:MISSING) does not load")
    assert rows["signsgd"][1] == f"{PACKAGE} 1.0"
    assert "broken" in optimizer_names() and "broken" not in optimizer_names(installed=True)


SPEC = {
    "name": "outside",
    "base": {"task": "vision", "size": "tiny", "schedule": {"name": "constant"},
             "trainer": {"max_steps": 20, "val_every_n_steps": 10, "log_every_n_steps": 10}},
    "grid": {"optimizer.name": [SIGNSGD, "signsgd", "novograd", "adamw"]},
    "optimizers": {SIGNSGD: {"base": {"optimizer.lr": 0.003}}},
}


def study_runs(site: Path, out_dir: Path, *args: str) -> dict[str, dict]:
    """Run SPEC as ``optbench study run`` with ``args``; return {optimizer name: summary}."""
    spec = out_dir.parent / "outside.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    result = optbench(site, "study", "run", str(spec), f"out_dir={out_dir}", "--max-parallel", "2", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    summaries = [json.loads(path.read_text()) for path in (out_dir / "outside").glob("*/summary.json")]
    return {summary["optimizer"]: summary for summary in summaries}


@pytest.mark.slow
def test_a_study_compares_the_users_optimizer_on_the_local_pool_and_analyze_reads_it(tmp_path, site):
    """A spec with the user's optimizer (by path, with its own base keys, and as a plugin) beside
    NovoGrad and AdamW runs on the local pool (each run its own ``optbench train`` process, which
    resolves the path itself); ``optbench analyze`` tabulates every run under its name."""
    runs = study_runs(site, tmp_path / "out")
    assert set(runs) == {SIGNSGD, "signsgd", "novograd", "adamw"}
    assert {summary["status"] for summary in runs.values()} == {"completed"}
    assert runs[SIGNSGD]["lr"] == 0.003 and runs["signsgd"]["optimizer_resolved"]["options"]["momentum"] == 0.8
    result = optbench(site, "analyze", str(tmp_path / "out"), "--out", str(tmp_path / "report"))
    assert result.returncode == 0, result.stderr
    table = (tmp_path / "report" / "tables" / "runs.csv").read_text()
    assert all(name in table for name in runs)


@pytest.mark.slow
def test_a_study_runs_the_users_optimizer_on_slurm(slurm_cluster, tmp_path, site):
    """The same spec on the test SLURM cluster: every array task resolves the user's optimizer
    from the PYTHONPATH the jobs inherit, and the runs are those the local pool plans."""
    runs = study_runs(site, tmp_path / "out", "--executor", "slurm", "--executor-options", "time=10", "cpus_per_task=1")
    assert set(runs) == {SIGNSGD, "signsgd", "novograd", "adamw"}
    assert {summary["status"] for summary in runs.values()} == {"completed"}
    planned = optbench(site, "study", "run", str(tmp_path / "outside.yaml"), f"out_dir={tmp_path / 'local'}",
                       "--dry-run")
    assert all(summary["run_id"] in planned.stdout for summary in runs.values())

