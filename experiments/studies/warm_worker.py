"""A warm worker: runs started from a process that has imported torch, Lightning and optbench once.

A run of a tiny task trains for a fraction of a second, while a new Python process spends
seconds importing torch and Lightning before it, and more tearing its heap down after it. The
local executor starts one worker process per study instead; the worker imports those modules
once (``PRELOAD``) and forks a child for each run, which runs the run's command
(``python -m experiments.cli train ...``) from that state. Each run is still a process of its
own, forked from a state no run has touched:

- a crash, an out-of-memory kill or a ``kill -9`` of one run ends that child only;
- threads, warning filters, torch's and Lightning's globals are the worker's pristine ones in
  every child, whatever an earlier run did to its own copy (the worker never trains, so no
  thread pool exists when it forks; the child gets its torch threads from ``OMP_NUM_THREADS``,
  set in the worker's environment as in a run's own process); the random generators that a
  new process seeds from the OS's entropy are seeded afresh in each child;
- the child runs the module as ``python -m`` does (``runpy``: ``__main__``, ``sys.argv``), so
  code that starts more processes the way Lightning's DDP launcher does starts the same command;
- its stdout and stderr go to the run's log file; stdin is ``/dev/null``;
- it dies with the worker, and the worker with the executor (``PR_SET_PDEATHSIG`` on Linux): a
  ``kill -9`` of the study leaves no orphans; Ctrl-C on the terminal reaches the children (the
  worker ignores it), and the executor passes signals on through the worker, which knows
  whether a pid is still its child (no signal reaches a recycled pid);
- it ends with ``os._exit`` after flushing (``experiments.process_exit``), as ``optbench`` does.

The executor and the worker speak JSON lines over the worker's stdin and stdout: requests
``{"start": id, "module": m, "args": [...], "log": path}`` and ``{"signal": id, "signum": n}``;
events ``{"started": id, "pid": p}`` and ``{"ended": id, "code": c}`` (the exit status, negative
for a kill by that signal, as ``subprocess`` reports it).
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, NoReturn, Optional, Sequence

__all__ = ["PRELOAD", "WarmWorker", "WarmRun", "warm_module", "serve"]

# What `optbench train` imports: the worker imports it once, its children never again.
PRELOAD = ("experiments.cli", "experiments.commands", "experiments.train")
_POLL_S = 0.05  # how often the worker looks for ended children where it has no pidfds (not Linux)


def warm_module(command: Sequence[str]) -> Optional[tuple[str, list[str]]]:
    """``(module, args)`` when ``command`` runs a module with this interpreter (``python -m
    module args...``, as every study run does), which a warm worker can run; else None."""
    if len(command) >= 3 and command[0] == sys.executable and command[1] == "-m":
        return command[2], list(command[3:])
    return None


# -- the worker process ------------------------------------------------------------------------

def serve(preload: Sequence[str] = PRELOAD) -> NoReturn:
    """The worker's main: import ``preload``, then fork a child per request until stdin closes.

    Its stdin and stdout carry the protocol; both move to private descriptors at once, so that
    nothing an import prints reaches the executor as an event (stdout then points at stderr).
    """
    requests, events = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    os.close(devnull)
    # Ctrl-C on the terminal reaches every process of the group: the worker must outlive it to
    # report its children's ends. They get the disposition the worker was started with.
    sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)
    for module in preload:
        try:
            importlib.import_module(module)
        except Exception:  # a run importing it fails the same way, and says so in its log
            pass
    # Everything imported so far lives as long as the worker: the children's collections skip
    # it (and leave its pages shared) instead of traversing it at each run.
    gc.freeze()
    children: dict[int, int] = {}  # pid -> request id, until reaped
    exits: dict[int, int] = {}  # pid -> a descriptor that becomes readable when the child ends

    def emit(event: dict[str, Any]) -> None:
        os.write(events, (json.dumps(event) + "\n").encode())

    pending = b""
    while True:
        # A child's end wakes the loop at once (its pidfd), so that its slot is free again at once;
        # without pidfds (not Linux) the loop looks every _POLL_S.
        readable, _, _ = select.select([requests, *exits.values()], [], [], _POLL_S)
        if requests in readable:
            chunk = os.read(requests, 1 << 16)
            if not chunk:  # the executor is done, or gone: the children die with this process
                os._exit(0)
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                request = json.loads(line)
                if "start" in request:
                    pid = _fork_run(request, close=(requests, events, *exits.values()), sigint=sigint)
                    children[pid] = request["start"]
                    exit_fd = _exit_descriptor(pid)
                    if exit_fd is not None:
                        exits[pid] = exit_fd
                    emit({"started": request["start"], "pid": pid})
                elif "signal" in request:
                    for pid, run in children.items():  # not reaped yet: the pid is still this run's
                        if run == request["signal"]:
                            os.kill(pid, request["signum"])
        while children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            if pid in exits:
                os.close(exits.pop(pid))
            if pid in children:
                emit({"ended": children.pop(pid), "code": os.waitstatus_to_exitcode(status)})


def _exit_descriptor(pid: int) -> Optional[int]:
    """A descriptor that ``select`` finds readable once child ``pid`` has ended (Linux's pidfd),
    or None where there is none (the worker then polls)."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _fork_run(request: dict[str, Any], *, close: Sequence[int], sigint: Any) -> int:
    """Fork the child of one start request; return its pid (in the worker)."""
    for stream in (sys.stdout, sys.stderr):  # nothing buffered may be written twice
        stream.flush()
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    from experiments.process_exit import exit_after

    def run() -> None:
        if sys.platform.startswith("linux"):
            from experiments.studies.local import die_with_parent

            die_with_parent(signal.SIGKILL)()
            if os.getppid() != parent:  # the worker died before the death signal was set
                os._exit(128 + signal.SIGKILL)
        for fd in close:
            os.close(fd)
        signal.signal(signal.SIGINT, sigint)
        _fresh_random_state()
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        import runpy

        # As in `python -m`: the module runs as __main__, not as the imported copy the worker holds
        sys.modules.pop(request["module"], None)
        sys.argv = [sys.argv[0], *request["args"]]  # runpy sets argv[0] to the module's file
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)

    exit_after(run)


