"""A user's task from outside the repository: a package on PYTHONPATH named as
``task=package.module:name``, or registered through the entry-point group ``optbench.tasks``.

It gets what a built-in task gets (real ``optbench train`` and ``optbench study run``
subprocesses: the store, a second run skipped, resume, divergence, layer statistics, a study
with the scaling protocol, the report; SLURM in studies/test_slurm.py); its run identity follows
its path and description; and every way it can be unusable is one line, exit 2.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from experiments.cli import main
from experiments.config import ConfigError, load_config, run_id
from experiments.store import RunStore, find_runs
from experiments.tasks import TaskError, _plugins, task_info, task_names
from tests.experiments.outside_task import (
    MODEL, TINY_PARAMETERS, env_with, write_entry_point, write_task_package,
)
from tests.experiments.support import REPO, optbench_command
from tests.experiments.test_resume import kill_when, read_jsonl

DEADLINE_S = 400
RUN = ["size=tiny", "trainer.max_steps=60", "trainer.val_every_n_steps=20", "trainer.log_every_n_steps=10",
       "trainer.layer_stats_every_n_steps=20", "optimizer.lr=0.01"]
_packages = itertools.count()


@pytest.fixture
def user_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory on this process's sys.path for the test's packages."""
    root = tmp_path / "outside"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    return root


def fresh_package() -> str:
    """A package name no earlier test imported (this process keeps imported modules)."""
    return f"usertask{next(_packages)}"


def optbench(root: Path, *args: str) -> subprocess.CompletedProcess:
    """The console script with ``root`` on PYTHONPATH, run from the repository."""
    return subprocess.run([*optbench_command(), *args], capture_output=True, text=True, timeout=DEADLINE_S,
                          cwd=REPO, env=env_with(root))


# --------------------------------------------------------------------------------------------
# The description, in this process
# --------------------------------------------------------------------------------------------


def test_a_task_by_import_path_is_described_by_its_taskinfo(user_root):
    """``task=package.module:name`` loads its description: its sources, targets and size settings
    are those the config is checked and completed with."""
    task = write_task_package(user_root, fresh_package(), sources='("builtin", "csv")',
                              size_settings='{"tiny": {"trainer.max_steps": 40, "data.batch_size": 16}}')
    info = task_info(task)
    assert (info.name, info.metric, info.higher_is_better) == ("waves", "mse", False)
    assert info.targets == {"tiny": 0.1, "default": 0.02, "large": 0.01}
    config = load_config([f"task={task}", "size=tiny"])
    assert config.task == task and (config.trainer.max_steps, config.data.batch_size) == (40, 16)
    assert load_config([f"task={task}", "size=tiny", "data.batch_size=8"]).data.batch_size == 8
    assert load_config([f"task={task}", "data.source=csv", "data.path=points.csv"]).data.source == "csv"


