"""``optbench study run`` and ``status`` end to end: real ``optbench train`` processes of tiny
runs (forked by a warm worker unless ``warm=false``), a ``kill -9`` and a SIGTERM of a running
study and its resume, the same results with and without warm workers, the local executor's
process isolation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from experiments.cli import main
from experiments.store import RunStore, find_runs
from experiments.studies.local import LocalExecutor
from tests.experiments.support import REPO, optbench_command, subprocess_env

# Two cells (adamw, sgd) x two learning rates, then one more seed at each cell's selected point.
SPEC = {
    "name": "e2e",
    "base": {"task": "vision", "size": "tiny", "target": 0.15, "schedule": {"name": "constant"},
             "trainer": {"max_steps": 30, "val_every_n_steps": 10, "log_every_n_steps": 10, "stop_at_target": True}},
    "grid": {"optimizer.name": ["adamw", "sgd"]},
    "search": {"space": {"optimizer.lr": {"log_range": [0.003, 0.03], "points": 2}}},
    "seeds": [1],
}
DEADLINE_S = 400
PARALLEL = ("--max-parallel", "2")  # the same in every study compared: it sets each run's torch threads
COMPARED = ("status", "steps_to_target", "global_step", "best", "seed", "lr")


def study(spec_path: Path, out_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*optbench_command(), "study", "run", str(spec_path), f"out_dir={out_dir}", *args],
                          capture_output=True, text=True, timeout=DEADLINE_S, cwd=REPO, env=subprocess_env())


def status_json(study_dir: Path) -> dict:
    result = subprocess.run([*optbench_command(), "study", "status", str(study_dir), "--json"], capture_output=True,
                            text=True, timeout=120, cwd=REPO, env=subprocess_env())
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def results(study_dir: Path) -> dict[str, dict]:
    return {root.name: {key: RunStore(root).summary()[key] for key in COMPARED} for root in find_runs(study_dir)}


def spec_file(directory: Path) -> Path:
    """SPEC written to ``directory``/e2e.yaml."""
    path = directory / "e2e.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    return path


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory) -> Path:
    return spec_file(tmp_path_factory.mktemp("spec"))


@pytest.fixture(scope="module")
def finished_study(spec_path, tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    out_dir = tmp_path_factory.mktemp("uninterrupted")
    return study(spec_path, out_dir, *PARALLEL), out_dir / "e2e"


def test_dry_run_lists_the_runs_and_writes_nothing(spec_path, tmp_path, capsys) -> None:
    assert main(["study", "run", str(spec_path), f"out_dir={tmp_path / 'out'}", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "study e2e: 2 cells, 4 search runs (0 finished, 4 to run), then up to 1 seed runs per cell" in out
    assert out.count("│ search │ to run │") == 4 and "seed runs of 2 cells follow their search" in out
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_study_runs_search_then_seeds_and_is_a_no_op_when_run_again(finished_study, spec_path) -> None:
    result, study_dir = finished_study
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.index("search: 4 runs") < result.stdout.index("cell optimizer.name=adamw")
    status = status_json(study_dir)
    assert {run["status"] for run in status["runs"]} <= {"completed", "diverged"}
    search = [run for run in status["runs"] if run["phase"] == "search"]
    assert sorted((run["optimizer.name"], run["optimizer.lr"]) for run in search) == [
        ("adamw", 0.003), ("adamw", 0.03), ("sgd", 0.003), ("sgd", 0.03)]
    for cell in status["cells"]:  # each selected point has its seed run, with the point's values
        if cell["state"] == "selected":
            (seed_run,) = [r for r in status["runs"] if r["phase"] == "seeds"
                           and r["optimizer.name"] == cell["cell"]["optimizer.name"]]
            assert seed_run["seed"] == 1 and seed_run["optimizer.lr"] == cell["point"]["optimizer.lr"]
    assert len(status["runs"]) == 4 + sum(cell["state"] == "selected" for cell in status["cells"])
    again = study(spec_path, study_dir.parent)
    assert again.returncode == 0 and "search: 4 runs, 4 finished, 0 to run" in again.stdout
    # a run of the study trained by hand is the same run: already finished
    trial = next(run for run in status["runs"] if run["phase"] == "search")
    by_hand = subprocess.run([*optbench_command(), "train", *_typed(trial, study_dir)], capture_output=True,
                             text=True, timeout=DEADLINE_S, cwd=REPO, env=subprocess_env())
    assert by_hand.returncode == 0 and by_hand.stdout.startswith(f"already {trial['status']}"), by_hand.stdout


def _typed(run: dict, study_dir: Path) -> list[str]:
    """The ``optbench train`` arguments a user types for ``run`` of the SPEC study."""
    return [f"out_dir={study_dir.parent}", "study=e2e", "task=vision", "size=tiny", "target=0.15",
            "schedule.name=constant", "trainer.max_steps=30", "trainer.val_every_n_steps=10",
            "trainer.log_every_n_steps=10", "trainer.stop_at_target=true",
            f"optimizer.name={run['optimizer.name']}", f"optimizer.lr={run['optimizer.lr']}"]


def _stopped_while_training(run: Path) -> bool:
    """SIGSTOP the process training ``run`` (its lock's holder), so that it cannot finish before
    the study is killed; True if it was stopped unfinished, else (it ended meanwhile) False, with
    the process let go on."""
    holder = RunStore(run).lock.holder()
    if holder is None:
        return False
    try:
        os.kill(holder["pid"], signal.SIGSTOP)
    except ProcessLookupError:
        return False
    if RunStore(run).is_finished():
        try:
            os.kill(holder["pid"], signal.SIGCONT)
        except ProcessLookupError:
            pass
        return False
    return True


@pytest.mark.slow
def test_kill_9_of_a_running_study_then_resume_ends_as_the_uninterrupted_study(finished_study, spec_path,
                                                                              tmp_path) -> None:
    _, reference = finished_study
    process = subprocess.Popen([*optbench_command(), "study", "run", str(spec_path), f"out_dir={tmp_path}", *PARALLEL],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO, env=subprocess_env())
    study_dir = tmp_path / "e2e"
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:  # kill once one run has finished and the next is training
        runs = find_runs(study_dir) if study_dir.exists() else []
        finished = [r for r in runs if RunStore(r).is_finished()]
        training = [r for r in runs if not RunStore(r).is_finished() and any(RunStore(r).rows())]
        if finished and training and _stopped_while_training(training[0]):
            break
        time.sleep(0.2)
    else:
        pytest.fail("the study never got to its second run")
    os.kill(process.pid, signal.SIGKILL)  # the stopped run dies with the study, unfinished
    process.wait()
    # its run dies with it (a zombie until the system reaps it, which the lock counts as alive)
    assert wait_until(lambda: all(RunStore(r).status() != "running" for r in find_runs(study_dir)), 20)
    assert RunStore(training[0]).summary() is None
    resumed = study(spec_path, tmp_path, *PARALLEL)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert results(study_dir) == results(reference)
    assert RunStore(training[0]).attempts() == 2  # resumed, not trained from scratch in a new directory


@pytest.mark.slow
def test_sigterm_of_a_study_interrupts_its_runs_which_then_resume(finished_study, spec_path, tmp_path) -> None:
    """A scheduler's SIGTERM to the study reaches its (warm) runs: the study exits 143 once they
    have recorded themselves as interrupted by SIGTERM; the same command resumes them."""
    _, reference = finished_study
    process = subprocess.Popen([*optbench_command(), "study", "run", str(spec_path), f"out_dir={tmp_path}", *PARALLEL],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO, env=subprocess_env())
    study_dir = tmp_path / "e2e"
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:  # a run holding its lock, with rows: training
        runs = find_runs(study_dir) if study_dir.exists() else []
        holders = [(r, RunStore(r).lock.holder()) for r in runs if any(RunStore(r).rows())]
        training = [(r, holder["pid"]) for r, holder in holders if holder is not None]
        if training:
            break
        time.sleep(0.05)
    else:
        pytest.fail("no run of the study was seen training")
    root, pid = training[0]
    os.kill(pid, signal.SIGSTOP)  # it cannot finish before the study's SIGTERM reaches it
    process.send_signal(signal.SIGTERM)
    time.sleep(3)  # the study passes the signal on after a second
    os.kill(pid, signal.SIGCONT)
    assert process.wait(timeout=120) == 143
    summary = RunStore(root).summary()
    assert (summary["status"], summary["error"]) == ("interrupted", "interrupted by SIGTERM")
    assert all(RunStore(r).status() != "running" for r in find_runs(study_dir))
    resumed = study(spec_path, tmp_path, *PARALLEL)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert results(study_dir) == results(reference)


@pytest.mark.slow
def test_a_study_with_warm_workers_has_the_results_of_one_without(finished_study, spec_path, tmp_path) -> None:
    """The runs of the study with warm workers (the default) and with ``warm=false`` (each run a
    new process) log the same rows and end with the same summaries, bit for bit, but for the
    timings."""
    _, warm_dir = finished_study
    cold = study(spec_path, tmp_path, *PARALLEL, "--executor-options", "warm=false")
    assert cold.returncode == 0, cold.stdout + cold.stderr
    cold_dir = tmp_path / "e2e"
    assert [r.name for r in find_runs(cold_dir)] == [r.name for r in find_runs(warm_dir)]
    for root in find_runs(warm_dir):
        warm_store, cold_store = RunStore(root), RunStore(cold_dir / root.name)
        for name in ("metrics.jsonl", "layers.jsonl"):
            assert _untimed(warm_store.rows(name)) == _untimed(cold_store.rows(name)), (root.name, name)
        assert _untimed([warm_store.summary()]) == _untimed([cold_store.summary()]), root.name


_TIMINGS = {"wall_time", "throughput", "wall_time_s", "train_step_time_s", "throughput_samples_per_s",
            "peak_memory_bytes"}


def _untimed(rows) -> list[dict]:
    """The rows without what measures time (or memory, which a forked process counts differently)."""
    return [{k: _untimed([v])[0] if isinstance(v, dict) else v for k, v in row.items() if k not in _TIMINGS}
            for row in rows]


def test_every_study_run_is_a_command_a_warm_worker_runs(spec_path, tmp_path) -> None:
    from experiments.studies.plan import plan_study
    from experiments.studies.spec import load_spec
    from experiments.studies.warm_worker import warm_module

    plan = plan_study(load_spec(str(spec_path)), [f"out_dir={tmp_path}"])
    assert all(warm_module(run.command()) == ("experiments.cli", ["train", *run.overrides]) for run in plan.search_runs())


def wait_until(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_the_local_executor_isolates_runs_and_shares_the_cores(tmp_path) -> None:
    python = sys.executable
    commands = [[python, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"],
                [python, "-c", "import os; print('threads', os.environ['OMP_NUM_THREADS'])"],
                [python, "-c", "raise SystemExit(3)"]]
    done = []
    codes = LocalExecutor(tmp_path, max_parallel=2, threads=None).run(commands, lambda i, code: done.append((i, code)),
                                                                         labels=["kill", "ok", "three"])
    assert codes == [-signal.SIGKILL, 0, 3] and sorted(done) == [(0, -9), (1, 0), (2, 3)]
    cores = len(os.sched_getaffinity(0))
    assert (tmp_path / "ok.log").read_text() == f"threads {max(1, cores // 2)}\n"
