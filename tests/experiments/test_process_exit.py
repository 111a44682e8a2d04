"""Ending a process without the interpreter's teardown: the exit status and what is flushed are
the interpreter's. Real subprocesses (torch-free: fast)."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from tests.experiments.support import REPO, subprocess_env

# Each program prints buffered output, registers an exit handler and starts a non-daemon thread,
# then ends through exit_after(function) with a function that ends as ENDING says.
PROGRAM = """
import atexit, sys, threading, time
from experiments.process_exit import exit_after
print("buffered output", end="")
atexit.register(lambda: print(" / exit handler ran", end=""))
threading.Thread(target=lambda: (time.sleep(0.3), print(" / thread finished", end=""))).start()
def function():
    {ending}
exit_after(function)
raise AssertionError("exit_after returned")
"""


@pytest.mark.slow
@pytest.mark.parametrize("ending, code, stderr", [
    ("return None", 0, ""),
    ("return 3", 3, ""),
    ("sys.exit(4)", 4, ""),
    ("sys.exit('a message')", 1, "a message\n"),
    ("raise ValueError('bad')", 1, "ValueError: bad\n"),
    ("raise KeyboardInterrupt", -signal.SIGINT, "KeyboardInterrupt\n"),
])
def test_exit_after_ends_as_the_interpreter_would_with_everything_flushed(ending, code, stderr) -> None:
    result = subprocess.run([sys.executable, "-c", PROGRAM.format(ending=ending)], capture_output=True, text=True,
                            timeout=60, cwd=REPO, env=subprocess_env())
    assert result.returncode == code
    assert result.stderr.endswith(stderr) and ("Traceback" in result.stderr) == ("raise" in ending)
    assert result.stdout == "buffered output / thread finished / exit handler ran"
