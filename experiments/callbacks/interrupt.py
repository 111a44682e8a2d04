"""SIGINT and SIGTERM during a run: stop where stopping is safe, and say which signal it was.

Ctrl-C sends SIGINT; schedulers send SIGTERM at a time limit or on preemption (SLURM, ``timeout``,
Kubernetes). Either way the run should end as ``interrupted``, with the signal named, and exit
with the status a shell gives a process killed by that signal (128 + its number: 130, 143), so a
job script can tell it from success and run the same command again to resume.

Inside training the signal is only noted, and ``Interrupted`` is raised at the next batch
boundary: never in the middle of an optimizer step, a checkpoint save or a metrics row, so the
checkpoint on disk stays the last validated one and a resumed run repeats the uninterrupted one.
Outside training (building the data, which can take a minute for the speech corpus) nothing is
half-written, and ``Interrupted`` is raised at once. A second signal is raised at once too: a
user pressing Ctrl-C twice means now.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any, Optional

import pytorch_lightning as pl

__all__ = ["Interrupted", "StopOnSignal", "SIGNALS"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """The run was stopped by ``signal``. A BaseException, as KeyboardInterrupt is: code that
    catches ``Exception`` to record a failure must let it through."""

    def __init__(self, signum: int) -> None:
        self.signal = signal.Signals(signum)
        super().__init__(f"interrupted by {self.signal.name}")

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, as shells report a process the signal ended."""
        return 128 + int(self.signal)


class StopOnSignal(pl.Callback):
    """While entered, SIGINT and SIGTERM raise ``Interrupted``: at once outside ``Trainer.fit``,
    at the next batch boundary inside it.

    Lightning installs its own SIGTERM handler during ``fit`` and calls the one it found (this
    one) from it, then raises its own ``SIGTERMException`` at a batch boundary: ``received``
    names the signal whichever exception arrives first. A signal the process was started with
    ignored (``nohup``, a background job of a non-interactive shell) stays ignored. Handlers can
    only be set from the main thread; elsewhere this does nothing and Lightning's own handling
    remains.
    """

    def __init__(self) -> None:
        self.received: Optional[signal.Signals] = None
        self._in_fit = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                if signal.getsignal(signum) is not signal.SIG_IGN:
                    self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        first = self.received is None
        self.received = signal.Signals(signum) if first else self.received
        if not first or not self._in_fit:
            raise Interrupted(signum)

    def _stop_if_received(self) -> None:
        if self.received is not None:
            raise Interrupted(self.received)

    # -- Lightning hooks: where inside fit stopping is safe ----------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._in_fit = True

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._in_fit = False

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._stop_if_received()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._stop_if_received()

    def on_validation_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                                  batch_idx: int, dataloader_idx: int = 0) -> None:
        self._stop_if_received()
