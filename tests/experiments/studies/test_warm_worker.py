"""The local executor's warm workers: real workers forking real runs (``probe.py`` reports what a
run starts from and does what careless or crashing runs do), compared with runs started as new
processes. Whole studies with and without warm workers are compared in ``test_run.py``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments.studies.executors import build_executor
from experiments.studies.local import LocalExecutor, available_cores
from experiments.studies.warm_worker import warm_module
from tests.experiments.support import REPO, TINY, subprocess_env

PROBE = [sys.executable, "-m", "tests.experiments.studies.probe"]


@pytest.fixture(autouse=True)
def repository_importable(monkeypatch) -> None:
    """The probe is a module of this repository: its runs import it from the working directory."""
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))


def run(commands: list[list[str]], log_dir: Path, *, warm: bool, max_parallel: int = 1) -> list[int]:
    executor = LocalExecutor(log_dir, max_parallel=max_parallel, warm=warm)
    try:
        return executor.run(commands, lambda index, code: None, labels=[f"run{i}" for i in range(len(commands))])
    finally:
        executor.close()


def lines(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def test_the_local_executor_is_warm_unless_told_otherwise(tmp_path) -> None:
    assert build_executor("local", tmp_path, options={}).warm is True
    assert build_executor("local", tmp_path, options={"warm": False}).warm is False


def test_module_commands_of_this_interpreter_are_the_warm_ones() -> None:
    assert warm_module([sys.executable, "-m", "experiments.cli", "train", "seed=1"]) == ("experiments.cli", ["train", "seed=1"])
    assert warm_module([sys.executable, "-c", "print(1)"]) is None
    assert warm_module(["/other/python", "-m", "experiments.cli"]) is None
    assert warm_module(["optbench", "train"]) is None


@pytest.mark.slow  # a worker's imports, and a new process's
def test_each_warm_run_starts_from_the_state_of_a_new_process_whatever_earlier_runs_leaked(tmp_path) -> None:
    leaky = [*PROBE, "state", "leak"]
    assert run([leaky, leaky, [*PROBE, "state"]], tmp_path / "warm", warm=True) == [0, 0, 0]
    assert run([[*PROBE, "state"]], tmp_path / "cold", warm=False) == [0]
    (cold,) = lines(tmp_path / "cold" / "run0.log")
    assert cold["ppid"] == os.getpid()  # a new process of this one
    assert cold["state"]["name"] == "__main__" and cold["state"]["argv"] == ["state"]
    seeds = {cold["state"].pop("seed")}  # torch's unseeded generator: random in each new process
    for index in range(3):
        warm = lines(tmp_path / "warm" / f"run{index}.log")
        assert warm[0]["ppid"] != os.getpid()  # a child of the warm worker
        seeds.add(warm[0]["state"].pop("seed"))
        assert warm[0]["state"] == {**cold["state"], "argv": warm[0]["state"]["argv"]}
        if index < 2:  # the leak took hold in that run's own process
            leaked = warm[1]["leaked"]
            assert leaked["dtype"] == "torch.float64" and leaked["threads"] == 3 and leaked["pl_seed"] == "123"
            assert leaked["filters"] != cold["state"]["filters"] and leaked["leaked_module"]
    assert len(seeds) == 4  # and in each warm run, not the worker's copy
    assert len({lines(tmp_path / "warm" / f"run{i}.log")[0]["ppid"] for i in range(3)}) == 1  # one worker


@pytest.mark.slow  # a worker's imports, and a new process's
def test_warm_runs_get_the_executors_share_of_the_cores(tmp_path) -> None:
    assert run([[*PROBE, "state"]] * 2, tmp_path, warm=True, max_parallel=2) == [0, 0]
    threads = max(1, available_cores() // 2)
    for index in range(2):
        state = lines(tmp_path / f"run{index}.log")[0]["state"]
        assert state["omp"] == str(threads) and state["threads"] == threads


@pytest.mark.slow  # a worker's imports, and a new process's
def test_a_kill_9_of_one_warm_run_ends_that_run_only(tmp_path) -> None:
    pid_file = tmp_path / "pid"
    commands = [[*PROBE, "sleep-pid", str(pid_file)], [*PROBE, "kill-pid", str(pid_file)], [*PROBE, "kill"],
                [*PROBE, "exit", "3"], [*PROBE, "state"]]
    assert run(commands, tmp_path, warm=True, max_parallel=2) == [-signal.SIGKILL, 0, -signal.SIGKILL, 3, 0]
    assert lines(tmp_path / "run4.log")[0]["ppid"] != os.getpid()  # the same warm worker went on


@pytest.mark.slow  # a worker's imports, and a new process's
def test_runs_of_a_dead_warm_worker_end_as_killed_and_the_next_runs_get_a_new_worker(tmp_path) -> None:
    pid_file = tmp_path / "pid"
    commands = [[*PROBE, "state", "sleep-pid", str(pid_file)], [*PROBE, "state", "kill-parent"],
                [*PROBE, "state"]]
    codes = run(commands, tmp_path, warm=True, max_parallel=2)
    assert codes == [-signal.SIGKILL, -signal.SIGKILL, 0]  # the worker's runs die with it
    first, second = (lines(tmp_path / f"run{i}.log")[0]["ppid"] for i in (0, 2))
    assert first != second and second != os.getpid()
    assert not _alive(int(pid_file.read_text()))


@pytest.mark.slow  # a worker's imports, and a new process's
def test_the_log_holds_the_runs_output_and_an_uncaught_error(tmp_path) -> None:
    assert run([[*PROBE, "no-such-action"]], tmp_path, warm=True) == [1]
    assert (tmp_path / "run0.log").read_text() == "probe: unknown action 'no-such-action'\n"


# Runs two sleeping probes through a warm executor and says how the executor's run ended.
CTRL_C_PROGRAM = """
import sys
from pathlib import Path
from experiments.studies.local import LocalExecutor
probe, logs = [sys.executable, "-m", "tests.experiments.studies.probe"], Path(sys.argv[1])
try:
    LocalExecutor(logs, max_parallel=2, warm=True).run(
        [[*probe, "sleep-pid", str(logs / f"pid{i}")] for i in range(2)], lambda index, code: None,
        labels=["run0", "run1"])
