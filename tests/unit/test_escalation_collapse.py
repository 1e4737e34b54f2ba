"""After downtime, collapse (issue 15, finding 3): a page whose time passed before a later step
that is also due is skipped, not sent; only what still needs someone goes out."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from bot.escalation.plan import Chain, DueStep, collapse, level_reached, plan, skipped_key
from bot.escalation.snapshot import EscalationSnapshot

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
CHAIN = Chain(steps=(("owner", 0.0), ("secondary", 2.0), ("leadership", 4.0)), remind_every=1.0,
              timeout=6.0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def kinds(steps: Sequence[DueStep]) -> list[tuple[str, str | None]]:
    return [(s.kind, s.level) for s in steps]


def test_whole_chain_passed_while_down_sends_no_page_only_the_timeout() -> None:
    due = plan(CHAIN, T0, {"page:owner": at(0)}, at(25)).due
    assert kinds(due) == [("skip", "secondary"), ("skip", "leadership"), ("timeout", "leadership")]
    assert all(s.note and "downtime" in s.note for s in due[:2])  # the record says why
    assert due[-1].note == "collapsed: paging secondary, leadership skipped"


def test_two_pages_due_the_earlier_is_skipped_and_leadership_still_paged() -> None:
    """Down from 1 s to 5 s: the timeout (6 s) is still ahead, so leadership still needs the page."""
    p = plan(CHAIN, T0, {"page:owner": at(0)}, at(5))
    assert kinds(p.due) == [("skip", "secondary"), ("page", "leadership")]
    assert p.next_at == at(6)


def test_a_sweeper_on_time_pages_every_level_in_turn() -> None:
    history = {"page:owner": at(0)}
    for instant, expected in ((2.05, "page:secondary"), (4.05, "page:leadership")):
        assert [s.key for s in plan(CHAIN, T0, history, at(instant)).due] == [expected]
        history[expected] = at(instant)
    assert [s.key for s in plan(CHAIN, T0, history, at(6.1)).due] == ["timeout"]


def test_skipped_pages_are_settled_and_never_come_back() -> None:
    history = {"page:owner": at(0), skipped_key("secondary"): at(5), "page:leadership": at(5)}
    p = plan(CHAIN, T0, history, at(5.5))
    assert [s.key for s in p.due] == []
    assert p.next_at == at(6)
    assert level_reached(CHAIN, history) == "leadership"
    snapshot = EscalationSnapshot(steps=CHAIN.steps, timeout=6.0)
    assert snapshot.upcoming(T0, history) == ()


def test_pages_planned_at_the_same_instant_all_go_out() -> None:
    """A policy violation pages every level at once: nothing is 'before' anything else."""
    chain = Chain(steps=(("owner", 0.0), ("secondary", 0.0), ("leadership", 0.0)), timeout=60.0)
    assert kinds(plan(chain, T0, {}, at(0)).due) == [("page", "owner"), ("page", "secondary"),
                                                     ("page", "leadership")]


def test_collapse_keeps_the_last_page_unless_the_timeout_is_due() -> None:
    pages = plan(Chain(steps=CHAIN.steps), T0, {}, at(10)).due
    assert kinds(collapse(list(pages), None)) == [("skip", "owner"), ("skip", "secondary"),
                                                  ("page", "leadership")]
    assert kinds(collapse(list(pages), at(6))) == [("skip", "owner"), ("skip", "secondary"),
                                                   ("skip", "leadership")]
