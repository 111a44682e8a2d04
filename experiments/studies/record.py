"""What a study records beside its runs, and the role each run played in it.

``<study dir>/study.json``: the spec as written and the command-line overrides of the last
invocation (``optbench study status`` plans the study again from it).

``<study dir>/selections.json``: per cell, its grid values, its selection state, the selected
point, the runs that tried each point, how many times the search was extended beyond an edge and
the edges the selection still sits on, and the runs of the seeds phase. Written by ``optbench
study run`` after each phase, read by the analysis to score each selected point on its
confirmation runs only, and to tell apart the variants of an optimizer the grid set.

Torch-free: the analysis imports it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

__all__ = ["RECORD", "SELECTIONS", "ROLES", "SEARCHED", "SELECTING", "CONFIRMING", "MEASURING", "read_json",
           "run_roles", "variant"]

RECORD = "study.json"
SELECTIONS = "selections.json"

# A run's role in its study: a search trial of a point not selected; a run of the selected point
# (it selected it, so it does not score it); a confirmation run (seeds phase: it scores the
# point); a run that measured the gradient noise scale of the selected point (not scored).
SEARCHED, SELECTING, CONFIRMING, MEASURING = "searched", "selecting", "confirming", "measuring"
ROLES = (SEARCHED, SELECTING, CONFIRMING, MEASURING)


def read_json(path: Path) -> Optional[Any]:
    """The JSON in ``path``; None if there is no such file. A file that does not parse raises
    ``ValueError`` naming it."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as error:
        raise ValueError(f"cannot read {path}: {error}") from None


def run_roles(study_dir: Path) -> dict[str, tuple[str, str]]:
    """Run id → (role, variant) of every run ``selections.json`` in ``study_dir`` names; empty
    when the study recorded none. ``role`` is one of ``ROLES``; ``variant`` names the optimizer
    options the study's grid set for the run's cell (``momentum=0``), "" if none (see
    ``variant``)."""
    selections = read_json(Path(study_dir) / SELECTIONS) or {"cells": []}
    out: dict[str, tuple[str, str]] = {}
    for cell in selections["cells"]:
        name = variant(cell["cell"])
        for run_id in cell.get("trials", []):
            out.setdefault(run_id, (SEARCHED, name))
        for key, role in (("selecting", SELECTING), ("confirming", CONFIRMING), ("measuring", MEASURING)):
            for run_id in cell.get(key, []):
                out[run_id] = (role, name)
    return out


def variant(cell: dict[str, Any]) -> str:
    """The optimizer options a cell's grid values set (``optimizer.<option>``, not its name or
    learning rate), as ``momentum=0, nesterov=True``: a study that grids an option compares the
    optimizer with and without it, so the analysis must not pool them."""
    options = {k[len("optimizer."):]: v for k, v in cell.items()
               if k.startswith("optimizer.") and k not in ("optimizer.name", "optimizer.lr")}
    return ", ".join(f"{k}={v}" for k, v in sorted(options.items()))
