"""The one-line error for a YAML file that does not parse (run configs and study specs alike)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["yaml_error"]


def yaml_error(path: Path | str, error: Exception) -> str:
    """``cannot parse <path>: <what>``: where (1-based line and column, as editors count), what
    went wrong and in which construct, e.g. ``cannot parse run.yaml: line 2, column 1: expected
    ',' or ']', but got '<stream end>' (while parsing a flow sequence that starts at line 1,
    column 10)``. An error without a position is its first line."""
    problem = getattr(error, "problem", None)
    mark = getattr(error, "problem_mark", None)
    if problem is None or mark is None:
        return f"cannot parse {path}: {str(error).splitlines()[0]}"
    text = f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    context, context_mark = getattr(error, "context", None), getattr(error, "context_mark", None)
    if context:
        where = (f" that starts at line {context_mark.line + 1}, column {context_mark.column + 1}"
                 if context_mark else "")
        text += f" ({context}{where})"
    return f"cannot parse {path}: {text}"
