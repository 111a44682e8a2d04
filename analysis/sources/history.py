"""A wandb run's history (rows of key → value, one row per ``wandb.log`` call) as one wide Arrow
table: a row per history row, a column per key whose values are all numbers.

Values arrive as JSON text (a ``.wandb`` file) or as Python values (the public API). They are
gathered per key and decoded per key at once (one ``json.loads`` of all of a key's values), and a
column is built with numpy, not a Python object per cell: histories of thousands of rows per run
and thousands of runs are the common case. Keys whose values are not all numbers (text, media,
tables) are not columns; ``objects`` returns those a reader asks for by name.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Optional

import numpy as np
import pyarrow as pa

__all__ = ["History"]


class History:
    """Rows added one at a time (``add``), read back as a wide table (``table``)."""

    def __init__(self, json_values: bool) -> None:
        """``json_values``: the values added are JSON text (decoded in ``table``)."""
        self.json_values = json_values
        self.rows = 0
        self._columns: dict[str, tuple[list[int], list[Any]]] = {}

    def add(self, items: Iterable[tuple[str, Any]]) -> None:
        """One history row, as (key, value) pairs."""
        row, columns = self.rows, self._columns
        for key, value in items:
            column = columns.get(key)
            if column is None:
                column = columns[key] = ([], [])
            column[0].append(row)
            column[1].append(value)
        self.rows += 1

    def _values(self, key: str) -> list[Any]:
        values = self._columns[key][1]
        return json.loads(f"[{','.join(values)}]") if self.json_values else values

    def objects(self, key: str) -> list[tuple[int, Any]]:
        """(row, value) for every row that logged ``key`` (e.g. a table's reference)."""
        if key not in self._columns:
            return []
        return list(zip(self._columns[key][0], self._values(key)))

    def table(self) -> pa.Table:
        """Every numeric key as a column (int64 where every value is whole, else float64; a
        logged NaN stays NaN, a row without the key is null). Raises ``ValueError`` for a value
        that is not JSON."""
        columns = {}
        for key in self._columns:
            column = _numeric(self._columns[key][0], self._values(key), self.rows)
            if column is not None:
                columns[key] = column
        return pa.table(columns)


def _numeric(rows: list[int], values: list[Any], n: int) -> Optional[pa.Array]:
    try:
        array = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed kinds, e.g. numbers and text
        return None
    if not (pa.types.is_integer(array.type) or pa.types.is_floating(array.type)):
        return None
    valid = array.is_valid().to_numpy(zero_copy_only=False)
    at = np.asarray(rows, dtype=np.int64)[valid]
    present = array.drop_null().to_numpy()
    full = np.zeros(n, dtype=present.dtype)
    full[at] = present
    missing = np.ones(n, dtype=bool)
    missing[at] = False
    return pa.array(full, mask=missing)
