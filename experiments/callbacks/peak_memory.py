"""The peak memory of a run's training, not of the process that hosts it.

On a GPU: CUDA's peak of allocated bytes, reset when training starts. On a CPU: the peak
resident set size (Linux's ``VmHWM``), reset the same way by writing 5 to
``/proc/self/clear_refs``; where that is not possible, the process's lifetime peak
(``ru_maxrss``). Either way the peak of data building before training and of earlier runs in
the same process is not counted, and ``pause`` ... ``resume`` leaves out a stretch that only
measurement makes (the weight copies of the layer statistics): the peak is then the largest of
the peaks before and after it.
"""

from __future__ import annotations

import contextlib
import re
import resource
from pathlib import Path
import torch

__all__ = ["PeakMemory"]

_STATUS, _CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")


class PeakMemory:
    """Peak bytes of ``device`` since ``reset``, without the stretches from ``pause`` to ``resume``."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._before = 0  # the largest peak of the stretches already closed

    def reset(self) -> None:
        """Start measuring now: earlier peaks of the process are forgotten."""
        self._before = 0
        self._reset_counter()

    def pause(self) -> None:
        """Leave what comes until ``resume`` out of the peak."""
        self._before = max(self._before, self._current_peak())

    def resume(self) -> None:
        self._reset_counter()

    def peak(self) -> int:
        return max(self._before, self._current_peak())

    def _current_peak(self) -> int:
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        try:
            return int(re.search(r"VmHWM:\s*(\d+) kB", _STATUS.read_text()).group(1)) * 1024
        except (OSError, AttributeError):
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB

    def _reset_counter(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        with contextlib.suppress(OSError):
            _CLEAR_REFS.write_text("5")
