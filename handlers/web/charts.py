"""The service page's charts as geometry, pure: a service's history in, rectangles out. The
template draws them as inline SVG (no script, no request to the internet)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from storage.queries.pages import Decided

# One colour per outcome, each with at least 3:1 contrast on white (WCAG 1.4.11 for graphics).
OUTCOME_COLOURS = {
    "approved": "#1a7f37", "acknowledged": "#0969da", "denied": "#cf222e", "overridden": "#9a6700",
    "expired": "#6e7781", "unacknowledged": "#8250df", "recorded": "#57606a",
}
BUCKETS: tuple[tuple[str, float], ...] = (
    ("< 1 min", 60), ("1–5 min", 300), ("5–15 min", 900), ("15–60 min", 3600), ("1–4 h", 14400),
    ("> 4 h", float("inf")),
)
WIDTH, HEIGHT, PAD = 640, 220, 30


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float
    colour: str
    title: str  # shown on hover and read by screen readers


@dataclass(frozen=True)
class Bar:
    label: str
    rects: tuple[Rect, ...]
    total: float


@dataclass(frozen=True)
class Chart:
    title: str
    bars: tuple[Bar, ...]
    max_value: float
    legend: tuple[tuple[str, str], ...] = ()  # (label, colour)
    unit: str = ""

    @property
    def empty(self) -> bool:
        return not self.bars


def _day(at: datetime) -> date:
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC).date()


def decisions_per_day(history: Sequence[Decided], today: date, days: int = 14) -> Chart:
    """One stacked bar per day that had decisions, a segment per outcome."""
    per_day: dict[date, Counter[str]] = defaultdict(Counter)
    first = today - timedelta(days=days - 1)
    for d in history:
        if d.decided_at is not None and d.outcome and first <= _day(d.decided_at) <= today:
            per_day[_day(d.decided_at)][d.outcome] += 1
    top = max((sum(c.values()) for c in per_day.values()), default=0)
    slot = (WIDTH - PAD) / days
    bars = []
    for i in range(days):
        day = first + timedelta(days=i)
        counts = per_day.get(day)
        if not counts:
            continue
        y, rects = float(HEIGHT - PAD), []
        for outcome in OUTCOME_COLOURS:
            n = counts.get(outcome, 0)
            if not n:
                continue
            h = (HEIGHT - 2 * PAD) * n / top
            y -= h
            rects.append(Rect(PAD + i * slot + 2, y, slot - 4, h, OUTCOME_COLOURS[outcome],
                              f"{day.isoformat()}: {n} {outcome}"))
        bars.append(Bar(day.strftime("%b %d"), tuple(rects), sum(counts.values())))
    used = [o for o in OUTCOME_COLOURS if any(o in c for c in per_day.values())]
    return Chart(f"Decisions per day, last {days} days", tuple(bars), top,
                 tuple((o, OUTCOME_COLOURS[o]) for o in used))


def time_to_decision(history: Sequence[Decided]) -> Chart:
    """How long people took to respond (explicit decisions), in six buckets."""
    counts = [0] * len(BUCKETS)
    for d in history:
        if d.accountability == "explicit" and d.decided_at is not None:
            seconds = (d.decided_at - d.created_at).total_seconds()
            counts[next(i for i, (_, limit) in enumerate(BUCKETS) if seconds < limit)] += 1
    if not any(counts):
        return Chart("Time to decision", (), 0)
    top = max(counts)
    slot = (WIDTH - PAD) / len(BUCKETS)
    bars = []
    for i, ((label, _), n) in enumerate(zip(BUCKETS, counts, strict=True)):
        h = (HEIGHT - 2 * PAD) * n / top
        bars.append(Bar(label, (Rect(PAD + i * slot + 4, HEIGHT - PAD - h, slot - 8, h, "#0969da",
                                     f"{label}: {n} decisions"),), n))
    return Chart("Time to decision (explicit responses)", tuple(bars), top)


def override_rate(history: Sequence[Decided]) -> Chart:
    """Per agent: the share of its human-decided actions that were overridden (denied or reverted)."""
    decided: Counter[str] = Counter()
    overridden: Counter[str] = Counter()
    for d in history:
        if d.accountability == "explicit":
            decided[d.agent] += 1
            overridden[d.agent] += d.outcome in ("denied", "overridden")
    bars = []
    row = 28.0
    for i, agent in enumerate(sorted(decided)):
        rate = overridden[agent] / decided[agent]
        w = (WIDTH - 200) * rate
        bars.append(Bar(agent, (Rect(160, PAD / 2 + i * row, max(w, 1.0), row - 8, "#cf222e",
                                     f"{agent}: {rate:.0%} overridden ({overridden[agent]} of {decided[agent]})"),),
                        rate))
    return Chart("Override rate per agent", tuple(bars), 1.0, unit="%")


def service_charts(history: Sequence[Decided], now: datetime, days: int = 14) -> list[Chart]:
    return [decisions_per_day(history, _day(now), days), time_to_decision(history), override_rate(history)]
