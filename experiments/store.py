"""The run store: one directory per run, written so that a killed run loses nothing it logged.

```
<out_dir>/<study>/<run_id>/
  config.yaml     resolved config, written first
  meta.json       store format, versions, git commit, host, device, start time, restarts
  lock.json       while a process trains the run: its host, pid and heartbeat
  metrics.jsonl   append-only rows {step, epoch, wall_time, <metric>: value, ...}, flushed per row
  layers.jsonl    append-only per-layer rows {step, layer, grad_norm, weight_norm, ...}
  summary.json    written atomically last: status, final/best metrics, steps_to_target, ...
  checkpoints/    last.ckpt and the one it replaced, last.previous.ckpt, for resume
                  (Lightning's SLURM requeue adds hpc_ckpt_*.ckpt in the run directory)
```

This module is the store's one owner, for writers and readers alike, and imports no torch:
studies and analysis read runs through ``RunStore`` and ``find_runs`` without loading a model.
It also owns the words a run's state is told in (its statuses) and the exit codes of
``optbench train`` that executors read back, so that every reader spells them the same way.
"""

from __future__ import annotations

import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import yaml

__all__ = [
    "RunStore", "RunLock", "RunLockedError", "StoreError", "FORMAT_VERSION", "find_runs", "write_json_atomic",
    "collect_meta", "finite_or_none", "previous_checkpoint",
    "COMPLETED", "DIVERGED", "FAILED", "INTERRUPTED", "RUNNING", "INCOMPLETE", "STATUSES", "FINISHED", "RUN_STATUSES",
    "EXIT_RESULT", "EXIT_FAILED", "EXIT_BAD_INPUT", "EXIT_LOCKED", "EXIT_SIGINT", "EXIT_SIGTERM",
]

FORMAT_VERSION = 2  # of the directory layout and its files; recorded in meta.json and summary.json

# A run's status. summary.json records how a run ended: one of STATUSES. A run without one is
# RUNNING while a live process holds its lock, else INCOMPLETE (not started yet, or killed: the
# next attempt resumes it).
COMPLETED = "completed"  # every step taken (or stopped at its target)
DIVERGED = "diverged"  # the loss blew up: a result, the optimizer's, not the harness's
FAILED = "failed"  # an error ended it; summary.json holds its one line
INTERRUPTED = "interrupted"  # SIGINT/SIGTERM, or fewer steps than asked for: resumed next time
RUNNING = "running"
INCOMPLETE = "incomplete"
STATUSES = (COMPLETED, DIVERGED, FAILED, INTERRUPTED)  # what summary.json may say
FINISHED = (COMPLETED, DIVERGED)  # results: never trained again (failed, interrupted are retried)
RUN_STATUSES = (*STATUSES, RUNNING, INCOMPLETE)  # every status a reader of the store can report

# The exit status of `optbench train`, which study executors and job scripts read.
EXIT_RESULT = 0  # a completed or diverged run, or one already finished (skipped)
EXIT_FAILED = 1  # the run failed (its summary says why)
EXIT_BAD_INPUT = 2  # a bad config, override or argument: one line on stderr, nothing trained
EXIT_LOCKED = 75  # EX_TEMPFAIL: another live process trains this run; try again later
# Interrupted by a signal: 128 + its number, as shells report a process that signal ended. The
# same command resumes the run.
EXIT_SIGINT = 128 + signal.SIGINT  # 130
EXIT_SIGTERM = 128 + signal.SIGTERM  # 143

HEARTBEAT_SECONDS = float(os.environ.get("OPTBENCH_HEARTBEAT_SECONDS", 10))
STALE_AFTER_SECONDS = 6 * HEARTBEAT_SECONDS  # a lock whose heartbeat is older belongs to nobody


class StoreError(ValueError):
    """A run directory's file that cannot be read: the message names the file."""


