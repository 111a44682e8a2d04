"""The "did you mean" hint of every unknown-name error (optimizers, options, tasks, config keys).

One function, so that each registry's error suggests the closest valid name the same way. It
lives here, with no dependency beyond the standard library, because the optimizer registry (torch
only) needs it as much as the experiment side does.
"""

from __future__ import annotations

import difflib
from typing import Iterable

__all__ = ["did_you_mean"]


def did_you_mean(name: str, valid: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the valid name closest to ``name``, or ``""`` if none is close.

    Close means difflib's ratio of at least 0.6 (twice the matching characters over the total
    length), so a typo or a missing prefix matches and an unrelated word does not.
    """
    close = difflib.get_close_matches(str(name), [str(v) for v in valid], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
