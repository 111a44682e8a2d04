"""``StopOnSignal``: real signals sent to this process outside a Lightning fit (inside one, the
subprocess tests of test_resume.py send them to ``optbench train``)."""

from __future__ import annotations

import os
import signal

import pytest

from experiments.callbacks.interrupt import Interrupted, StopOnSignal


@pytest.mark.parametrize("signum, exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_outside_fit_raises_at_once(signum, exit_code):
    """Outside training (data preparation) the signal raises Interrupted at once, naming it,
    with the exit status a shell gives that signal; the previous handlers come back after."""
    before = signal.getsignal(signum)
    with pytest.raises(Interrupted) as info:
        with StopOnSignal() as stop:
            os.kill(os.getpid(), signum)
    assert info.value.signal == signum and stop.received == signum
    assert str(info.value) == f"interrupted by {signum.name}"
    assert info.value.exit_code == exit_code
    assert not isinstance(info.value, Exception)  # `except Exception` (failure recording) lets it through
    assert signal.getsignal(signum) is before


def test_ignored_signal_stays_ignored():
    """A signal the process ignores (nohup, a background job of a script) is left ignored."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with StopOnSignal() as stop:
            os.kill(os.getpid(), signal.SIGINT)
        assert stop.received is None
    finally:
        signal.signal(signal.SIGINT, previous)
