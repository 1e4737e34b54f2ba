"""The step logic as a pure function: frozen chain + what fired + now -> due steps and the next time.

Every case uses explicit datetimes; `run` plays a sweeper that fires whatever `plan` says is due
at each instant, so the tests read as timelines.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.escalation.plan import Chain, Plan, failed_key, level_reached, plan
from bot.escalation.snapshot import freeze
from bot.policy.rules import evaluate
from tests.conftest import test_policy as load_policy_text

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
CHAIN = Chain(
    steps=(("owner", 0.0), ("secondary", 300.0), ("leadership", 900.0)),
    remind_every=120.0,
    timeout=1800.0,
    on_timeout="deny",
)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def run(chain: Chain, instants: list[float], fired: dict[str, datetime] | None = None) -> dict[str, datetime]:
    """Fire what is due at each instant (seconds after T0), as the sweeper would; returns the history."""
    history = dict(fired or {})
    for instant in instants:
        for step in plan(chain, T0, history, at(instant)).due:
            assert step.key not in history, f"{step.key} planned twice"
            history[step.key] = at(instant)
    return history


def keys(p: Plan) -> list[str]:
    return [s.key for s in p.due]


def test_owner_then_secondary_then_leadership_then_timeout() -> None:
    first = plan(CHAIN, T0, {}, at(0))
    assert keys(first) == ["page:owner"]
    assert first.due[0].level == "owner" and first.due[0].at == T0
    history = {"page:owner": at(0)}
    assert plan(CHAIN, T0, history, at(0)).next_at == at(120)  # the first reminder

    every_minute = [float(s) for s in range(0, 1801, 60)]
    history = run(CHAIN, every_minute)
    pages = sorted((v, k) for k, v in history.items() if k.startswith("page:"))
    assert [(k, v) for v, k in pages] == [("page:owner", at(0)), ("page:secondary", at(300)),
                                         ("page:leadership", at(900))]
    assert history["timeout"] == at(1800)
    assert level_reached(CHAIN, history) == "leadership"
    assert plan(CHAIN, T0, history, at(99999)) == Plan(due=(), next_at=None)


def test_timeout_carries_the_last_level_reached() -> None:
    history = run(CHAIN, [0, 300, 900])
    due = plan(CHAIN, T0, history, at(1800)).due
    assert [(s.key, s.level, s.at) for s in due] == [("timeout", "leadership", at(1800))]
    short = Chain(steps=(("owner", 0.0), ("secondary", 300.0)), timeout=200.0)
    due = plan(short, T0, {"page:owner": at(0)}, at(250)).due
    assert [(s.key, s.level) for s in due] == [("timeout", "owner")]


def test_reminders_every_remind_every_at_the_current_level() -> None:
    history = run(CHAIN, [float(s) for s in range(0, 300, 10)])
    reminders = sorted((v, k) for k, v in history.items() if k.startswith("remind:"))
    assert [(k, v) for v, k in reminders] == [("remind:owner:1", at(120)), ("remind:owner:2", at(240))]
    # The next page ends the owner's reminders; the secondary's count from its own page.
    history = run(CHAIN, [300, 419, 420, 540])
    assert "remind:owner:3" not in history
    assert history["remind:secondary:1"] == at(420) and history["remind:secondary:2"] == at(540)


def test_reminders_collapse_after_downtime() -> None:
    history = {"page:owner": at(0)}
    # Down from 10 s to 290 s: reminders at 120 and 240 were missed; one fires, not two.
    due = plan(CHAIN, T0, history, at(290)).due
    assert [(s.key, s.at) for s in due] == [("remind:owner:2", at(240))]
    history["remind:owner:2"] = at(290)
    after = plan(CHAIN, T0, history, at(291))
    assert after.due == () and after.next_at == at(300)  # the secondary's page, not another reminder


def test_no_reminder_right_after_a_late_page() -> None:
    # The secondary page was due at 300 but fired at 650 (process down): its reminders count from 650.
    history = {"page:owner": at(0), "page:secondary": at(650)}
    p = plan(CHAIN, T0, history, at(651))
    assert p.due == () and p.next_at == at(650 + 120)


def test_no_reminder_after_or_at_the_timeout() -> None:
    chain = Chain(steps=(("owner", 0.0),), remind_every=60.0, timeout=180.0)
    history = run(chain, [0, 60, 120])
    assert set(history) == {"page:owner", "remind:owner:1", "remind:owner:2"}
    p = plan(chain, T0, history, at(121))
    assert p.next_at == at(180)  # the timeout, not a reminder at the same instant
    assert keys(plan(chain, T0, history, at(180))) == ["timeout"]
    history["timeout"] = at(180)
    assert plan(chain, T0, history, at(100000)) == Plan(due=(), next_at=None)


def test_downtime_past_everything_skips_the_missed_pages_then_times_out() -> None:
    history = {"page:owner": at(0)}
    due = plan(CHAIN, T0, history, at(5000)).due
    assert keys(plan(CHAIN, T0, history, at(5000))) == ["skipped:secondary", "skipped:leadership", "timeout"]
    assert [s.at for s in due] == [at(300), at(900), at(1800)]
    assert due[-1].level == "leadership"  # the timeout decision is taken as before, by the last level


def test_policy_violation_pages_all_levels_at_once() -> None:
    policy = load_policy_text()
    match = evaluate(policy, "checkout-api", "scale_down", "production", "executed")
    assert match.mode == "approve"
    snapshot = freeze(policy, "checkout-api", match, violation=True)
    chain = snapshot.chain
    first = plan(chain, T0, {}, T0)
    assert keys(first) == ["page:owner", "page:secondary", "page:leadership"]
    assert all(s.at == T0 for s in first.due)
    assert snapshot.people_up_to("leadership") == ["U0ADMIN", "U0OWNER", "dana@example.com", "U0VP"]


def test_fail_closed_brings_the_next_level_forward() -> None:
    history = {"page:owner": at(0), failed_key("owner"): at(5)}
    p = plan(CHAIN, T0, history, at(5))
    assert [(s.key, s.at) for s in p.due] == [("page:secondary", at(5))]
    # and a failed secondary brings leadership forward too
    history.update({"page:secondary": at(5), failed_key("secondary"): at(6)})
    assert [(s.key, s.at) for s in plan(CHAIN, T0, history, at(6)).due] == [("page:leadership", at(6))]


def test_no_reminders_for_a_level_whose_page_failed() -> None:
    history = {"page:owner": at(0), "page:secondary": at(300), "page:leadership": at(900),
               failed_key("leadership"): at(901)}
    p = plan(CHAIN, T0, history, at(1500))
    assert p.due == () and p.next_at == at(1800)


def test_on_timeout_approve_is_carried_by_the_chain() -> None:
    policy = load_policy_text(
        """
