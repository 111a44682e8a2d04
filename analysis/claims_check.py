"""``optbench claims`` as a plain function: sources → the paper-claims check
(``analysis.claims``) → ``claims.md`` and ``claims.csv`` in the output directory, and a table on
the console. Torch-free; ``experiments.cli`` parses and calls it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from rich.console import Console
from rich.table import Table

from analysis.cache import default_cache_dir
from analysis.claims import Claim, claims_markdown, claims_table, paper_claims
from analysis.compare import compare
from analysis.load import load
from analysis.roles import read_roles

__all__ = ["check_claims"]

_STYLES = {"supported": "green", "contradicted": "red", "inconclusive": "yellow"}


def check_claims(sources: Sequence[str | Path], out: str | Path, *, cache_dir: Optional[str | Path] = None,
                 cache: bool = True, console: Optional[Console] = None) -> list[Claim]:
    """Read ``sources`` (as ``optbench analyze`` does), check every paper claim against them,
    write ``claims.md`` and ``claims.csv`` into ``out``, print the verdicts; return the claims. A
    source that is missing or holds no runs raises ``ValueError`` naming it, before ``out`` is
    created."""
    frames = load([str(source) for source in sources], (cache_dir or default_cache_dir()) if cache else None)
    claims = paper_claims(compare(frames, read_roles(frames.runs)))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "claims.md").write_text(claims_markdown(claims))
    claims_table(claims).to_csv(out / "claims.csv", index=False)
    table = Table(title=f"paper claims ({len(frames.runs)} runs) -> {out / 'claims.md'}", title_justify="left")
    for column in ("claim", "verdict", "evidence"):
        table.add_column(column, overflow="fold")
    for claim in claims:
        table.add_row(claim.statement, f"[{_STYLES[claim.verdict]}]{claim.verdict}", claim.evidence)
    (console or Console()).print(table)
    return claims
