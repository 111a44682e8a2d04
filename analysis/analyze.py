"""``optbench analyze`` as a plain function: sources → frames → the report (tables, figures,
``index.html``). Torch-free, as all of ``analysis``; ``experiments.cli`` parses and calls it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from rich.console import Console

from analysis import frames as F
from analysis.cache import default_cache_dir
from analysis.left_out import none_usable_message
from analysis.load import load
from analysis.report import write_report
from analysis.run_map import read_map

__all__ = ["analyze"]


def analyze(sources: Sequence[str | Path], out: str | Path, *, cache_dir: Optional[str | Path] = None,
            cache: bool = True, run_map: Optional[str | Path] = None, console: Optional[Console] = None) -> Path:
    """Read ``sources`` (run-store directories, directories of wandb runs, ``wandb:ENTITY/PROJECT
    [/GROUP]``) and write the report into ``out``; prints ``report: <page> (<n> runs)`` on
    ``console`` and returns the page's path.

    ``cache_dir``: the parquet cache (default ``$OPTBENCH_CACHE_DIR`` or
    ``~/.cache/optbench/analysis``); ``cache=False`` reads every run again and writes no cache.
    ``run_map``: a map file saying where the fields of runs optbench did not write are
    (``analysis.run_map``). Raises ``ValueError`` (one line), before ``out`` is created, for a
    source that is missing or holds no runs, a map that is bad or does not fit the runs, and runs
    none of which can be compared (naming how many lack which field).
    """
    names = [str(source) for source in sources]
    parsed = read_map(run_map) if run_map is not None else None
    frames = load(names, (cache_dir or default_cache_dir()) if cache else None, run_map=parsed)
    if len(frames.runs) and frames.runs[F.LEFT_OUT].notna().all():
        raise ValueError(none_usable_message(frames.runs))
    page = write_report(frames, out, names)
    (console or Console()).print(f"report: {page} ({len(frames.runs)} runs)")
    return page