leadership: {channel: C0L, users: [U0VP]}
tiers:
  t: {escalation: [{notify: owner, after: 0s}], timeout: 10m, on_timeout: approve}
services:
  svc: {owner: U0O, channel: C0S, tier: t}
rules:
  - mode: approve
"""
    )
    chain = freeze(policy, "svc", evaluate(policy, "svc", "scale", "production", "proposed")).chain
    assert chain.on_timeout == "approve" and chain.timeout == 600
    assert keys(plan(chain, T0, {"page:owner": at(0)}, at(600))) == ["timeout"]
    assert freeze(load_policy_text(), "checkout-api", evaluate(
        load_policy_text(), "checkout-api", "x", "production", "proposed")).chain.on_timeout == "deny"


def test_who_may_respond_widens_with_each_level() -> None:
    policy = load_policy_text()
    snapshot = freeze(policy, "checkout-api", evaluate(policy, "checkout-api", "x", "production", "proposed"))
    assert snapshot.people_up_to("owner") == ["U0ADMIN", "U0OWNER"]
    assert snapshot.people_up_to("secondary") == ["U0ADMIN", "U0OWNER", "dana@example.com"]
    assert snapshot.people_up_to("leadership") == ["U0ADMIN", "U0OWNER", "dana@example.com", "U0VP"]
