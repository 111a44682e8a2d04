"""The optimizer listing: what ``optbench optimizers`` prints (rich) and docs/optimizers.md embeds (Markdown)."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from optimizers import REGISTRY, optimizer_names, resolved_defaults
from optimizers.outside import distribution_of
from optimizers.registry import LARC_PREFIX, OptimInfo, lookup

__all__ = ["optimizer_rows", "optimizer_table", "optimizer_markdown"]


def _format(value: Any) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(_format(v) for v in value) + ")"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _origin(entry: OptimInfo, versions: bool) -> str:
    """Where the entry's code comes from: ``optbench``, ``torch``, or the package (and with
    ``versions`` its version) of a peer or plugin, with the extra that installs a peer."""
    if entry.distribution is not None:  # a plugin
        package, version = entry.distribution
        return f"{package} {version}" if versions else str(package)
    extra = f" (optbench[{entry.extra}])" if entry.extra else ""
    try:
        target = entry.load()
    except ValueError:
        return f"not installed: optbench[{entry.extra}]"
    if not entry.outside:
        return "torch" if target.__module__.startswith("torch.") else "optbench"
    package, version = distribution_of(target)
    return (f"{package} {version}" if versions else str(package)) + extra


def optimizer_rows(names: list[str] | None = None, versions: bool = True) -> list[tuple[str, str, str, str]]:
    """(name, from, description, defaults) for every registered name (or ``names``): defaults read
    from the code; a peer whose package is missing says which extra installs it, a plugin that
    does not load says why."""
    rows = []
    for name in names if names is not None else optimizer_names():
        try:
            entry, larc = lookup(name)
        except ValueError as error:  # a plugin that does not load: listed, saying why
            rows.append((name, "", str(error), ""))
            continue
        description = f"LARC over {entry.name}" if larc else entry.description
        try:
            defaults = ", ".join(f"{k}={_format(v)}" for k, v in resolved_defaults(name).items())
        except ValueError:
            defaults = ""
        rows.append((name, _origin(entry, versions), description, defaults))
    return rows


def optimizer_table() -> Table:
    table = Table(title="optbench optimizers (build_optimizer / optimizer.name; also any package.module:Class)")
    for column in ("name", "from", "what", "defaults"):
        table.add_column(column, no_wrap=column == "name")
    for row in optimizer_rows():
        table.add_row(*row)
    return table


def optimizer_markdown() -> str:
    """The registry table of docs/optimizers.md (built-ins and peers, without versions or the
    plugins of this machine); a test keeps the page equal to this."""
    lines = ["| name | from | what | defaults |", "|---|---|---|---|"]
    lines += [f"| `{n}` | {o} | {d} | {v} |" for n, o, d, v in optimizer_rows(list(REGISTRY), versions=False)]
    return "\n".join(lines)
