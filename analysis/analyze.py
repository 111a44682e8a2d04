"""``optbench analyze`` as a plain function: sources → frames → the report (tables, figures,
``index.html``). Torch-free, as all of ``analysis``; ``experiments.cli`` parses and calls it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from rich.console import Console

from analysis.cache import default_cache_dir
from analysis.load import load
from analysis.report import write_report

__all__ = ["analyze"]


def analyze(sources: Sequence[str | Path], out: str | Path, *, cache_dir: Optional[str | Path] = None,
            cache: bool = True, console: Optional[Console] = None) -> Path:
    """Read ``sources`` (run-store directories, directories of wandb runs, ``wandb:ENTITY/PROJECT
    [/GROUP]``) and write the report into ``out``; prints ``report: <page> (<n> runs)`` on
    ``console`` and returns the page's path.

    ``cache_dir``: the parquet cache (default ``$OPTBENCH_CACHE_DIR`` or
    ``~/.cache/optbench/analysis``); ``cache=False`` reads every run again and writes no cache.
    A source that is missing or holds no runs raises ``ValueError`` naming it, before ``out`` is
    created.
    """
    names = [str(source) for source in sources]
    frames = load(names, (cache_dir or default_cache_dir()) if cache else None)
    page = write_report(frames, out, names)
    (console or Console()).print(f"report: {page} ({len(frames.runs)} runs)")
    return page
