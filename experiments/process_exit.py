"""Ending an optbench process without the interpreter's teardown.

Once a command has returned, everything it writes is on disk, yet CPython's finalisation still
takes 1.5–4 s after a run: it collects the heap of torch, Lightning and their modules object by
object. Nobody observes that work, so the process ends with ``os._exit`` instead, after doing
what an observer could miss: non-daemon threads are joined, the exit handlers run (``atexit``:
logging's flush, DataLoader and multiprocessing clean-up, library caches), and the standard
streams are flushed. The exit status is the interpreter's for the same outcome.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from typing import Callable, NoReturn, Optional

__all__ = ["exit_after", "exit_process"]


def exit_after(function: Callable[[], Optional[int]]) -> NoReturn:
    """Call ``function`` and end the process with the status the interpreter would give a
    program that did the same: its return value (None: 0), a ``SystemExit``'s code (a message
    printed on stderr and 1 when that is not an int), 1 after an uncaught exception's traceback,
    and death by SIGINT after an uncaught ``KeyboardInterrupt``."""
    killed_by = None
    try:
        code = function() or 0
    except SystemExit as exit:
        code = _system_exit_code(exit)
    except KeyboardInterrupt:  # CPython, after its clean-up, ends itself with SIGINT: the parent sees that
        sys.excepthook(*sys.exc_info())
        code, killed_by = 128 + signal.SIGINT, signal.SIGINT
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    exit_process(code, killed_by=killed_by)


def exit_process(code: int, *, killed_by: Optional[int] = None) -> NoReturn:
    """End the process with ``code`` now: join the non-daemon threads, run the exit handlers,
    flush the standard streams, then ``os._exit`` (no interpreter teardown); with ``killed_by``,
    end by that signal instead (``code`` only where it cannot)."""
    main = threading.main_thread()
    for thread in threading.enumerate():
        if thread is not main and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()  # what sys.exit would run; the interpreter exposes it under this name only
    _flush()
    if killed_by is not None:
        signal.signal(killed_by, signal.SIG_DFL)
        os.kill(os.getpid(), killed_by)
    os._exit(code)


def _system_exit_code(exit: SystemExit) -> int:
    if exit.code is None:
        return 0
    if isinstance(exit.code, int):
        return exit.code
    print(exit.code, file=sys.stderr)
    return 1


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):  # closed, replaced by None, or a broken pipe
            pass
