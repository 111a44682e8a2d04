"""The run store: its torch-free reader, the run lock and its heartbeat, resume checkpoints, and
what real ``optbench train`` processes do with them (refuse a live run, take over a dead one)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments import store as store_module
from experiments.store import (
    EXIT_LOCKED, EXIT_SIGINT, EXIT_SIGTERM, STATUSES, RunLock, RunLockedError, RunStore, StoreError, find_runs,
)
from tests.experiments.support import REPO, TINY, optbench_command, subprocess_env


def make_run(root: Path, summary: dict | None = None) -> RunStore:
    root.mkdir(parents=True)
    (root / "config.yaml").write_text("task: vision\noptimizer:\n  name: sgd\n  lr: 0.1\n")
    if summary is not None:
        (root / "summary.json").write_text(json.dumps(summary))
    return RunStore(root)


def test_store_module_imports_no_torch():
    """Studies and analysis read the store without loading torch or Lightning."""
    code = "import sys, experiments.store; assert not {'torch', 'pytorch_lightning'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env=subprocess_env())


def test_find_runs_at_any_depth_without_set_aside_runs_or_wandb_folders(tmp_path):
    """Every directory holding config.yaml is a run, however deep; runs replaced by --force,
    wandb's own config.yaml files and the run's subfolders are not."""
    expected = [tmp_path / "a" / "study" / "run1", tmp_path / "b" / "run2", tmp_path / "run3"]
    for root in expected:
        make_run(root)
    make_run(tmp_path / "b" / "run2.replaced-20260101-000000")
    (tmp_path / "run3" / "wandb" / "offline-run-x" / "files").mkdir(parents=True)
    (tmp_path / "run3" / "wandb" / "offline-run-x" / "files" / "config.yaml").write_text("{}")
    (tmp_path / "wandb" / "run-y" / "files").mkdir(parents=True)
    (tmp_path / "wandb" / "run-y" / "files" / "config.yaml").write_text("{}")
    assert find_runs(tmp_path) == sorted(expected)
    assert find_runs(tmp_path / "run3") == [tmp_path / "run3"]
    assert len(find_runs(tmp_path, include_replaced=True)) == 4


def test_reader_gives_config_summary_and_identity(tmp_path):
    """config.yaml comes back as plain data; run_id and study are the directory names."""
    run = make_run(tmp_path / "my-study" / "abc123", summary={"status": "completed"})
    assert run.config() == {"task": "vision", "optimizer": {"name": "sgd", "lr": 0.1}}
    assert (run.run_id, run.study, run.status(), run.is_finished()) == ("abc123", "my-study", "completed", True)


def test_rows_skip_a_torn_last_line_and_name_a_corrupt_file(tmp_path):
    """A killed writer may leave half a last line: it is dropped. A bad line elsewhere is an
    error naming the file and line."""
    run = make_run(tmp_path / "run")
    (tmp_path / "run" / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "lo')
    assert [row["step"] for row in run.rows()] == [1, 2]
    (tmp_path / "run" / "metrics.jsonl").write_text('{"step": 1}\nnot json\n{"step": 3}\n')
    with pytest.raises(StoreError, match=r"metrics\.jsonl: line 2 is not JSON"):
        list(run.rows())
    (tmp_path / "run" / "summary.json").write_text('{"status": "comp')
    with pytest.raises(StoreError, match=r"cannot read .*summary\.json"):
        run.summary()


def test_finish_records_only_a_status_summary_json_may_hold(tmp_path):
    """summary.json says how a run ended, one of STATUSES: running and incomplete are what a
    reader makes of a run without one, never written."""
    run = RunStore(tmp_path / "run")
    run.root.mkdir()
    for status in ("running", "incomplete", None):
        with pytest.raises(ValueError, match=rf"invalid run status {status!r} \(valid: completed, diverged, failed, "
                                             r"interrupted\)"):
            run.finish({"status": status})
    assert not run.summary_path.exists()
    for status in STATUSES:
        assert run.finish({"status": status}) == {"status": status, "store_format": store_module.FORMAT_VERSION}
        assert run.status() == status


@pytest.mark.parametrize("signum, code, number", [(signal.SIGINT, EXIT_SIGINT, 130), (signal.SIGTERM, EXIT_SIGTERM, 143)])
def test_an_interrupted_run_exits_with_the_stores_code(signum, code, number):
    """The code an interrupted `optbench train` exits with (``Interrupted.exit_code``) is the
    one the store names for executors and job scripts: 128 + the signal, as shells report it."""
    from experiments.callbacks.interrupt import Interrupted

    assert Interrupted(signum).exit_code == code == number


def test_begin_counts_attempts(tmp_path):
    """Each start of a run adds to meta.json; attempts() counts them (the studies' retry cap)."""
    run = RunStore(tmp_path / "run")
    assert run.attempts() == 0
    run.begin("task: vision\n", {"host": "a"}, resume=False)
    run.begin("task: vision\n", {"host": "b"}, resume=True)
    run.begin("task: vision\n", {"host": "c"}, resume=False)
    assert run.attempts() == 3
    assert [r["resumed"] for r in run.meta()["restarts"]] == [True, False]


def test_resume_checkpoint_is_the_newest(tmp_path):
    """After a SLURM requeue Lightning leaves hpc_ckpt_*.ckpt beside last.ckpt: the newest wins."""
    run = make_run(tmp_path / "run")
    assert run.resume_checkpoint() is None
    run.checkpoints.mkdir()
    last, hpc = run.checkpoints / "last.ckpt", tmp_path / "run" / "hpc_ckpt_1.ckpt"
    last.write_bytes(b"x")
    assert run.resume_checkpoint() == last
    hpc.write_bytes(b"x")
    os.utime(last, ns=(1_000_000_000, 1_000_000_000))
    assert run.resume_checkpoint() == hpc
    os.utime(hpc, ns=(500_000_000, 500_000_000))
    assert run.resume_checkpoint() == last


# -- the lock --------------------------------------------------------------------------------------

def write_lock(root: Path, **record) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "lock.json").write_text(json.dumps({"token": "other", "heartbeat": time.time(), **record}))


