"""Nested mappings as dotted keys: the one ``flatten`` that study specs, ``study status`` and the
analysis' ``config.*`` columns share."""

from __future__ import annotations

import pytest

from experiments.dotted_keys import flatten


@pytest.mark.parametrize("mapping, prefix, expected", [
    ({"trainer": {"max_steps": 5}}, "", {"trainer.max_steps": 5}),
    ({"trainer.max_steps": 5, "optimizer": {"name": "sgd"}}, "", {"trainer.max_steps": 5, "optimizer.name": "sgd"}),
    ({"a": {"b": {"c": 1, "d": None}}, "e": [1, {"f": 2}]}, "", {"a.b.c": 1, "a.b.d": None, "e": [1, {"f": 2}]}),
    ({"optimizer": {"options": {}}, "seed": 0}, "", {"seed": 0}),
    ({"optimizer": {"lr": 0.1}, "task": "lm"}, "config.", {"config.optimizer.lr": 0.1, "config.task": "lm"}),
    ({}, "config.", {}),
], ids=["nested", "dotted-and-nested", "deep-lists-and-nulls", "empty-mapping-vanishes", "prefix", "empty"])
def test_flatten(mapping, prefix, expected):
    """Nested and dotted keys alike become dotted keys after the prefix; lists and nulls are
    values (a mapping inside a list is not flattened); an empty mapping leaves no key."""
    assert flatten(mapping, prefix) == expected
