"""Checkpoints written before the run's instrumentation was split into one callback per concern.

Those keep one state, under the callback name ``Instrumentation``: ``first_loss``, ``elapsed``
(training seconds) and, in the later ones, ``step_timer``. The callbacks that replaced it read
their part from there when the checkpoint has no state of their own, so that such a run still
resumes to the result an uninterrupted run writes.
"""

from __future__ import annotations

from typing import Any, Optional

__all__ = ["LEGACY_STATE_KEY", "legacy_state"]

LEGACY_STATE_KEY = "Instrumentation"


def legacy_state(checkpoint: dict[str, Any], state_key: str) -> Optional[dict[str, Any]]:
    """The ``Instrumentation`` state of ``checkpoint`` if it holds none under ``state_key`` (the
    callback asking), else None."""
    states = checkpoint.get("callbacks") or {}
    return states.get(LEGACY_STATE_KEY) if state_key not in states else None
