"""Progress reports outside training: data preparation's ``track`` and the duration format."""

from __future__ import annotations

import logging
import re

import pytest

from experiments.callbacks.progress import format_duration, track


@pytest.mark.parametrize("seconds, text", [
    (0.04, "0.0s"), (37.24, "37.2s"), (59.94, "59.9s"), (60, "1m00s"), (185.4, "3m05s"), (3599.4, "59m59s"),
    (3720, "1h02m"), (90000, "25h00m"),
])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_track_yields_every_item_and_reports_progress(caplog):
    """``track`` yields the items unchanged, in order, and logs ``<what>: i/n, ETA ...`` lines at
    INFO (every item with every_s=0) ending with the total time."""
    items = list(range(5))
    with caplog.at_level(logging.INFO, logger="experiments.callbacks.progress"):
        assert list(track(items, "synthesising", every_s=0)) == items
    lines = [r.getMessage() for r in caplog.records]
    assert [re.match(r"synthesising: (\d)/5, ", line)[1] for line in lines] == ["1", "2", "3", "4", "5"]
    assert all("ETA" in line for line in lines[:-1])
    assert re.fullmatch(r"synthesising: 5/5, done in \d+\.\ds", lines[-1])


def test_track_is_quiet_between_reports(caplog):
    """With a long interval only the last item is reported: a fast preparation says one line."""
    with caplog.at_level(logging.INFO, logger="experiments.callbacks.progress"):
        assert list(track("abc", "preparing", every_s=3600)) == ["a", "b", "c"]
    assert [r.getMessage().split(",")[0] for r in caplog.records] == ["preparing: 3/3"]
