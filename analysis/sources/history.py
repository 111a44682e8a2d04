"""A wandb run's history (rows of key → value, one row per ``wandb.log`` call) as one wide Arrow
table: a row per history row, a column per key whose values are all numbers.

Values arrive as JSON text (a ``.wandb`` file) or as Python values (the public API), one row at a
time or as whole arrays of (row, key, value) items. They are grouped by key with pandas and each
key's values decoded at once (one ``json.loads`` of all of them), and a column is built with
numpy, not a Python object per cell: histories of thousands of rows per run and thousands of runs
are the common case. Keys whose values are not all numbers (text, media, tables) are not columns;
``objects`` returns those a reader asks for by name.
"""

from __future__ import annotations

import json
from functools import cached_property
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["History"]


class History:
    """Items added by row (``add``) or in bulk (``add_items``), read back as a wide table."""

    def __init__(self, json_values: bool) -> None:
        """``json_values``: the values added are JSON text (decoded in ``table`` and ``objects``)."""
        self.json_values = json_values
        self.rows = 0  # history rows so far (rows without items count)
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, items: Iterable[tuple[str, Any]]) -> None:
        """One more row, as (key, value) pairs."""
        items = list(items)
        if items:
            self.add_items([self.rows] * len(items), [k for k, _ in items], [v for _, v in items])
        self.rows += 1

    def add_items(self, rows: Sequence[int], keys: Sequence[str], values: Sequence[Any]) -> None:
        """Items at the given (0-based) rows; the history then has at least ``max(rows) + 1`` rows."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows):
            self._parts.append((rows, _objects(keys), _objects(values)))
            self.rows = max(self.rows, int(rows.max()) + 1)
        self.__dict__.pop("_columns", None)

    @cached_property
    def _columns(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per key, its rows and values, in the order added."""
        if not self._parts:
            return {}
        rows, keys, values = (np.concatenate(part) for part in zip(*self._parts))
        codes, names = pd.factorize(keys)
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(names) + 1))
        return {str(name): (rows[order[a:b]], values[order[a:b]]) for name, a, b in zip(names, bounds[:-1], bounds[1:])}

    def _values(self, key: str) -> list[Any]:
        values = self._columns[key][1]
        return _json(values) if self.json_values else list(values)

    def objects(self, key: str) -> list[tuple[int, Any]]:
        """(row, value) for every row that logged ``key`` (e.g. a table's reference)."""
        if key not in self._columns:
            return []
        return list(zip(self._columns[key][0].tolist(), self._values(key)))

    def table(self) -> pa.Table:
        """Every numeric key as a column (int64 where every value is whole, else float64; a
        logged NaN stays NaN, a row without the key is null). Raises ``ValueError`` for a value
        that is not JSON."""
        columns = {}
        for key, (rows, values) in self._columns.items():
            array = _numbers(values) if self.json_values else _numeric(list(values))
            if array is not None:
                columns[key] = _placed(rows, array, self.rows)
        return pa.table(columns)


def _objects(values: Sequence[Any]) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype == object:
        return values
    array = np.empty(len(values), dtype=object)
    for index, value in enumerate(values):  # not array[:] = values: numpy would unpack list values
        array[index] = value
    return array


def _json(texts: np.ndarray) -> list[Any]:
    return json.loads(f"[{','.join(texts)}]")


def _numbers(texts: np.ndarray) -> Optional[pa.Array]:
    """JSON texts as a numeric array: parsed by Arrow where every one is an integer, or every
    one a number (NaN and ±Infinity as JSON writers spell them), else decoded as JSON; None if
    they are not all numbers."""
    text = pa.array(texts, type=pa.string())
    kinds = (pa.int64(), pa.float64()) if texts[0].lstrip("-").isdigit() else (pa.float64(),)
    for kind in kinds:
        try:
            return pc.cast(text, kind)
        except pa.ArrowInvalid:
            continue
    return _numeric(_json(texts))


def _numeric(values: list[Any]) -> Optional[pa.Array]:
    """Python values as an int64 or float64 array (None: null), or None if not all are numbers."""
    try:
        array = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed kinds, e.g. numbers and text
        return None
    return array if pa.types.is_integer(array.type) or pa.types.is_floating(array.type) else None


def _placed(rows: np.ndarray, array: pa.Array, n: int) -> pa.Array:
    """``array``'s values at ``rows`` of an ``n``-row column (null elsewhere, and where a value is)."""
    valid = array.is_valid().to_numpy(zero_copy_only=False)
    present = array.drop_null().to_numpy()
    full = np.zeros(n, dtype=present.dtype)
    full[rows[valid]] = present
    missing = np.ones(n, dtype=bool)
    missing[rows[valid]] = False
    return pa.array(full, mask=missing)
