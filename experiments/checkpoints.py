"""A run's checkpoints, written and chosen so that a torn file never makes a run unrecoverable.

A checkpoint cut short (a kill during the write, a full disk, a bad copy) fails every later
attempt to load it, and a study would retry the run until it gave up. So:

- ``AtomicCheckpointIO`` writes each checkpoint into a temporary file beside its target, flushes
  it to the disk, keeps the file it replaces as ``<name>.previous.ckpt``
  (``store.previous_checkpoint``) and only then renames the new one into place. At every moment
  ``last.ckpt`` or ``last.previous.ckpt`` is whole; a write that fails (a full disk) leaves both
  as they were and fails the run, which the next attempt resumes.
- ``choose_resume`` takes the newest checkpoint that reads back whole (every member of its zip
  archive, CRC-checked, nothing unpickled): ``last.ckpt``, else the previous one, else none (the
  run starts again from step 0). Unreadable ones are moved to ``checkpoints/unreadable/``, where
  no later save rotates them into ``previous`` and Lightning's requeue logic does not find them.

Either way the resumed run ends as the uninterrupted one would (the batch stream and the tracked
state are functions of the step; rows logged after the checkpoint are logged again).
"""

from __future__ import annotations

import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from experiments.store import RunStore, previous_checkpoint

__all__ = ["AtomicCheckpointIO", "Resume", "choose_resume", "unreadable_reason", "UNREADABLE_DIR"]

UNREADABLE_DIR = "unreadable"  # under checkpoints/: the files set aside


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO`` with atomic writes that keep the replaced checkpoint.

    Lightning's own write goes through a temporary file of fsspec's, which on another file
    system than the target (``/tmp``) becomes a copy into the target: not atomic, and never
    flushed to the disk.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        try:
            with open(tmp, "wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException as error:
            tmp.unlink(missing_ok=True)  # a full disk: the space goes back, the old files stay whole
            reason = error.__context__
            if isinstance(reason, OSError) and not isinstance(error, OSError):
                # torch's writer reports a failed write as "unexpected pos ...": the OS's reason says more
                raise OSError(reason.errno, reason.strerror, str(path)) from error
            raise
        if path.is_file():
            os.replace(path, previous_checkpoint(path))
        os.replace(tmp, path)
        _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make the renames in ``directory`` durable (a crash of the machine then keeps them)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unreadable_reason(path: Path) -> Optional[str]:
    """Why the checkpoint at ``path`` cannot be read back whole (one line), or None if it can.

    ``torch.save`` writes a zip archive with a CRC-32 per member: a cut-short file has no central
    directory, a damaged one fails a CRC. Reading it costs one pass over the file.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as error:
        return f"{type(error).__name__}: {error}".splitlines()[0]
    return None if bad is None else f"bad CRC-32 for {bad}"


@dataclass
class Resume:
    """What a run resumes from: ``path`` (None: from step 0) and the checkpoints that could not
    be read, by their path relative to the run directory, with the reason."""

    path: Optional[Path]
    unreadable: dict[str, str] = field(default_factory=dict)

    def notice(self, store: RunStore) -> str:
        """One line for the run's output: which checkpoints were unreadable and what follows."""
        files = ", ".join(f"{name} ({reason})" for name, reason in self.unreadable.items())
        verb = "is" if len(self.unreadable) == 1 else "are"
        then = (f"resuming from {self._relative(store)}" if self.path is not None
                else "no readable checkpoint left: the run starts again from step 0")
        return (f"{files} {verb} unreadable, set aside in {store.checkpoints.relative_to(store.root)}/"
                f"{UNREADABLE_DIR}/; {then}")

    def meta(self, store: RunStore) -> dict[str, Any]:
        """The note for meta.json (empty when every checkpoint read back whole)."""
        if not self.unreadable:
            return {}
        return {"unreadable_checkpoints": dict(self.unreadable), "resumed_from": self._relative(store)}

    def _relative(self, store: RunStore) -> Optional[str]:
        return None if self.path is None else str(self.path.relative_to(store.root))


def choose_resume(store: RunStore, *, set_aside: bool) -> Resume:
    """The newest of the run's checkpoints that reads back whole (``store.resume_checkpoints``).

    With ``set_aside`` (the process that writes the run: global rank 0), the unreadable ones move
    to ``checkpoints/unreadable/``; the other ranks of a multi-process run only read, and reach
    the same choice.
    """
    resume = Resume(path=None)
    for path in store.resume_checkpoints():
        reason = unreadable_reason(path)
        if reason is None:
            resume.path = path
            break
        resume.unreadable[str(path.relative_to(store.root))] = reason
        if set_aside:
            aside = store.checkpoints / UNREADABLE_DIR / path.name
            aside.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, aside)
    return resume
