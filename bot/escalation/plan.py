"""Escalation steps as a pure function of the frozen chain, what already fired, and now.

Like Grafana OnCall's escalation snapshot: the chain is frozen into the action at submission
(bot.escalation.snapshot), and `plan` answers "these steps are due now, the next one is at T" (or
nothing more).
No I/O, no clock: the caller passes `now`, so tests inject any time they like.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from bot.policy.rules import Level

StepKind = Literal["page", "remind", "timeout", "skip"]


@dataclass(frozen=True)
class Chain:
    steps: tuple[tuple[Level, float], ...]  # (level, seconds after submission), in order
    remind_every: float | None = None
    timeout: float | None = None
    on_timeout: Literal["deny", "approve"] = "deny"


@dataclass(frozen=True)
class DueStep:
    key: str  # unique per action: "page:owner", "remind:owner:2", "timeout"
    kind: StepKind
    level: Level | None
    at: datetime  # when it was due
    note: str | None = None  # why, for a skipped page (kept in escalation_steps.note)


@dataclass(frozen=True)
class Plan:
    due: tuple[DueStep, ...]
    next_at: datetime | None  # None: nothing more will ever be due


def failed_key(level: str) -> str:
    """Recorded when paging a level failed for good: the next level is due at once (fail closed)."""
    return f"failed:{level}"


def skipped_key(level: str) -> str:
    """Recorded instead of `page:<level>` when a page was collapsed after downtime (never sent)."""
    return f"skipped:{level}"


def settled(page: DueStep, fired: Mapping[str, datetime]) -> bool:
    """Whether a page is behind us: it fired, or it was skipped in a collapse."""
    return page.key in fired or (page.level is not None and skipped_key(page.level) in fired)


def _pages(chain: Chain, created_at: datetime, fired: Mapping[str, datetime]) -> list[DueStep]:
    """Each level's page, at its planned time, brought forward to when the level before it failed
    for good (fail closed: a page that cannot be delivered never waits out the timer)."""
    pages: list[DueStep] = []
    bring_forward: datetime | None = None
    for level, after in chain.steps:
        at = created_at + timedelta(seconds=after)
        if bring_forward is not None:
            at = min(at, bring_forward)
        pages.append(DueStep(f"page:{level}", "page", level, at))
        bring_forward = fired.get(failed_key(level))
    return pages


def planned_pages(chain: Chain, created_at: datetime, fired: Mapping[str, datetime]) -> list[DueStep]:
    """Every page that will fire (or fired), at its time: those planned after the timeout are left
    out, since escalation ends there and they never fire."""
    timeout_at = created_at + timedelta(seconds=chain.timeout) if chain.timeout is not None else None
    return [p for p in _pages(chain, created_at, fired) if timeout_at is None or p.at <= timeout_at]


# The last plans, by their inputs relative to the submission. `plan` is pure, its Plan immutable,
# and it only adds, subtracts and compares times, so moving created_at, every fired time and now by
# the same amount moves every time in its answer by that amount. Each new action asks the same two
# questions ("what is due now?" and "what after paging it?") in bot.actions.first_steps and again
# in paging.advance, at its own instant: computing them was ~6 % of ingest CPU; shifting a known
# answer costs a fraction of that. Only for UTC (or naive) times all in one zone: with a zone that
# has DST, datetime arithmetic is wall-clock and the shift would not be exact.
_PLANS: dict[tuple[Any, ...], tuple[datetime, Plan]] = {}
_PLANS_MAX = 512


def plan(chain: Chain, created_at: datetime, fired: Mapping[str, datetime], now: datetime) -> Plan:
    """Which steps are due at `now` (given those already `fired`); see `compute_plan`."""
    zone = created_at.tzinfo
    if (zone is not None and zone is not UTC) or now.tzinfo is not zone or any(
            t.tzinfo is not zone for t in fired.values()):
        return compute_plan(chain, created_at, fired, now)
    key = (chain, zone, now - created_at, frozenset((k, t - created_at) for k, t in fired.items()))
    known = _PLANS.get(key)
    if known is None:
        if len(_PLANS) >= _PLANS_MAX:
            _PLANS.clear()  # a batch asks each question within microseconds: no LRU needed
        known = _PLANS[key] = (created_at, compute_plan(chain, created_at, fired, now))
    base, answer = known
    return answer if base == created_at else _shifted(answer, created_at - base)


def _shifted(answer: Plan, by: timedelta) -> Plan:
    return Plan(due=tuple(DueStep(s.key, s.kind, s.level, s.at + by, s.note) for s in answer.due),
                next_at=answer.next_at + by if answer.next_at is not None else None)


def compute_plan(chain: Chain, created_at: datetime, fired: Mapping[str, datetime], now: datetime) -> Plan:
    """Which steps are due at `now` (given those already `fired`, by key -> when), and when is the next.

    - Pages fire in chain order; a page planned after the timeout never fires (escalation ends there).
    - Reminders count from when the current level was actually paged, so a page that fired late is
      not followed at once by a reminder; reminders missed while the process was down collapse into
      one; none while the level is being paged, none for a level whose page failed, none after the
      timeout (nor at the very moment of the next page or the timeout).
    - The timeout is due once, with the last level reached; nothing is due after it.
    - After downtime, `collapse`: a page due before a later step that is also due is skipped.
    """
    timeout_at = created_at + timedelta(seconds=chain.timeout) if chain.timeout is not None else None
    if "timeout" in fired:
        return Plan(due=(), next_at=None)
    pages = planned_pages(chain, created_at, fired)
    late_pages = [p for p in pages if not settled(p, fired) and p.at <= now]
    reached = [p for p in pages if settled(p, fired) or p in late_pages]
    current = reached[-1] if reached else None
    timed_out = timeout_at is not None and timeout_at <= now
    due: list[DueStep] = collapse(late_pages, timeout_at if timed_out else None)

    if timeout_at is not None and timed_out:
        skipped = [s.level for s in due if s.kind == "skip" and s.level]
        note = f"collapsed: paging {', '.join(skipped)} skipped" if skipped else None
        due.append(DueStep("timeout", "timeout", current.level if current else None, timeout_at, note))
        return Plan(due=tuple(due), next_at=None)

    candidates = [p.at for p in pages if not settled(p, fired) and p.at > now]
    if timeout_at is not None:
        candidates.append(timeout_at)
    reminder, next_reminder = _reminder(chain, pages, current, due, fired, timeout_at, now)
    if reminder is not None:
        due.append(reminder)
    if next_reminder is not None:
        candidates.append(next_reminder)
    return Plan(due=tuple(due), next_at=min(candidates, default=None))


def collapse(late_pages: list[DueStep], timeout_at: datetime | None) -> list[DueStep]:
    """After downtime several steps can be due at once: a page whose time passed before a later
    step that is also due (a later page, or the timeout) is skipped, not sent. Only the last due
    page goes out, and none when the timeout is due too (the action ends; one notice says so)."""
    later = [p.at for p in late_pages] + ([timeout_at] if timeout_at is not None else [])
    out: list[DueStep] = []
    for page in late_pages:
        after = [t for t in later if t > page.at]
        if not after or page.level is None:
            out.append(page)
            continue
        why = "the timeout" if timeout_at is not None and max(after) == timeout_at else "a later page"
        out.append(DueStep(skipped_key(page.level), "skip", page.level, page.at,
                           f"not sent: {why} was due too when it could fire (catching up after downtime)"))
    return out


def _reminder(
    chain: Chain,
    pages: list[DueStep],
    current: DueStep | None,
    due: list[DueStep],
    fired: Mapping[str, datetime],
    timeout_at: datetime | None,
    now: datetime,
) -> tuple[DueStep | None, datetime | None]:
    """The reminder due now at the current level (if any), and when the next one would be."""
    every = chain.remind_every
    if current is None or not every or current.level is None or failed_key(current.level) in fired:
        return None, None
    # Counted from the real paging time; a page firing right now starts the count now.
    base = fired.get(current.key) or max(current.at, now)
    later = [p.at for p in pages[pages.index(current) + 1 :]]
    end = min([t for t in (*later[:1], timeout_at) if t is not None], default=None)
    elapsed = (now - base).total_seconds()
    k = math.floor(elapsed / every + 1e-9) if elapsed > 0 and current not in due else 0
    reminder = None
    if k >= 1:
        at = base + timedelta(seconds=k * every)
        key = f"remind:{current.level}:{k}"
        if (end is None or at < end) and key not in fired:
            reminder = DueStep(key, "remind", current.level, at)
    following = base + timedelta(seconds=(k + 1) * every)
    return reminder, (following if end is None or following < end else None)


def level_reached(chain: Chain, fired: dict[str, datetime]) -> Level | None:
    reached = [level for level, _ in chain.steps if f"page:{level}" in fired or skipped_key(level) in fired]
    return reached[-1] if reached else None
