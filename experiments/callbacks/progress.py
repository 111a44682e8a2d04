"""Progress reports for whoever watches a run: a bar on a terminal, plain lines in a log file.

A batch job's output goes to a file, where a progress bar is noise and silence looks like a hang:
there, a line every few seconds says where the run is (step, loss, last validation metric,
samples/s, ETA). On a terminal a rich progress bar says the same in place. Everything is reported
through the ``experiments.callbacks.progress`` logger at INFO level, which is silent until someone asks for
it (``report_to``, as the CLI does): ``train()`` called from Python or a test prints nothing.

Long data preparation (synthesising the speech corpus takes about 45 s the first time) reports
through ``track``, so that it is not silent either.
"""

from __future__ import annotations

import logging
import time
from typing import IO, Any, Iterator, Optional, Sequence, TypeVar

import pytorch_lightning as pl
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeRemainingColumn

__all__ = ["log", "report_to", "track", "Progress", "format_duration"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def report_to(stream: IO[str]) -> None:
    """Print this module's reports (INFO and above) on ``stream``, one plain line each."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def format_duration(seconds: float) -> str:
    """``37.2s``, ``3m05s``, ``1h02m``: short, and exact enough for a human."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def track(items: Sequence[T], description: str, every_s: float = 5.0) -> Iterator[T]:
    """Yield ``items``; every ``every_s`` seconds, and after the last, log
    ``<description>: <done>/<total>, ETA <time>`` (the rate so far extrapolated)."""
    total, start = len(items), time.monotonic()
    last = start
    for done, item in enumerate(items, start=1):
        yield item
        now = time.monotonic()
        if now - last >= every_s or done == total:
            last = now
            remaining = (now - start) / done * (total - done)
            log.info(f"{description}: {done}/{total}" + (f", ETA {format_duration(remaining)}" if done < total else
                                                         f", done in {format_duration(now - start)}"))


class Progress(pl.Callback):
    """Reports a run's progress on global rank 0: a rich bar when stderr is a terminal (``bar``
    None: ask rich; its text is refreshed every second at most), else a plain line every
    ``every_s`` seconds and one at the end:

    ``step 120/300  loss 1.234  val/acc 0.853 (step 100)  3120 samples/s  ETA 35.0s``

    The loss is the reporting step's (reading it waits for the device, so only when reporting);
    samples/s and ETA are measured over this process's steps, so a resumed run's ETA is right.
    ``metric`` is the validation metric's logged name (``val/acc``).
    """

    def __init__(self, *, effective_batch_size: int, metric: str, every_s: float = 5.0, bar: Optional[bool] = None,
                 console: Optional[Console] = None) -> None:
        self.effective_batch_size = effective_batch_size
        self.metric = metric
        self.every_s = every_s
        self.console = console or Console(stderr=True)
        self.bar = self.console.is_terminal if bar is None else bar
        self._start: tuple[float, int] = (0.0, 0)
        self._last_report = 0.0
        self._validation: Optional[tuple[str, float, int]] = None  # (name, value, step)
        self._loss: Optional[float] = None
        self._rich: Optional[RichProgress] = None
        self._task: Any = None

    # -- hooks ---------------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        self._start = (time.monotonic(), trainer.global_step)
        self._last_report = self._start[0]
        if self.bar:
            self._rich = RichProgress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"), TimeRemainingColumn(), console=self.console,
            )
            self._task = self._rich.add_task("step", total=trainer.max_steps, completed=trainer.global_step, status="")
            self._rich.start()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not trainer.is_global_zero:
            return
        now = time.monotonic()
        # The bar redraws in place: its text may change every second without flooding anything.
        due = now - self._last_report >= (min(self.every_s, 1.0) if self._rich is not None else self.every_s)
        if due:
            self._loss = float(outputs["loss"] if isinstance(outputs, dict) else outputs)
        if self._rich is not None:
            self._rich.update(self._task, completed=trainer.global_step)
            if due:
                self._rich.update(self._task, status=self._status(trainer, now, with_step=False))
        elif due:
            log.info(self._status(trainer, now, with_step=True))
        if due:
            self._last_report = now

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.metric)
        if trainer.is_global_zero and not trainer.sanity_checking and value is not None:
            self._validation = (self.metric, float(value), trainer.global_step)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero and self._rich is None:
            log.info(self._status(trainer, time.monotonic(), with_step=True))

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._rich is not None:
            self._rich.update(self._task, completed=trainer.global_step,
                              status=self._status(trainer, time.monotonic(), with_step=False))
            self._rich.stop()
            self._rich = None

    # -- the text ------------------------------------------------------------------------------
    def _status(self, trainer: pl.Trainer, now: float, *, with_step: bool) -> str:
        step, max_steps = trainer.global_step, trainer.max_steps
        start_time, start_step = self._start
        rate = (step - start_step) / (now - start_time) if now > start_time else 0.0
        parts = [f"step {step}/{max_steps}"] if with_step else []
        if self._loss is not None:
            parts.append(f"loss {self._loss:.4g}")
        if self._validation is not None:
            name, value, at = self._validation
            parts.append(f"{name} {value:.4g} (step {at})")
        if rate > 0:
            parts.append(f"{rate * self.effective_batch_size:.0f} samples/s")
            if with_step and step < max_steps:
                parts.append(f"ETA {format_duration((max_steps - step) / rate)}")
        return "  ".join(parts)