def test_describing_a_task_imports_no_torch(tmp_path):
    """The description module of a user's task, resolved as config validation and study planning
    resolve it, loads neither torch nor its model's module."""
    task = write_task_package(tmp_path, "torchfree")
    code = ("import sys; from experiments.tasks import task_info; task_info(sys.argv[1]); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'pytorch_lightning', 'torchfree')))")
    result = subprocess.run([sys.executable, "-c", code, task], capture_output=True, text=True, timeout=120,
                            env=env_with(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['torchfree']"


def test_same_task_path_same_run_id(user_root):
    task = write_task_package(user_root, fresh_package())
    assert run_id(load_config([f"task={task}"])) == run_id(load_config([f"task={task}", "seed=0"]))


def test_a_changed_description_is_a_different_run(user_root, monkeypatch):
    """A new data_version gives the task's runs new ids (on its own data; not on real data); a
    new default target does where it ends the run (trainer.stop_at_target) and only there; a
    data_version function is called for the id."""
    package = fresh_package()
    task = write_task_package(user_root, package, sources='("builtin", "csv")')
    configs = {name: load_config([f"task={task}", *extra]) for name, extra in {
        "own": [], "real": ["data.source=csv", "data.path=points.csv"], "stop": ["trainer.stop_at_target=true"],
    }.items()}
    before = {name: run_id(config) for name, config in configs.items()}
    module = sys.modules[package]
    info = module.task
    monkeypatch.setattr(module, "task", dataclasses.replace(info, data_version="2"))
    assert run_id(configs["own"]) != before["own"]
    assert run_id(configs["real"]) == before["real"]
    monkeypatch.setattr(module, "task", dataclasses.replace(info, data_version=lambda: "1"))
    assert run_id(configs["own"]) == before["own"]
    monkeypatch.setattr(module, "task", dataclasses.replace(info, targets={**info.targets, "default": 0.5}))
    assert run_id(configs["own"]) == before["own"]
    assert run_id(configs["stop"]) != before["stop"]


# --------------------------------------------------------------------------------------------
# Every way a task can be unusable: one line, exit 2, nothing written
# --------------------------------------------------------------------------------------------

BARE_MODULE = MODEL + "\n\ndef bare_module(config):\n    return waves_data(config).module\n"

# (package files: write_task_package's keyword arguments, the task's name, the line's text), where
# {package} is the package's name. The first group fails as the config loads; the second when the
# run builds the task's pieces.
UNUSABLE = [
    pytest.param({}, "nosuchpackage:task",
                 "task 'nosuchpackage:task': module 'nosuchpackage' does not import "
                 "(ModuleNotFoundError: No module named 'nosuchpackage')", id="no-such-module"),
    pytest.param({"_init": "import not_installed_dependency\n"}, "{package}:task",
                 "task '{package}:task': module '{package}' does not import "
                 "(ModuleNotFoundError: No module named 'not_installed_dependency')", id="module-raises"),
    pytest.param({}, "{package}:tsk", "task '{package}:tsk': module '{package}' has no attribute 'tsk'",
                 id="no-such-attribute"),
    pytest.param({"_init": "task = {'name': 'waves'}\n"}, "{package}:task",
                 "task '{package}:task' is a dict, not a TaskInfo (experiments.tasks.info)", id="not-a-taskinfo"),
    pytest.param({"targets": '{"tiny": 0.1}'}, "{package}:task",
                 "task '{package}:task': invalid description: targets: no target for size 'default' "
                 "(every size needs one: tiny, default, large)", id="target-missing"),
    pytest.param({"targets": '{"tiny": float("nan"), "default": 1, "large": 1}'}, "{package}:task",
                 "invalid description: targets['tiny'] must be a finite number, got nan", id="target-nan"),
    pytest.param({"higher_is_better": '"yes"'}, "{package}:task",
                 "invalid description: higher_is_better must be True or False, got 'yes'", id="direction"),
    pytest.param({"metric": '"val/acc"'}, "{package}:task",
                 "invalid description: metric must be a metric name such as 'acc', got 'val/acc'", id="metric"),
    pytest.param({"metric": None}, "{package}:task",
                 "(TypeError: TaskInfo.__init__() missing 1 required positional argument: 'metric')",
                 id="metric-missing"),
    pytest.param({"module": '"{package}.model.WavesTask"'}, "{package}:task",
                 "invalid description: module must be an import path package.module:Class, "
                 "got '{package}.model.WavesTask'", id="module-not-an-import-path"),
    pytest.param({"sources": "[]"}, "{package}:task",
                 "invalid description: sources must be a non-empty list of data.source names, got []", id="sources"),
    pytest.param({"size_settings": '{"huge": {}}'}, "{package}:task",
                 "invalid description: size_settings: unknown size 'huge' (sizes: tiny, default, large)",
                 id="size-settings-size"),
    pytest.param({"data_version": '""'}, "{package}:task",
                 "invalid description: data_version must be a non-empty string or a function returning one, got ''",
                 id="data-version"),
    pytest.param({"name": '"vision"'}, "{package}:task",
                 "task '{package}:task' is named 'vision', as a built-in task is: give it another name",
                 id="name-of-a-built-in"),
    pytest.param({"module": '"{package}.modle:WavesTask"'}, "{package}:task",
                 "task '{package}:task': its module {package}.modle:WavesTask names module '{package}.modle', "
                 "which is not found", id="module-not-found"),
    pytest.param({"size_settings": '{"tiny": {"trainer.max_step": 5}}'}, "{package}:task",
                 "task '{package}:task': size_settings['tiny']: unknown config key 'trainer.max_step' "
                 "(did you mean 'trainer.max_steps'?)", id="size-settings-key"),
    pytest.param({"_args": ["data.source=cifar10", "data.path=."]}, "{package}:task",
                 "invalid value for 'data.source': 'cifar10'; valid for task {package}:task: builtin",
                 id="source-it-does-not-read"),
    # as the run builds its pieces
    pytest.param({"module": '"{package}.model:Waves"'}, "{package}:task",
                 "task '{package}:task': its module {package}.model:Waves: module '{package}.model' has no "
                 "attribute 'Waves'", id="module-attribute-missing"),
    pytest.param({"model": "import not_installed_dependency\n"}, "{package}:task",
                 "task '{package}:task': its module {package}.model:WavesTask: module '{package}.model' does not "
                 "import (ModuleNotFoundError: No module named 'not_installed_dependency')", id="model-raises"),
    pytest.param({"module": '"{package}.model:waves_data"'}, "{package}:task",
                 "task '{package}:task': its module {package}.model:waves_data is not a TaskModule subclass "
                 "(experiments.tasks.base)", id="module-not-a-taskmodule"),
    pytest.param({"data": '"{package}.model:F"'}, "{package}:task",
                 "task '{package}:task': its data {package}.model:F is not a function of the run config",
                 id="data-not-callable"),
    pytest.param({"data": '"{package}.model:bare_module"', "model": BARE_MODULE}, "{package}:task",
                 "task '{package}:task': its data {package}.model:bare_module returned StreamDataModule, not a "
                 "TaskData holding a LightningDataModule (experiments.tasks.base)", id="data-returns-no-taskdata"),
]


@pytest.mark.parametrize("files, task, line", UNUSABLE)
def test_an_unusable_task_is_one_line_exit_2(user_root, tmp_path, capsys, files, task, line):
    package = fresh_package()
    files = dict(files)
    init, args = files.pop("_init", None), files.pop("_args", [])
    write_task_package(user_root, package, **files)
    if init is not None:
        (user_root / package / "__init__.py").write_text(init)
    out_dir = tmp_path / "runs"
    task = task.replace("{package}", package)
    code = main(["train", f"task={task}", "size=tiny", "trainer.max_steps=5",
                 f"out_dir={out_dir}", *args])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("optbench: error: "), err
    assert line.replace("{package}", package) in err, err
    assert not out_dir.exists()


def test_an_unusable_task_from_the_console_script(tmp_path):
    """The same, from the installed ``optbench`` in its own process."""
    result = optbench(tmp_path, "train", "task=nosuchpackage.tasks:task")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.splitlines() == ["optbench: error: task 'nosuchpackage.tasks:task': module "
                                          "'nosuchpackage.tasks' does not import (ModuleNotFoundError: No module "
                                          "named 'nosuchpackage')"]


# --------------------------------------------------------------------------------------------
# Entry points, in this process
# --------------------------------------------------------------------------------------------


@pytest.fixture
def plugins(user_root):
    """Entry points written under ``user_root`` are read afresh by the registry, and forgotten after."""
    _plugins.cache_clear()
    yield user_root
    _plugins.cache_clear()


def test_an_entry_point_registers_a_task_name(plugins):
    package = fresh_package()
    write_task_package(plugins, package)
    write_entry_point(plugins, "waves", f"{package}:task")
    assert task_names() == ["vision", "asr", "lm", "waves"]
    assert task_info("waves").module == f"{package}.model:WavesTask"
    assert load_config(["task=waves", "size=tiny"]).task == "waves"
    with pytest.raises(ConfigError, match=r"'wavs' \(did you mean 'waves'\?\); valid: vision, asr, lm, waves, "):
        load_config(["task=wavs"])


ENTRY_POINT_ERRORS = [
    pytest.param("ripples", "{package}:task",
                 "task 'ripples': entry point {package}:task describes a task named 'waves'", id="other-name"),
    pytest.param("waves", "nosuchpackage:task",
                 "task 'waves' (entry point nosuchpackage:task of wavetask 1.0): module 'nosuchpackage' does not "
                 "import (ModuleNotFoundError: No module named 'nosuchpackage')", id="does-not-load"),
    pytest.param("vision", "{package}:task",
                 "entry point vision = {package}:task of wavetask 1.0 (group optbench.tasks) takes the name of a "
                 "built-in task", id="built-in-name"),
]


@pytest.mark.parametrize("name, value, message", ENTRY_POINT_ERRORS)
def test_a_bad_entry_point_is_one_line(plugins, name, value, message):
    """A bad registration is refused in one line where its name is used (the built-in tasks keep
    working beside a package that takes one of their names)."""
    package = fresh_package()
    write_task_package(plugins, package)
    write_entry_point(plugins, name, value.replace("{package}", package))
    with pytest.raises(TaskError) as error:
        task_info(name) if name != "vision" else task_names()
    assert str(error.value) == message.replace("{package}", package)
    assert load_config(["task=vision"]).task == "vision"


# --------------------------------------------------------------------------------------------
# Every harness feature, through real subprocesses
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def package_root(tmp_path_factory) -> Path:
    """The user's package, written once for the module's subprocesses."""
    root = tmp_path_factory.mktemp("outside")
    write_task_package(root)
    return root


@pytest.fixture(scope="module")
def trained(package_root, tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    out_dir = tmp_path_factory.mktemp("runs")
    return optbench(package_root, "train", "task=wavetask:task", *RUN, f"out_dir={out_dir}", "--progress-every", "0"), \
        out_dir


@pytest.mark.slow
def test_optbench_train_trains_a_users_task_into_the_store(trained, package_root, monkeypatch):
    """Completed, in the run directory its config names (the same run_id in this process), with
    the description's name, metric, direction and target in its summary, the data's model options
    in its model, validation rows of val/mse (in its progress lines too) and layer statistics of
    its layers."""
    result, out_dir = trained
    assert result.returncode == 0, result.stderr
    assert "  val/mse " in result.stderr.splitlines()[-1], result.stderr
    (root,) = find_runs(out_dir)
    monkeypatch.syspath_prepend(str(package_root))
    assert root.name == run_id(load_config(["task=wavetask:task", *RUN, f"out_dir={out_dir}"]))
    summary = RunStore(root).summary()
    assert summary["status"] == "completed" and summary["global_step"] == 60
    assert (summary["task"], summary["metric"], summary["higher_is_better"], summary["target"]) == \
        ("waves", "val/mse", False, 0.1)
    assert summary["num_parameters"] == TINY_PARAMETERS
    validations = [row for row in RunStore(root).rows("metrics.jsonl") if "val/mse" in row]
    assert [row["step"] for row in validations] == [20, 40, 60]
    assert summary["best"] == {"val/mse": min(row["val/mse"] for row in validations)}
    layers = {row["layer"] for row in RunStore(root).rows("layers.jsonl")}
    assert layers == {"model.0.weight", "model.0.bias", "model.2.weight", "model.2.bias"}


@pytest.mark.slow
def test_the_same_task_path_again_is_the_same_run(trained, package_root):
    result, out_dir = trained
    again = optbench(package_root, "train", "task=wavetask:task", *RUN, f"out_dir={out_dir}")
    assert again.returncode == 0 and again.stdout.startswith("already completed: "), again.stdout + again.stderr
    assert len(find_runs(out_dir)) == 1


@pytest.mark.slow
def test_a_users_task_diverges_as_a_built_in_one_does(package_root, tmp_path):
    result = optbench(package_root, "train", "task=wavetask:task", *RUN, "optimizer.name=sgd", "optimizer.lr=1e6",
                      f"out_dir={tmp_path}")
    assert result.returncode == 0 and result.stdout.startswith("diverged: "), result.stdout + result.stderr
    (root,) = find_runs(tmp_path)
    assert RunStore(root).summary()["diverged_at_step"] is not None


@pytest.mark.slow
def test_an_interrupted_users_task_resumes_to_the_uninterrupted_result(trained, package_root, tmp_path):
    """SIGTERM past step 20 with a checkpoint on disk, then the same command: the validation rows
    and final loss equal those of the uninterrupted run."""
    _, uninterrupted_dir = trained
    root, _, process = kill_when(
        tmp_path, lambda rows: max((r["step"] for r in rows), default=0) >= 20,
        lambda root, rows: (root / "checkpoints" / "last.ckpt").is_file(), signal.SIGTERM,
        overrides=["task=wavetask:task", *RUN], env=env_with(package_root))
    assert process.returncode == 143 and RunStore(root).summary()["status"] == "interrupted", process.stderr.read()
    resumed = optbench(package_root, "train", "task=wavetask:task", *RUN, f"out_dir={tmp_path}")
    assert resumed.returncode == 0, resumed.stderr
    (uninterrupted,) = find_runs(uninterrupted_dir)

    def outcome(run: Path) -> tuple:
        rows = read_jsonl(run / "metrics.jsonl")
        summary = RunStore(run).summary()
        return ([(r["step"], r["val/mse"]) for r in rows if "val/mse" in r], summary["final"]["train/loss"],
                summary["status"], summary["best"])

    assert outcome(root) == outcome(uninterrupted)


def study_spec(directory: Path, name: str, task: str = "wavetask:task") -> Path:
    """A batch-size scaling study of the task: two batch sizes × two optimizers, two learning
    rates each, the selected one re-run with a second seed."""
    spec = {
        "name": name,
        "base": {"task": task, "size": "tiny", "target": 0.2, "schedule": {"name": "constant"},
                 "trainer": {"max_steps": 40, "val_every_n_steps": 10, "log_every_n_steps": 10}},
        "grid": {"optimizer.name": ["adamw", "sgd"], "data.batch_size": [16, 64]},
        "search": {"space": {"optimizer.lr": {"log_range": [0.003, 0.03], "points": 2}}},
        "seeds": [1],
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.slow
def test_a_study_and_its_report_of_a_users_task(package_root, tmp_path):
    """``optbench study run`` (local executor) runs every planned run of the user's task,
    selects in each cell and re-runs with the seed; ``optbench analyze`` reports it under the
    description's name, with its scaling table."""
    spec = study_spec(tmp_path, "waves-scaling")
    result = optbench(package_root, "study", "run", str(spec), f"out_dir={tmp_path / 'runs'}", "--max-parallel", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    runs = find_runs(tmp_path / "runs" / "waves-scaling")
    assert len(runs) == 12 and {RunStore(run).status() for run in runs} <= {"completed", "diverged"}
    report = optbench(package_root, "analyze", str(tmp_path / "runs" / "waves-scaling"), "--out",
                      str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr
    with open(tmp_path / "report" / "tables" / "scaling.csv") as handle:
        scaling = list(csv.DictReader(handle))
    assert {(row["task"], row["optimizer"], row["batch_size"]) for row in scaling} == \
        {("waves", optimizer, batch) for optimizer in ("adamw", "sgd") for batch in ("16", "64")}
    assert "waves" in (tmp_path / "report" / "index.html").read_text()


@pytest.mark.slow
def test_a_task_registered_by_entry_point_trains_and_joins_task_all(tmp_path):
    """A distribution on PYTHONPATH registering ``waves``: ``optbench train task=waves`` trains it,
    and a study's ``task: all`` includes it."""
    write_task_package(tmp_path)
    write_entry_point(tmp_path, "waves", "wavetask:task")
    result = optbench(tmp_path, "train", "task=waves", *RUN, f"out_dir={tmp_path / 'runs'}")
    assert result.returncode == 0 and result.stdout.startswith("completed: "), result.stdout + result.stderr
    (root,) = find_runs(tmp_path / "runs")
    assert RunStore(root).summary()["task"] == "waves"
    spec = tmp_path / "all.yaml"
    spec.write_text(yaml.safe_dump({"name": "all", "base": {"size": "tiny"}, "grid": {"task": "all"}}))
    planned = optbench(tmp_path, "study", "run", str(spec), f"out_dir={tmp_path / 'runs'}", "--dry-run")
    assert planned.returncode == 0, planned.stderr
    assert "4 cells" in planned.stdout and re.search(r"│ waves +│", planned.stdout), planned.stdout
