"""Search spaces as data: one ``Dimension`` per swept config key, and the points of a search.

A dimension is written in a study spec as a list of values or as a mapping with one range:

- ``{log_range: [a, b], points: N}``: a..b on a log scale (learning rates);
- ``{one_minus_log_range: [a, b], points: N}``: 1 − x with x in a..b on a log scale (momentum:
  ``[0.001, 0.1]`` covers 0.9..0.999 with as many points per decade near 1 as near 0.9);
- ``{range: [a, b], points: N}``: a..b on a linear scale;
- ``[v1, v2, ...]`` (or ``{values: [...]}``): these values.

A search takes either every combination of the dimensions' points (``method: grid``; ``points``
needed for ranges) or ``trials`` quasi-random points (``method: sobol`` or ``halton``, scrambled
with a fixed ``seed`` so that every invocation of a study plans the same points; ``points`` is
then not used). Generated numbers keep 4 significant digits: ``1e-3`` rather than
``0.0010000000000000002``, so that a point reads as it would be typed.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

__all__ = ["Dimension", "SpaceError", "METHODS", "EXTENSION_TRIALS", "parse_dimension", "search_points", "edge_keys",
           "extension_values"]

METHODS = ("grid", "sobol", "halton")
_RANGES = ("log_range", "one_minus_log_range", "range")
EXTENSION_TRIALS = 2  # values per edge key and extension: one and two search spacings beyond the edge


class SpaceError(ValueError):
    """A search-space entry that cannot be used: the message is one line naming it."""


@dataclass(frozen=True)
class Dimension:
    """One swept key: a range (``kind`` in log_range | one_minus_log_range | range) or ``values``."""

    key: str
    kind: str
    low: Optional[float] = None
    high: Optional[float] = None
    points: Optional[int] = None
    values: tuple[Any, ...] = ()

    def grid(self) -> list[Any]:
        """The dimension's values for ``method: grid``: its list, or ``points`` evenly spaced
        (on its scale) from ``low`` to ``high``, both included."""
        if self.kind == "values":
            return list(self.values)
        if self.points is None:
            raise SpaceError(f"search dimension {self.key!r} needs 'points' for method grid")
        steps = [i / (self.points - 1) for i in range(self.points)] if self.points > 1 else [0.5]
        return [self.at(u) for u in steps]

    def at(self, u: float) -> Any:
        """The value at ``u`` in [0, 1] along the dimension (its scale applied)."""
        if self.kind == "values":
            return self.values[min(int(u * len(self.values)), len(self.values) - 1)]
        low, high = self.scaled_bounds()
        return self.from_scale(low + u * (high - low))

    def scaled_bounds(self) -> tuple[float, float]:
        """The range's bounds on its scale (one_minus_log_range's bounds are those of 1 − x)."""
        if self.kind == "range":
            return self.low, self.high
        return math.log(self.low), math.log(self.high)

    def to_scale(self, value: float) -> float:
        """A range's value on its scale: x (range), log x (log_range), log(1 − x) (one_minus_log_range)."""
        if self.kind == "range":
            return value
        return math.log(value if self.kind == "log_range" else 1 - value)

    def from_scale(self, s: float) -> Optional[float]:
        """The inverse of ``to_scale``, rounded to 4 significant digits (of 1 − x for
        one_minus_log_range); None where 1 − x leaves (0, 1)."""
        if self.kind == "range":
            return _round(s)
        x = _round(math.exp(s))
        if self.kind == "log_range":
            return x
        return float(f"{1 - x:.12g}") if 0 < x < 1 else None


def _round(x: float) -> float:
    return float(f"{x:.4g}")


