"""Tables the CLI prints (rich) and the README embeds (Markdown): optimizers and benchmark rows."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from experiments.bench_optimizers import ADAM_STATE_ROW, REFERENCE_ROW, BenchRow
from optimizers import REGISTRY, optimizer_names, resolved_defaults
from optimizers.registry import LARC_PREFIX

__all__ = ["optimizer_rows", "optimizer_table", "optimizer_markdown", "bench_table", "bench_markdown"]


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
    """The README's optimizer table; a test keeps the README equal to this."""
    lines = ["| name | what | defaults |", "|---|---|---|"]
    lines += [f"| `{n}` | {d} | {o} |" for n, d, o in optimizer_rows() if not n.startswith(LARC_PREFIX)]
    return "\n".join(lines)


def _bench_cells(rows: list[BenchRow]) -> list[list[str]]:
    by_name = {row.name: row for row in rows}
    reference_ms = by_name[REFERENCE_ROW].median_ms
    adam_bytes = by_name[ADAM_STATE_ROW].state_bytes
    cells = []
    for row in rows:
        cells.append([
            row.name,
            f"{row.median_ms:.2f}",
            f"{row.median_ms / reference_ms:.2f}",
            "" if row.state_bytes is None else f"{row.state_bytes / 2**20:.1f}",
            "" if row.state_bytes is None else f"{row.state_bytes / adam_bytes:.3f}",
            "" if row.first_step_s is None else f"{row.first_step_s:.1f}",
        ])
    return cells


_BENCH_COLUMNS = ("optimizer", "ms/step", "x fused Adam", "state MiB", "x Adam state", "first step s")


def bench_table(rows: list[BenchRow], title: str = "") -> Table:
    table = Table(title=title)
    for i, column in enumerate(_BENCH_COLUMNS):
        table.add_column(column, justify="left" if i == 0 else "right", no_wrap=i == 0)
    for cells in _bench_cells(rows):
        table.add_row(*cells)
    return table


def bench_markdown(rows: list[BenchRow]) -> str:
    lines = ["| " + " | ".join(_BENCH_COLUMNS) + " |", "|---" + "|---:" * (len(_BENCH_COLUMNS) - 1) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in _bench_cells(rows)]
    return "\n".join(lines)