def _fresh_random_state() -> None:
    """Seed afresh the generators a new interpreter seeds from the OS's entropy (torch's default
    generator, NumPy's global one): a fork copies the worker's. Python's ``random`` reseeds
    itself after a fork."""
    torch, numpy = sys.modules.get("torch"), sys.modules.get("numpy")
    if torch is not None:
        torch.seed()
    if numpy is not None:
        numpy.random.seed()


# -- the executor's side -----------------------------------------------------------------------

class WarmWorker:
    """One worker process, started by the executor with the runs' environment.

    ``start`` hands it a command and returns a ``WarmRun``; ``collect`` reads the events that
    have arrived. If the worker itself dies (it holds no run's state, but an out-of-memory kill
    may pick it), its children die with it: their runs end as killed by SIGKILL, and the
    executor starts another worker for the next run.
    """

    def __init__(self, env: dict[str, str], preexec_fn: Optional[Callable[[], None]] = None) -> None:
        command = [sys.executable, "-c", f"from {__name__} import serve; serve()"]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                        preexec_fn=preexec_fn)
        self._events = self.process.stdout.fileno()
        os.set_blocking(self._events, False)
        self._pending = b""
        self._next_id = 0
        self.runs: dict[int, WarmRun] = {}  # not ended yet

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def start(self, module: str, args: Sequence[str], log: Path) -> WarmRun:
        """Run ``python -m module args...`` in a child, output appended to ``log``; waits until
        the child exists (the first start waits for the worker's imports)."""
        run_id, self._next_id = self._next_id, self._next_id + 1
        run = self.runs[run_id] = WarmRun(self, run_id)
        self._send({"start": run_id, "module": module, "args": list(args), "log": str(Path(log).resolve())})
        while run.pid is None:
            if not self.collect(timeout=1.0):
                raise RuntimeError("the warm worker died before it started the run")
        return run

    def signal(self, run: WarmRun, signum: int) -> None:
        self._send({"signal": run.id, "signum": int(signum)})

    def collect(self, timeout: float = 0.0) -> bool:
        """Read the events that arrive within ``timeout`` seconds. Returns False once the worker
        is gone (every run it still had is then ended, killed by SIGKILL)."""
        readable, _, _ = select.select([self._events], [], [], timeout)
        chunk = b""
        if readable:
            try:
                chunk = os.read(self._events, 1 << 16)
            except BlockingIOError:
                return True
        if readable and not chunk:  # end of file: the worker has exited
            self.process.wait()
            for run in list(self.runs.values()):
                self._ended(run.id, -signal.SIGKILL)
            return False
        self._pending += chunk
        while b"\n" in self._pending:  # one event at a time: an exception in between loses none
            line, self._pending = self._pending.split(b"\n", 1)
            event = json.loads(line)
            if "started" in event:
                self.runs[event["started"]].pid = event["pid"]
            elif "ended" in event:
                self._ended(event["ended"], event["code"])
        return True

    def close(self) -> None:
        """End the worker (its children, if any are left, die with it)."""
        if self.process.stdin and not self.process.stdin.closed:
            try:
                self.process.stdin.close()
            except BrokenPipeError:
                pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()
        for run in list(self.runs.values()):
            self._ended(run.id, -signal.SIGKILL)

    def _send(self, request: dict[str, Any]) -> None:
        try:
            self.process.stdin.write((json.dumps(request) + "\n").encode())
            self.process.stdin.flush()
        except (BrokenPipeError, ValueError):  # the worker is gone: collect reports its runs
            pass

    def _ended(self, run_id: int, code: int) -> None:
        run = self.runs.pop(run_id, None)
        if run is not None:
            run.returncode = code


class WarmRun:
    """A run in a warm worker's child, with the part of ``subprocess.Popen``'s interface the
    local executor uses: ``pid``, ``returncode``, ``poll``, ``wait``, ``send_signal``, ``kill``."""

    def __init__(self, worker: WarmWorker, run_id: int) -> None:
        self.worker = worker
        self.id = run_id
        self.pid: Optional[int] = None
        self.returncode: Optional[int] = None

    def poll(self) -> Optional[int]:
        if self.returncode is None:
            self.worker.collect()
        return self.returncode

    def wait(self, timeout: Optional[float] = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(f"warm run {self.id}", timeout)
            self.worker.collect(timeout=min(0.1, left) if left is not None else 0.1)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            self.worker.signal(self, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)
