"""Durations as the policy file writes them (parsed, and written back) and as people read them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.policy.durations import parse_duration, spoken, written


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("2h", 7200), ("1h30m", 5400), ("1d", 86400), (0, 0), ("250ms", 0.25)],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "5 minutes", "m5", "-5s", "5x", True])
def test_bad_durations(text: str | bool) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(("seconds", "text"), [(0, "0s"), (300, "5m"), (5400, "1h30m"), (90061, "1d1h1m1s"),
                                               (1.5, "1.5s"), (None, "none")])
def test_written_as_the_policy_file_writes_it(seconds: float | None, text: str) -> None:
    assert written(seconds) == text


@given(st.integers(min_value=0, max_value=400 * 86400))
def test_written_reads_back_as_the_same_duration(seconds: int) -> None:
    assert parse_duration(written(seconds)) == seconds


@pytest.mark.parametrize(("seconds", "text"), [
    (None, "-"), (0, "0s"), (0.4, "0s"), (59.6, "1m"), (3605, "1h 5s"), (5400, "1h 30m"), (-90, "1m 30s"),
    # the action page cut "1d 10h 10m 10s" at 12 characters and showed "1d 10h 10m 1"
    (86400 + 36000 + 610, "1d 10h"),
])
def test_spoken_gives_the_two_largest_units(seconds: float | None, text: str) -> None:
    assert spoken(seconds) == text
