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
    try:
        code = function() or 0
    except SystemExit as exit:
        code = _system_exit_code(exit)
    except KeyboardInterrupt:
        sys.excepthook(*sys.exc_info())
        _flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # as CPython does: the parent sees a kill by SIGINT
        os.kill(os.getpid(), signal.SIGINT)
        code = 128 + signal.SIGINT  # only where SIGINT could not end the process
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    exit_process(code)


def exit_process(code: int) -> NoReturn:
    """End the process with ``code`` now: join the non-daemon threads, run the exit handlers,
    flush the standard streams, then ``os._exit`` (no interpreter teardown)."""
    main = threading.main_thread()
    for thread in threading.enumerate():
        if thread is not main and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()  # what sys.exit would run; the interpreter exposes it under this name only
    _flush()
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
