"""The peak memory of a run's training, not of the process that hosts it.

On a GPU: CUDA's peak of allocated bytes, reset when training starts. On a CPU: the peak
resident set size (Linux's ``VmHWM``), reset the same way by writing 5 to
``/proc/self/clear_refs``; where that is not possible, the process's lifetime peak
(``ru_maxrss``). Either way the peak of data building before training and of earlier runs in
the same process is not counted, and ``pause`` ... ``resume`` leaves out a stretch that only
measurement makes (the weight copies of the layer statistics): the peak is then the largest of
the peaks before and after it.

``TrainingPeakMemory`` wires a meter into a run: it starts measuring when training starts, on
the module's device, and keeps the peak of earlier attempts across a resume: a resumed run's
peak is the largest of its attempts', as an uninterrupted run's is the peak of its one.
"""

from __future__ import annotations

import contextlib
import re
import resource
from pathlib import Path
from typing import Any, Optional

import pytorch_lightning as pl
import torch

__all__ = ["PeakMemory", "TrainingPeakMemory"]

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


class TrainingPeakMemory(pl.Callback):
    """The peak memory of a run's training, all attempts together (``peak``); ``pause`` and
    ``resume`` leave a measurement's own copies out (the layer statistics call them)."""

    def __init__(self) -> None:
        self.meter: Optional[PeakMemory] = None  # from the start of training in this process
        self._earlier: Optional[int] = None  # the peak of earlier attempts (resume)

    def state_dict(self) -> dict[str, Any]:
        return {"peak": self.peak()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._earlier = state_dict["peak"]

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        # From this attempt's first step: an attempt that resumes at the run's end takes none and
        # adds no peak (what its process holds is not the run's training).
        if self.meter is None:
            self.meter = PeakMemory(pl_module.device)
            self.meter.reset()

    def pause(self) -> None:
        """Leave what comes until ``resume`` out of the peak (no-op before this attempt's first step)."""
        if self.meter is not None:
            self.meter.pause()

    def resume(self) -> None:
        if self.meter is not None:
            self.meter.resume()

    def peak(self) -> Optional[int]:
        """Peak bytes; None before training started in any attempt."""
        peaks = [p for p in (self._earlier, self.meter.peak() if self.meter is not None else None) if p is not None]
        return max(peaks) if peaks else None
