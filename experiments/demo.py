"""``optbench demo`` as a plain function: the built-in ``demo`` study, then its report."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from rich.console import Console

from analysis.analyze import analyze
from experiments.studies.commands import study_run
from experiments.studies.plan import plan_study
from experiments.studies.spec import load_spec

__all__ = ["demo"]

DEMO_STUDY = "demo"  # the built-in study: every task, a slice of batch sizes


def demo(overrides: Sequence[str] = (), *, max_parallel: int = 2, out: str | Path = "report/demo",
         console: Optional[Console] = None) -> int:
    """Run the built-in ``demo`` study (``overrides`` apply to every run, ``max_parallel`` runs
    at a time), then write its report into ``out``. Returns the exit status: the study's when it
    did not finish (see ``study_run``), else 0 once the report is written."""
    console = console or Console()
    code = study_run(DEMO_STUDY, overrides, max_parallel=max_parallel, console=console)
    if code != 0:
        return code
    analyze([plan_study(load_spec(DEMO_STUDY), overrides).study_dir], out, console=console)
    return 0