def parse_dimension(key: str, raw: Any) -> Dimension:
    """A spec entry (list or one-range mapping) as a ``Dimension``; ``SpaceError`` if malformed."""
    if isinstance(raw, list):
        raw = {"values": raw}
    if not isinstance(raw, Mapping):
        raise SpaceError(f"search dimension {key!r} must be a list of values or a mapping with one of "
                         f"{', '.join(_RANGES)}, got {raw!r}")
    unknown = set(raw) - {*_RANGES, "values", "points"}
    if unknown:
        raise SpaceError(f"search dimension {key!r}: unknown entry {sorted(unknown)[0]!r} "
                         f"(valid: {', '.join([*_RANGES, 'values', 'points'])})")
    kinds = [k for k in (*_RANGES, "values") if k in raw]
    if len(kinds) != 1:
        raise SpaceError(f"search dimension {key!r} needs exactly one of {', '.join([*_RANGES, 'values'])}")
    kind = kinds[0]
    if kind == "values":
        values = raw["values"]
        if not isinstance(values, list) or not values:
            raise SpaceError(f"search dimension {key!r}: values must be a non-empty list")
        if "points" in raw:
            raise SpaceError(f"search dimension {key!r}: 'points' goes with a range, not with values")
        return Dimension(key, kind, values=tuple(values))
    bounds = raw[kind]
    if (not isinstance(bounds, list) or len(bounds) != 2
            or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)):
        raise SpaceError(f"search dimension {key!r}: {kind} must be [low, high], got {bounds!r}")
    low, high = float(bounds[0]), float(bounds[1])
    if not low < high:
        raise SpaceError(f"search dimension {key!r}: {kind} needs low < high, got {bounds!r}")
    if kind != "range" and low <= 0:
        raise SpaceError(f"search dimension {key!r}: {kind} needs low > 0, got {bounds!r}")
    if kind == "one_minus_log_range" and high >= 1:
        raise SpaceError(f"search dimension {key!r}: one_minus_log_range needs high < 1, got {bounds!r}")
    points = raw.get("points")
    if points is not None and (not isinstance(points, int) or isinstance(points, bool) or points < 1):
        raise SpaceError(f"search dimension {key!r}: points must be a positive integer, got {points!r}")
    return Dimension(key, kind, low, high, points)


def search_points(dimensions: Sequence[Dimension], method: str, trials: Optional[int] = None,
                  seed: int = 0) -> list[dict[str, Any]]:
    """The points of a search over ``dimensions`` (key → value each), in a fixed order.

    ``grid``: the cartesian product of every dimension's ``grid()``, first dimension slowest.
    ``sobol`` / ``halton``: ``trials`` points of scipy's scrambled sequence seeded with ``seed``
    (Sobol's balance properties hold for powers of two; other counts are allowed).
    """
    if not dimensions:
        return [{}]
    if method == "grid":
        return [dict(zip((d.key for d in dimensions), combo))
                for combo in itertools.product(*(d.grid() for d in dimensions))]
    from scipy.stats import qmc

    engine_class = {"sobol": qmc.Sobol, "halton": qmc.Halton}[method]
    engine = engine_class(d=len(dimensions), scramble=True, seed=seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*balance properties.*")
        unit = engine.random(trials)
    return [{d.key: d.at(float(u)) for d, u in zip(dimensions, row)} for row in unit]


def edge_keys(points: Sequence[Mapping[str, Any]], chosen: int) -> list[str]:
    """The numeric keys whose value at ``points[chosen]`` is the smallest or largest value that
    the search tried: the best point may lie outside the space searched (widen it)."""
    edges = []
    for key, value in points[chosen].items():
        tried = {p[key] for p in points}
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in tried)
        if numeric and len(tried) > 1 and value in (min(tried), max(tried)):
            edges.append(key)
    return edges


def extension_values(dim: Dimension, tried: Sequence[float], edge: float, spacings: int) -> list[float]:
    """``EXTENSION_TRIALS`` values of ``dim`` beyond ``edge``, the smallest or largest of the
    values ``tried``: one and two *spacings* beyond it on the dimension's scale, a spacing being
    the range's width on that scale over ``spacings`` (the search's points less one), so that the
    extension has the search's scale and density. Values outside the dimension's domain, or
    tried already, are left out; a list of values (not a range) is not extended."""
    if dim.kind == "values":
        return []
    scaled = [dim.to_scale(v) for v in tried]
    low, high = dim.scaled_bounds()
    spacing = (high - low) / max(1, spacings)
    here = dim.to_scale(edge)
    direction = 1.0 if here >= max(scaled) else -1.0
    values = [dim.from_scale(here + direction * step * spacing) for step in range(1, EXTENSION_TRIALS + 1)]
    return [v for v in values if v is not None and v not in tried]
