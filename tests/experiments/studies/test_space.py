"""Search spaces: the values each kind of dimension yields, quasi-random points, edges."""

from __future__ import annotations

import math

import pytest

from experiments.studies.space import SpaceError, edge_keys, extension_values, parse_dimension, search_points


@pytest.mark.parametrize("raw, expected", [
    ({"log_range": [1e-4, 1], "points": 5}, [1e-4, 1e-3, 1e-2, 0.1, 1.0]),
    ({"one_minus_log_range": [1e-3, 0.1], "points": 3}, [0.999, 0.99, 0.9]),
    ({"range": [0, 1], "points": 3}, [0.0, 0.5, 1.0]),
    ({"log_range": [0.01, 1], "points": 1}, [0.1]),
    ([0.9, 0.99], [0.9, 0.99]),
    ({"values": ["cosine", "constant"]}, ["cosine", "constant"]),
])
def test_grid_values(raw, expected) -> None:
    assert parse_dimension("k", raw).grid() == expected


@pytest.mark.parametrize("raw, message", [
    ({"log_range": [0, 1]}, "needs low > 0"),
    ({"log_range": [1, 0.1]}, "needs low < high"),
    ({"one_minus_log_range": [0.1, 1]}, "needs high < 1"),
    ({"log_range": [1e-3]}, "must be [low, high]"),
    ({"log_range": [1e-3, 1], "range": [0, 1]}, "exactly one of"),
    ({"log_rnge": [1e-3, 1]}, "unknown entry 'log_rnge'"),
    ({"log_range": [1e-3, 1], "points": 0}, "points must be a positive integer"),
    ({"values": []}, "non-empty list"),
    (0.1, "must be a list of values or a mapping"),
])
def test_bad_dimensions(raw, message) -> None:
    with pytest.raises(SpaceError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_dimension("k", raw)


def test_grid_search_is_the_cartesian_product_first_dimension_slowest() -> None:
    dims = [parse_dimension("a", [1, 2]), parse_dimension("b", {"range": [0, 1], "points": 3})]
    points = search_points(dims, "grid")
    assert points == [{"a": a, "b": b} for a in (1, 2) for b in (0.0, 0.5, 1.0)]


@pytest.mark.parametrize("method", ["sobol", "halton"])
def test_quasi_random_points_fill_the_space_on_its_scale_and_repeat(method: str) -> None:
    dims = [parse_dimension("lr", {"log_range": [1e-4, 1]}),
            parse_dimension("momentum", {"one_minus_log_range": [1e-3, 0.1]})]
    points = search_points(dims, method, trials=16, seed=0)
    assert points == search_points(dims, method, trials=16, seed=0)  # a study plans the same runs every time
    assert points != search_points(dims, method, trials=16, seed=1)
    lrs = [p["lr"] for p in points]
    assert all(1e-4 <= lr <= 1 for lr in lrs) and all(0.9 <= p["momentum"] <= 0.999 for p in points)
    # low discrepancy on the log scale: each of the 4 decades holds 4 of the 16 points
    decades = sorted(math.floor(-math.log10(lr)) for lr in lrs)
    assert [decades.count(d) for d in range(4)] == [4, 4, 4, 4]


def test_edge_keys_name_the_dimensions_whose_chosen_value_is_extreme() -> None:
    points = [{"lr": 0.1, "m": 0.9}, {"lr": 0.01, "m": 0.99}, {"lr": 0.001, "m": 0.95}]
    assert edge_keys(points, 0) == ["lr", "m"]
    assert edge_keys(points, 2) == ["lr"]
    assert edge_keys([{"lr": 0.1}], 0) == []  # one value: no space to be on the edge of


@pytest.mark.parametrize("raw, tried, edge, spacings, values", [
    ({"log_range": [1e-3, 1e-1]}, [1e-3, 1e-2, 1e-1], 1e-1, 2, [1.0, 10.0]),
    ({"log_range": [1e-3, 1e-1]}, [1e-3, 1e-2, 1e-1], 1e-3, 2, [1e-4, 1e-5]),
    ({"one_minus_log_range": [0.01, 0.1]}, [0.9, 0.99], 0.9, 1, []),  # 1 − 1 and 1 − 10: out of (0, 1)
    ({"one_minus_log_range": [0.001, 0.01]}, [0.99, 0.999], 0.99, 1, [0.9]),
    ({"range": [0, 1]}, [0.0, 0.5, 1.0], 1.0, 2, [1.5, 2.0]),
    ([1, 2, 3], [1, 2, 3], 3, 2, []),
], ids=["log-up", "log-down", "momentum-out-of-domain", "momentum-down", "linear", "values"])
def test_extension_values_continue_the_range_on_its_scale(raw, tried, edge, spacings, values) -> None:
    assert extension_values(parse_dimension("k", raw), tried, edge, spacings) == values
