"""The SLURM executor against a real one-node cluster (the ``slurm_cluster`` fixture): exit codes
of a job array, a cancelled task, and a requeued task that runs its command again."""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from experiments.studies.slurm import NO_EXIT_CODE, SlurmExecutor
from tests.slurm_cluster import CRED_EXPIRE_S

DEADLINE_S = 60

# The requeue probe: records each start (with its job id) in the marker file; the first start
# waits to be stopped and records the SIGTERM it gets; a later start exits 0 at once.
REQUEUE_PROBE = """
import os, signal, sys, time
marker = sys.argv[1]
def stopped(signum, frame):
    with open(marker, "a") as out:
        out.write("sigterm\\n")
    sys.exit(1)
signal.signal(signal.SIGTERM, stopped)
starts = open(marker).read().count("start") if os.path.exists(marker) else 0
with open(marker, "a") as out:
    out.write(f"start {os.environ['SLURM_JOB_ID']}\\n")
if starts:
    sys.exit(0)
time.sleep(300)
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


def run_in_background(executor: SlurmExecutor, commands: list[list[str]]) -> tuple[Future, list]:
    """``executor.run`` in a thread, so that the test can act on the running job meanwhile."""
    done: list[tuple[int, int]] = []
    pool = ThreadPoolExecutor(1)
    future = pool.submit(executor.run, commands, lambda index, code: done.append((index, code)))
    pool.shutdown(wait=False)
    return future, done


@pytest.mark.parametrize("bad, message", [
    ({"tiem": 5}, "unknown slurm executor option(s) tiem (valid: "),
    ({"max_parallel": 2, "gpus": 1, "mem": "1G"}, "unknown slurm executor option(s) gpus (valid: "),
])
def test_unknown_options_are_one_line_errors(tmp_path: Path, bad: dict, message: str) -> None:
    if subprocess.run(["which", "sbatch"], capture_output=True).returncode:
        pytest.skip("sbatch is checked first; this machine has none")
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
    future, done = run_in_background(SlurmExecutor(tmp_path / "logs", options={}),
                                     [python(REQUEUE_PROBE, str(marker))])
    job_id = wait_for_start(marker)
    cancelled = time.monotonic()
    slurm_cluster.command("scancel", job_id)
    assert future.result(timeout=DEADLINE_S) == [NO_EXIT_CODE]
    assert done == [(0, NO_EXIT_CODE)]
    assert time.monotonic() - cancelled < 20  # sacct's answer, without submitit's wait for a result file


@pytest.mark.slow
@pytest.mark.parametrize("interrupt", [
    ["scancel", "--signal=USR2"],  # preemption / near the time limit: submitit checkpoints and requeues
    ["scontrol", "requeue"],  # SLURM requeues the job itself
], ids=["preempt-signal", "scontrol-requeue"])
def test_requeued_task_runs_its_command_again(slurm_cluster, tmp_path: Path, interrupt: list[str]) -> None:
    marker = tmp_path / "marker"
    future, done = run_in_background(SlurmExecutor(tmp_path / "logs", options={}),
                                     [python(REQUEUE_PROBE, str(marker))])
    job_id = wait_for_start(marker)
    slurm_cluster.command(*interrupt, job_id)
    assert future.result(timeout=DEADLINE_S + CRED_EXPIRE_S) == [0]
    assert done == [(0, 0)]
    # the child got SIGTERM, and the second start is the same job, requeued
    assert marker.read_text().splitlines() == [f"start {job_id}", "sigterm", f"start {job_id}"]
