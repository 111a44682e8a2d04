"""The optimizer listing: what ``optbench optimizers`` prints (rich) and docs/optimizers.md embeds (Markdown)."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from optimizers import REGISTRY, optimizer_names, resolved_defaults
from optimizers.registry import LARC_PREFIX

__all__ = ["optimizer_rows", "optimizer_table", "optimizer_markdown"]


def _format(value: Any) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(_format(v) for v in value) + ")"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def optimizer_rows() -> list[tuple[str, str, str]]:
    """(name, description, defaults) for every registered name, defaults read from the code."""
    rows = []
    for name in optimizer_names():
        inner = name[len(LARC_PREFIX):] if name.startswith(LARC_PREFIX) else name
        description = REGISTRY[inner].description
        if inner != name:
            description = f"LARC over {inner}"
        defaults = ", ".join(f"{k}={_format(v)}" for k, v in resolved_defaults(name).items())
        rows.append((name, description, defaults))
    return rows


def optimizer_table() -> Table:
    table = Table(title="optbench optimizers (build_optimizer / optimizer.name)")
    for column in ("name", "what", "defaults"):
        table.add_column(column, no_wrap=column == "name")
    for row in optimizer_rows():
        table.add_row(*row)
    return table


def optimizer_markdown() -> str:
    """The registry table of docs/optimizers.md; a test keeps the page equal to this."""
    lines = ["| name | what | defaults |", "|---|---|---|"]
    lines += [f"| `{n}` | {d} | {o} |" for n, d, o in optimizer_rows() if not n.startswith(LARC_PREFIX)]
    return "\n".join(lines)
