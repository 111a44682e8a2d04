"""The SLURM executor against a real one-node cluster (the ``slurm_cluster`` fixture): exit codes
of a job array, a cancelled task, and a requeued task that runs its command again."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from experiments.store import RunStore, find_runs
from experiments.studies.slurm import NO_EXIT_CODE, SlurmExecutor
from tests.experiments.support import REPO, optbench_command, subprocess_env
from tests.slurm_cluster import CRED_EXPIRE_S

DEADLINE_S = 60

# The requeue probe: records each start (with its job id: array_task for an array task, as
# scancel, scontrol and sacct take it) in the marker file; the first start
# waits for SIGTERM and records who sent it (its parent, the task's submitit process, or SLURM);
# a later start exits 0 at once.
REQUEUE_PROBE = """
import os, signal, sys
marker = sys.argv[1]
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
starts = open(marker).read().count("start") if os.path.exists(marker) else 0
array = os.environ.get("SLURM_ARRAY_JOB_ID")
job = f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array else os.environ["SLURM_JOB_ID"]
with open(marker, "a") as out:
    out.write(f"start {job}\\n")
if starts:
    sys.exit(0)
info = signal.sigtimedwait({signal.SIGTERM}, 300)
with open(marker, "a") as out:
    out.write("sigterm from " + ("parent" if info and info.si_pid == os.getppid() else "slurm") + "\\n")