except KeyboardInterrupt:
    print("interrupted")
"""


@pytest.mark.slow  # a worker's imports
def test_ctrl_c_on_the_terminal_reaches_the_warm_runs_and_ends_the_study(tmp_path) -> None:
    """A terminal sends SIGINT to its whole foreground process group: the warm worker ignores
    it, its children stop with ``KeyboardInterrupt`` as a new process would, and the executor,
    interrupted too, ends with nothing left running."""
    study = subprocess.Popen([sys.executable, "-c", CTRL_C_PROGRAM, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                             cwd=REPO, env=subprocess_env(), start_new_session=True)
    pid_files = [tmp_path / f"pid{i}" for i in range(2)]
    deadline = time.monotonic() + 120
    while not all(p.is_file() and p.read_text() for p in pid_files):
        assert time.monotonic() < deadline and study.poll() is None, "the runs did not start"
        time.sleep(0.05)
    os.killpg(study.pid, signal.SIGINT)
    assert study.communicate(timeout=60)[0] == "interrupted\n"
    for index, pid_file in enumerate(pid_files):
        assert (tmp_path / f"run{index}.log").read_text().endswith("KeyboardInterrupt\n")
        assert not _alive(int(pid_file.read_text()))
    assert _group_gone(study.pid, timeout_s=10)  # the worker too, and everything else of the group


def _group_gone(pgid: int, timeout_s: float) -> bool:
    """Whether process group ``pgid`` has no process left within ``timeout_s`` (an orphan's
    reaping by init takes a moment)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.slow
def test_a_warm_run_that_launches_ddp_processes_logs_what_a_new_process_logs(tmp_path) -> None:
    """Lightning's DDP launcher starts the other rank with the command of ``__main__``: from a
    warm worker's child that is the run's own command, and the two ranks train as from a new
    process."""
    ddp = ["task=lm", "size=tiny", "trainer.max_steps=20", "trainer.val_every_n_steps=10", "trainer.log_every_n_steps=10",
           "trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp", "data.batch_size=16"]
    logged = {}
    for warm in (True, False):
        command = [sys.executable, "-m", "experiments.cli", "train", *ddp, f"out_dir={tmp_path / str(warm)}"]
        assert run([command], tmp_path / f"logs-{warm}", warm=warm) == [0]
        (metrics,) = (tmp_path / str(warm)).glob("default/*/metrics.jsonl")
        logged[warm] = [{k: v for k, v in json.loads(line).items() if k not in ("wall_time", "throughput")}
                        for line in metrics.read_text().splitlines()]
    assert logged[True] == logged[False] and [row["step"] for row in logged[True]] == [10, 10, 20, 20]


@pytest.mark.slow  # a new process's imports and a tiny run
def test_a_run_imports_none_of_what_it_does_not_use(tmp_path, monkeypatch) -> None:
    """What a warm worker preloads and a tiny run then imports leaves out wandb (with the default
    logger.wandb=disabled), pandas, scikit-learn (the digits come from the cache) and the analysis."""
    from experiments.data.images import sklearn_digits

    monkeypatch.setenv("OPTBENCH_CACHE", str(tmp_path / "cache"))
    sklearn_digits()  # fills the cache
    program = ("import sys; from experiments.cli import main; "
               f"code = main(['train', *{TINY!r}, 'trainer.max_steps=2', 'out_dir={tmp_path / 'runs'}']); "
               "print(code, sorted(m for m in ('wandb', 'pandas', 'sklearn', 'analysis') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300, cwd=REPO,
                            env={**subprocess_env(), "OPTBENCH_CACHE": str(tmp_path / "cache")})
    assert result.stdout.splitlines()[-1] == "0 []", result.stdout + result.stderr