class RunLockedError(RuntimeError):
    """Another live process trains this run."""


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` via a temporary file and ``os.replace``: never half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True, default=_json_default)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


_ROW_ENCODER = json.JSONEncoder(default=_json_default)  # one for every row: json.dumps(default=...) makes one a call


def finite_or_none(value: Any) -> Optional[float]:
    """The number, or None for NaN/inf/non-numbers (JSON has no NaN)."""
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def collect_meta() -> dict[str, Any]:
    """Versions, git commit, host and device: enough to say where a number came from."""
    import torch

    def version(module: str) -> Optional[str]:
        try:
            return __import__(module).__version__
        except Exception:  # an optional package may be absent or broken: record that, go on
            return None

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "store_format": FORMAT_VERSION,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "pytorch_lightning": version("pytorch_lightning"),
        "torchmetrics": version("torchmetrics"),
        "git_commit": commit,
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu",
        "cpu_threads": torch.get_num_threads(),
        "start_time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _process_start(pid: int) -> Optional[str]:
    """When process ``pid`` started (field 22 of /proc/<pid>/stat), None if there is none or it is
    a zombie: with the pid it names one process, even after the pid is reused. "?" where /proc
    does not exist."""
    if not Path("/proc/self/stat").exists():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return "?"
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the fields after "(comm)": state (3), ..., starttime (22)
    return None if fields[0] == "Z" else fields[19]  # a zombie (killed, not yet reaped) is gone


class RunLock:
    """``lock.json`` in a run directory: which process trains the run, with a heartbeat.

    ``acquire`` creates the file atomically (a hard link of a complete temporary file, which
    fails if one exists) and starts a thread that rewrites its heartbeat every
    ``HEARTBEAT_SECONDS``. A lock already there is refused while its holder lives: on this host
    the holder's pid must still name the process that took it (pid and start time); from another
    host (a shared file system) its heartbeat must be younger than ``STALE_AFTER_SECONDS``. A
    holder that is gone (``kill -9``, a lost node) leaves a stale lock, which the next process
    takes over. Two processes taking over the same stale lock at the same moment both write it,
    then read it back: the one whose token is not there gives way.
    """

    def __init__(self, root: Path | str) -> None:
        self.path = Path(root) / "lock.json"
        self._token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def read(self) -> Optional[dict[str, Any]]:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    def holder(self) -> Optional[dict[str, Any]]:
        """The lock's record while its holder lives, else None."""
        record = self.read()
        if record is None:
            return None
        if record.get("host") == socket.gethostname():
            return record if _process_start(record.get("pid", -1)) == record.get("pid_start") else None
        return record if time.time() - record.get("heartbeat", 0) < STALE_AFTER_SECONDS else None

    def acquire(self) -> None:
        """Take the lock, or raise ``RunLockedError`` naming the live process that holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".lock.{self._token}.tmp")
        tmp.write_text(json.dumps(self._record()))
        try:
            os.link(tmp, self.path)
        except FileExistsError:
            holder = self.holder()
            if holder is not None and holder.get("token") != self._token:
                raise RunLockedError(_locked_message(self.path.parent, holder)) from None
            os.replace(tmp, self.path)  # the holder is gone: take its lock over
            time.sleep(0.1)
            record = self.read()
            if record is None or record.get("token") != self._token:
                raise RunLockedError(_locked_message(self.path.parent, record or {})) from None
        finally:
            tmp.unlink(missing_ok=True)
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="optbench-heartbeat", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Stop the heartbeat and remove the lock, if it is still this process's."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        record = self.read()
        if record is not None and record.get("token") == self._token:
            self.path.unlink(missing_ok=True)

    def _record(self) -> dict[str, Any]:
        pid = os.getpid()
        return {"token": self._token, "host": socket.gethostname(), "pid": pid,
                "pid_start": _process_start(pid), "heartbeat": time.time()}

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            record = self.read()
            if record is None or record.get("token") != self._token:
                return  # taken over: this process no longer owns the run
            write_json_atomic(self.path, {**record, "heartbeat": time.time()})


def _locked_message(root: Path, holder: dict[str, Any]) -> str:
    age = time.time() - holder["heartbeat"] if "heartbeat" in holder else float("nan")
    return (f"run {root} is being trained by process {holder.get('pid', '?')} on {holder.get('host', '?')} "
            f"(heartbeat {age:.0f} s ago)")


def previous_checkpoint(path: Path) -> Path:
    """Where the checkpoint at ``path`` keeps the one it replaced: ``last.ckpt`` →
    ``last.previous.ckpt`` (see ``experiments.checkpoints``)."""
    return path.with_name(f"{path.stem}.previous{path.suffix}")


def find_runs(root: Path | str, *, include_replaced: bool = False) -> list[Path]:
    """Every run directory (one holding ``config.yaml``) under ``root``, at any depth, sorted.

    ``root`` may itself be a run. Directories that ``--force`` set aside (``<run_id>.replaced-*``)
    are history, left out unless ``include_replaced``; hidden and ``wandb`` folders are skipped.
    """
    runs = []
    for here, dirs, files in os.walk(root):
        if "config.yaml" in files:
            runs.append(Path(here))
            dirs.clear()  # a run holds no runs
            continue
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "wandb"
                   and (include_replaced or ".replaced-" not in d)]
    return sorted(runs)


class RunStore:
    """Reads and writes one run directory."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.checkpoints = self.root / "checkpoints"
        self.lock = RunLock(self.root)

    @property
    def run_id(self) -> str:
        return self.root.name

    @property
    def study(self) -> str:
        return self.root.parent.name

    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def summary_path(self) -> Path:
        return self.root / "summary.json"

    @property
    def meta_path(self) -> Path:
        return self.root / "meta.json"

    def path(self, name: str) -> Path:
        """The path of one of the run's files (``metrics.jsonl``, ``layers.jsonl``, ...)."""
        return self.root / name

    def resume_checkpoints(self) -> list[Path]:
        """The checkpoints the run may resume from, newest first: ``checkpoints/last.ckpt`` and,
        after a SLURM requeue that Lightning handled, ``hpc_ckpt_*.ckpt`` in the run directory;
        then ``checkpoints/last.previous.ckpt``, the one the last save replaced."""
        latest = [p for p in [self.checkpoints / "last.ckpt", *self.root.glob("hpc_ckpt_*.ckpt")] if p.is_file()]
        previous = previous_checkpoint(self.checkpoints / "last.ckpt")
        return (sorted(latest, key=lambda p: p.stat().st_mtime_ns, reverse=True)
                + ([previous] if previous.is_file() else []))

    def resume_checkpoint(self) -> Optional[Path]:
        """The newest checkpoint to resume from (see ``resume_checkpoints``), None if none."""
        return next(iter(self.resume_checkpoints()), None)

    def config(self) -> dict[str, Any]:
        """config.yaml as plain data."""
        try:
            return yaml.safe_load(self.config_path.read_text())
        except (OSError, yaml.YAMLError) as error:
            raise StoreError(f"cannot read {self.config_path}: {str(error).splitlines()[0]}") from None

    def meta(self) -> Optional[dict[str, Any]]:
        return self._json(self.meta_path)

    def summary(self) -> Optional[dict[str, Any]]:
        return self._json(self.summary_path)

    def _json(self, path: Path) -> Optional[dict[str, Any]]:
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise StoreError(f"cannot read {path}: {error}") from None

    def status(self) -> Optional[str]:
        """``RUNNING`` while a live process holds the lock, else the recorded status, else None
        (a run never finished: not started yet, or killed; readers report it as ``INCOMPLETE``)."""
        if self.lock.holder() is not None:
            return RUNNING
        summary = self.summary()
        return summary["status"] if summary else None

    def is_finished(self) -> bool:
        """Completed and diverged runs are results; failed and interrupted ones are retried."""
        return self.status() in FINISHED

    def attempts(self) -> int:
        """How many times the run was started (0 if never)."""
        meta = self.meta()
        return 0 if meta is None else 1 + len(meta.get("restarts", []))

    def begin(self, config_yaml: str, meta: dict[str, Any], resume: bool) -> None:
        """Create the directory; write config.yaml (first) and meta.json.

        The directory's name is the run_id, so a config.yaml already there describes the same
        run (it may differ in keys that do not change results, e.g. ``data.num_workers``): the
        first one is kept. A restart (a resume, or a retry of a failed run) adds an entry to
        meta.json's ``restarts``.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.config_path.is_file():
            tmp = self.root / ".config.yaml.tmp"
            tmp.write_text(config_yaml)
            os.replace(tmp, self.config_path)
        previous = self.meta()
        if previous is not None:
            meta = {**previous, "restarts": previous.get("restarts", []) + [{**meta, "resumed": resume}]}
        write_json_atomic(self.meta_path, meta)
        if self.summary_path.is_file():  # a failed/interrupted run being retried
            self.summary_path.unlink()

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after ``step`` (a resumed run logs them again from its checkpoint)."""
        for name in ("metrics.jsonl", "layers.jsonl"):
            path = self.root / name
            if not path.is_file():
                continue
            kept = [json.dumps(row) for row in self.rows(name) if row["step"] <= step]
            tmp = path.with_name(f".{name}.tmp")
            tmp.write_text("".join(line + "\n" for line in kept))
            os.replace(tmp, path)

    def append(self, name: str, rows: Iterable[dict[str, Any]]) -> None:
        """Append rows to ``name`` (metrics.jsonl or layers.jsonl) and flush them to the OS."""
        with open(self.root / name, "a") as handle:
            for row in rows:
                handle.write(_ROW_ENCODER.encode(row) + "\n")
            handle.flush()

    def rows(self, name: str = "metrics.jsonl") -> Iterator[dict[str, Any]]:
        """The rows of ``name``. A last line cut short (the process was killed while writing it)
        is left out; any other line that is not JSON raises ``StoreError`` naming the file."""
        path = self.root / name
        if not path.is_file():
            return
        try:
            lines = path.read_text().splitlines()
        except OSError as error:
            raise StoreError(f"cannot read {path}: {error}") from None
        for number, line in enumerate(lines, 1):
            if not line:
                continue
            try:
                yield json.loads(line)
            except ValueError:
                if number == len(lines):
                    return
                raise StoreError(f"{path}: line {number} is not JSON") from None

    def finish(self, summary: dict[str, Any]) -> dict[str, Any]:
        if summary.get("status") not in STATUSES:
            raise ValueError(f"invalid run status {summary.get('status')!r} (valid: {', '.join(STATUSES)})")
        summary = {"store_format": FORMAT_VERSION, **summary}
        write_json_atomic(self.summary_path, summary)
        return summary