sys.exit(1)
"""


def python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


def wait_for_start(marker: Path) -> str:
    """The job id the probe wrote on its first start (waits for it)."""
    deadline = time.monotonic() + DEADLINE_S
    while not (marker.is_file() and marker.read_text().endswith("\n")):
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.2)
    return marker.read_text().split()[1]


class Background:
    """``executor.run`` in a daemon thread, so that the test can act on the running job meanwhile
    (and a test that fails never leaves pytest waiting on the thread at exit)."""

    def __init__(self, executor: SlurmExecutor, commands: list[list[str]]) -> None:
        self.done: list[tuple[int, int]] = []
        self.codes: list[int] | None = None
        self.thread = threading.Thread(target=self._run, args=(executor, commands), daemon=True)
        self.thread.start()

    def _run(self, executor: SlurmExecutor, commands: list[list[str]]) -> None:
        self.codes = executor.run(commands, lambda index, code: self.done.append((index, code)))

    def result(self, timeout: float) -> list[int] | None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"run() did not return within {timeout:.0f} s"
        return self.codes


@pytest.mark.parametrize("bad, message", [
    ({"tiem": 5}, "unknown slurm executor option(s) tiem (valid: "),
    ({"max_parallel": 2, "gpus": 1, "mem": "1G"}, "unknown slurm executor option(s) gpus (valid: "),
])
def test_unknown_options_are_one_line_errors(tmp_path: Path, bad: dict, message: str) -> None:
    with pytest.raises(ValueError) as error:
        SlurmExecutor(tmp_path, options=bad)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)
    assert "max_parallel" in str(error.value) and "partition" in str(error.value)


def test_no_sbatch_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ValueError, match=r"^the slurm executor needs SLURM's sbatch on PATH; it is not found"):
        SlurmExecutor(tmp_path, options={})


@pytest.mark.slow
def test_array_returns_each_commands_exit_code(slurm_cluster, tmp_path: Path) -> None:
    executor = SlurmExecutor(tmp_path / "logs", options={"max_parallel": 2, "time": 5})
    commands = [python(f"import sys; print('task {code}'); sys.exit({code})") for code in (0, 0, 3)]
    done: list[tuple[int, int]] = []
    start = time.monotonic()
    codes = executor.run(commands, lambda index, code: done.append((index, code)), labels=["a", "b", "c"])
    assert codes == [0, 0, 3]
    assert sorted(done) == [(0, 0), (1, 0), (2, 3)]
    assert (tmp_path / "logs" / "c.log").read_text() == "task 3\n"
    assert time.monotonic() - start < DEADLINE_S


@pytest.mark.slow
def test_cancelled_task_reports_no_exit_code_without_hanging(slurm_cluster, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    background = Background(SlurmExecutor(tmp_path / "logs", options={}), [python(REQUEUE_PROBE, str(marker))])
    job_id = wait_for_start(marker)
    cancelled = time.monotonic()
    slurm_cluster.command("scancel", job_id)
    assert background.result(timeout=DEADLINE_S) == [NO_EXIT_CODE]
    assert background.done == [(0, NO_EXIT_CODE)]
    assert time.monotonic() - cancelled < 20  # sacct's answer, without submitit's wait for a result file


@pytest.mark.slow
def test_interrupted_wait_cancels_the_unfinished_tasks(slurm_cluster, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    first_done = python("import os, sys, time\nwhile not os.path.exists(sys.argv[1]): time.sleep(0.1)", str(marker))

    def interrupt(index: int, code: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        SlurmExecutor(tmp_path / "logs", options={}).run([first_done, python(REQUEUE_PROBE, str(marker))], interrupt)
    job_id = marker.read_text().split()[1]
    deadline = time.monotonic() + DEADLINE_S
    while slurm_cluster.command("sacct", "-n", "-X", "-P", "-o", "State", "-j", job_id).split()[:1] != ["CANCELLED"]:
        assert time.monotonic() < deadline, "the unfinished task was not cancelled"
        time.sleep(0.5)
    assert marker.read_text().splitlines() == [f"start {job_id}", "sigterm from slurm"]  # its command was stopped


@pytest.mark.slow
@pytest.mark.parametrize("interrupt, sender", [
    # preemption, or the time limit near: submitit checkpoints, which stops the command, and requeues
    (["scancel", "--signal=USR2"], "parent"),
    (["scontrol", "requeue"], "slurm"),  # SLURM stops the job and requeues it itself
], ids=["preempt-signal", "scontrol-requeue"])
def test_requeued_task_runs_its_command_again(slurm_cluster, tmp_path: Path, interrupt: list[str],
                                              sender: str) -> None:
    marker = tmp_path / "marker"
    background = Background(SlurmExecutor(tmp_path / "logs", options={}), [python(REQUEUE_PROBE, str(marker))])
    job_id = wait_for_start(marker)
    slurm_cluster.command(*interrupt, job_id)
    assert background.result(timeout=DEADLINE_S + CRED_EXPIRE_S) == [0]
    assert background.done == [(0, 0)]
    # the command got SIGTERM from the expected sender, and the second start is the same job, requeued
    assert marker.read_text().splitlines() == [f"start {job_id}", f"sigterm from {sender}", f"start {job_id}"]


@pytest.mark.slow
def test_a_study_runs_on_slurm_as_it_runs_locally(slurm_cluster, tmp_path: Path) -> None:
    """``optbench study run --executor slurm``: the same study as ``test_run``'s, each run an
    array task on the cluster; it plans the same search runs (same run_ids) as the local
    executor, every planned run finishes, and a second invocation has nothing left to run."""
    from tests.experiments.studies.test_run import SPEC, spec_file, study, status_json

    spec_path = spec_file(tmp_path)
    result = study(spec_path, tmp_path / "out", "--executor", "slurm", "--max-parallel", "2",
                   "--executor-options", "time=10", "cpus_per_task=1")
    assert result.returncode == 0, result.stdout + result.stderr
    status = status_json(tmp_path / "out" / SPEC["name"])
    assert {run["status"] for run in status["runs"]} <= {"completed", "diverged"}
    planned = subprocess.run([*optbench_command(), "study", "run", str(spec_path), f"out_dir={tmp_path / 'local'}",
                              "--dry-run"], capture_output=True, text=True, timeout=120, cwd=REPO,
                             env=subprocess_env())
    search = {run["run_id"] for run in status["runs"] if run["phase"] == "search"}
    assert len(search) == 4 and all(run_id in planned.stdout for run_id in search)
    assert len(list((tmp_path / "out" / SPEC["name"] / "logs").glob("*.log"))) >= 4
    again = study(spec_path, tmp_path / "out", "--executor", "slurm")
    assert again.returncode == 0 and "search: 4 runs, 4 finished, 0 to run" in again.stdout, again.stdout


@pytest.mark.slow
def test_a_study_of_a_users_task_runs_on_slurm(slurm_cluster, tmp_path: Path) -> None:
    """A user's task from a package on PYTHONPATH (``task=package.module:name``): each run, an
    array task on the cluster, finds it in its own process and finishes; the runs are those the
    local executor plans."""
    from tests.experiments.outside_task import env_with, write_task_package
    from tests.experiments.test_outside_tasks import study_spec

    write_task_package(tmp_path / "outside")
    spec = study_spec(tmp_path, "waves-slurm")
    env = env_with(tmp_path / "outside")

    def study(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*optbench_command(), "study", "run", str(spec), *args], capture_output=True,
                              text=True, timeout=600, cwd=REPO, env=env)

    result = study(f"out_dir={tmp_path / 'out'}", "--executor", "slurm", "--max-parallel", "2",
                   "--executor-options", "time=10", "cpus_per_task=1")
    assert result.returncode == 0, result.stdout + result.stderr
    runs = find_runs(tmp_path / "out" / "waves-slurm")
    assert len(runs) == 12 and {RunStore(run).status() for run in runs} <= {"completed", "diverged"}
    assert {RunStore(run).summary()["task"] for run in runs} == {"waves"}
    planned = study(f"out_dir={tmp_path / 'local'}", "--dry-run")
    search = [run.name for run in runs if RunStore(run).config()["seed"] == 0]
    assert len(search) == 8 and all(run_id in planned.stdout for run_id in search)
