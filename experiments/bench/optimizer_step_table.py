"""The optimizer-step benchmark's table: printed by ``optbench bench optimizers`` (rich) and, with
``--markdown``, as the Markdown the docs embed."""

from __future__ import annotations

from rich.table import Table

from experiments.bench.optimizer_steps import ADAM_STATE_ROW, REFERENCE_ROW, BenchRow

__all__ = ["bench_table", "bench_markdown"]


def _bench_cells(rows: list[BenchRow]) -> list[list[str]]:
    by_name = {row.name: row for row in rows}
    reference = by_name[REFERENCE_ROW]
    adam_bytes = by_name[ADAM_STATE_ROW].state_bytes
    cells = []
    for row in rows:
        cells.append([
            row.name,
            f"{row.median_ms:.2f}",
            f"{row.ratio_to(reference):.2f}",
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