def test_lock_is_held_until_released(tmp_path):
    """A held lock names this process; the run reads as running; a second taker is refused
    with a message naming the holder; release removes it."""
    run = make_run(tmp_path / "run", summary={"status": "failed"})
    run.lock.acquire()
    try:
        record = json.loads((tmp_path / "run" / "lock.json").read_text())
        assert (record["pid"], record["host"]) == (os.getpid(), socket.gethostname())
        assert run.status() == "running"
        with pytest.raises(RunLockedError, match=rf"being trained by process {os.getpid()} on "):
            RunLock(tmp_path / "run").acquire()
    finally:
        run.lock.release()
    assert not (tmp_path / "run" / "lock.json").exists()
    assert run.status() == "failed"


def test_lock_of_a_dead_process_is_taken_over(tmp_path):
    """On this host a lock whose pid is gone (kill -9) is stale at once, however fresh."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    write_lock(tmp_path / "run", host=socket.gethostname(), pid=dead.pid, pid_start="1")
    lock = RunLock(tmp_path / "run")
    assert lock.holder() is None
    lock.acquire()
    assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    lock.release()


def test_lock_of_a_killed_unreaped_process_is_taken_over(tmp_path):
    """A process killed but not yet reaped (a zombie: its /proc entry stays until its parent
    waits) holds nothing: a study re-run right after kill -9 trains the run at once."""
    child = subprocess.Popen(["sleep", "60"])
    write_lock(tmp_path / "run", host=socket.gethostname(), pid=child.pid,
               pid_start=store_module._process_start(child.pid))
    assert RunLock(tmp_path / "run").holder() is not None
    child.kill()
    deadline = time.time() + 5
    while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z" and time.time() < deadline:
        time.sleep(0.01)
    try:
        assert RunLock(tmp_path / "run").holder() is None
    finally:
        child.wait()


def test_lock_of_a_reused_pid_is_taken_over(tmp_path):
    """A live pid that started at another time is another process: the lock is stale."""
    write_lock(tmp_path / "run", host=socket.gethostname(), pid=os.getpid(), pid_start="0")
    assert RunLock(tmp_path / "run").holder() is None


@pytest.mark.parametrize("age, taken_over", [(1.0, False), (10 * store_module.STALE_AFTER_SECONDS, True)])
def test_lock_from_another_host_lives_by_its_heartbeat(tmp_path, age, taken_over):
    """A lock written on another host (shared file system) is live while its heartbeat is fresh."""
    write_lock(tmp_path / "run", host="another-node", pid=1, heartbeat=time.time() - age)
    lock = RunLock(tmp_path / "run")
    if taken_over:
        lock.acquire()
        lock.release()
    else:
        with pytest.raises(RunLockedError, match=r"process 1 on another-node \(heartbeat 1 s ago\)"):
            lock.acquire()


def test_heartbeat_refreshes_the_lock(tmp_path, monkeypatch):
    """While held, the lock's heartbeat moves forward."""
    monkeypatch.setattr(store_module, "HEARTBEAT_SECONDS", 0.05)
    lock = RunLock(tmp_path / "run")
    lock.acquire()
    try:
        first = json.loads(lock.path.read_text())["heartbeat"]
        deadline = time.time() + 5
        while json.loads(lock.path.read_text())["heartbeat"] == first and time.time() < deadline:
            time.sleep(0.05)
        assert json.loads(lock.path.read_text())["heartbeat"] > first
    finally:
        lock.release()


# -- real processes --------------------------------------------------------------------------------

def optbench(*args: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([*optbench_command(), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, env=env or subprocess_env())


@pytest.mark.slow
def test_second_process_refuses_a_live_run_and_takes_over_a_killed_one(tmp_path):
    """Two executors on one run: the second exits 75 with one line naming the live holder; after
    kill -9 of the first, the same command takes the run over and completes it."""
    args = ["train", *TINY, f"out_dir={tmp_path}", "trainer.max_steps=400"]
    first = subprocess.Popen([*optbench_command(), *args], cwd=REPO, env=subprocess_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while not list(tmp_path.glob("default/*/lock.json")) and time.time() < deadline:
            time.sleep(0.1)
        second = optbench(*args)
        assert second.returncode == EXIT_LOCKED, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and f"being trained by process {first.pid}" in lines[0], second.stderr
        assert first.poll() is None, "the first run ended before the second was refused: raise max_steps"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    third = optbench(*args)
    assert third.returncode == 0, third.stderr
    (root,) = tmp_path.glob("default/*")
    summary = json.loads((root / "summary.json").read_text())
    assert (summary["status"], summary["global_step"]) == ("completed", 400)
    assert not (root / "lock.json").exists()


@pytest.mark.slow
def test_rank_comes_from_the_trainer_not_from_slurm_variables(tmp_path):
    """A one-device run started with SLURM_PROCID=1 (srun -n 2, a multi-task submitit job) is
    its own global rank 0: it writes its run and reports it."""
    env = {**subprocess_env(), "SLURM_PROCID": "1"}
    result = optbench("train", *TINY, f"out_dir={tmp_path}", "trainer.max_steps=5", env=env)
    assert result.returncode == 0, result.stderr
    (root,) = tmp_path.glob("default/*")
    assert json.loads((root / "summary.json").read_text())["status"] == "completed"
