"""Durations: read as the policy file and the commands write them ("30s", "5m", "1h30m"), and
written back two ways, as the file writes them (`written`: reports about the policy) and as people
say them (`spoken`: Slack, the web pages, the CLI). Pure: no I/O."""

from __future__ import annotations

import re

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def parse_duration(text: str | int | float) -> float:
    """'30s', '5m', '2h', '1h30m', '1d' (or a bare number of seconds) -> seconds."""
    if isinstance(text, bool):
        raise ValueError("a duration must be like 30s, 5m, 2h")
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError("a duration cannot be negative")
        return float(text)
    compact = str(text).strip().replace(" ", "")
    parts = _DURATION.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"bad duration {text!r}: use a number and a unit, like 30s, 5m, 2h")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


def written(seconds: float | None, *, none: str = "none") -> str:
    """As the policy file writes it, exactly (300 -> 5m, 5400 -> 1h30m, 1.5 -> 1.5s):
    `parse_duration(written(s)) == s`."""
    if seconds is None:
        return none
    if seconds != int(seconds):
        return f"{seconds:g}s"
    left, parts = int(seconds), []
    for unit, size in _UNITS:
        if left >= size:
            parts.append(f"{left // size}{unit}")
            left %= size
    return "".join(parts) or "0s"


def spoken(seconds: float | None, *, none: str = "-") -> str:
    """As people say it, to the nearest second and in its two largest units (3725 -> "1h 2m",
    90061 -> "1d 1h"): a reader at 3 AM wants the size, not the exact figure. Negative: its size
    (the caller says "overdue")."""
    if seconds is None:
        return none
    left = int(round(abs(seconds)))
    parts = []
    for unit, size in _UNITS:
        if left >= size:
            parts.append(f"{left // size}{unit}")
            left %= size
    return " ".join(parts[:2]) or "0s"
