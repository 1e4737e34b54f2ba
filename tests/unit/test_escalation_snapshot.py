"""The escalation snapshot as a pure value: what it reads back from `Action.frozen`, and what it answers.

Rows written before the snapshot existed must load unchanged, so the literal rows below are copied
from what `freeze` stored then (keys, order, values).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.escalation.plan import Chain, plan
from bot.escalation.snapshot import EscalationSnapshot, LeadershipSnapshot, freeze, snapshot_of
from bot.policy.rules import evaluate
from handlers.blocks import card
from storage.models import Action
from tests.conftest import test_policy as load_policy_text

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

# What freeze() stored for checkout-api under the tests' policy, before the snapshot existed.
OLD_ROW: dict[str, Any] = {
    "mode": "approve",
    "rule_index": 1,
    "rule": {"match": {"tier": "tier1", "environment": "production"}, "mode": "approve"},
    "policy_hash": "d3bcd5eef654844b00f2bfc7982c1d5ac53420cf482bca3167becc4304b97b07",
    "tier": "tier1",
    "owner": "U0OWNER",
    "secondary": "dana@example.com",
    "channel": "C0CHECKOUT",
    "leadership": {"channel": "C0LEADERS", "users": ["U0VP"]},
    "admins": ["U0ADMIN"],
    "steps": [
        {"notify": "owner", "after": 0.0},
        {"notify": "secondary", "after": 2.0},
        {"notify": "leadership", "after": 4.0},
    ],
    "remind_every": 1.0,
    "timeout": 6.0,
    "on_timeout": "deny",
    "violation": False,
    "storm_per_minute": 10,
}
# ... and for batch: no secondary, no timeout.
OLD_BATCH_ROW: dict[str, Any] = {
    "mode": "autonomous", "rule_index": 3, "rule": {"mode": "autonomous"},
    "policy_hash": "d3bcd5eef654844b00f2bfc7982c1d5ac53420cf482bca3167becc4304b97b07", "tier": None,
    "owner": "U0BATCH", "secondary": None, "channel": "C0BATCH",
    "leadership": {"channel": "C0LEADERS", "users": ["U0VP"]}, "admins": ["U0ADMIN"],
    "steps": [{"notify": "owner", "after": 0.0}, {"notify": "leadership", "after": 900.0}],
    "remind_every": None, "timeout": None, "on_timeout": "deny", "violation": False, "storm_per_minute": 10,
}

SNAP = EscalationSnapshot.from_json(OLD_ROW)
BATCH = EscalationSnapshot.from_json(OLD_BATCH_ROW)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def action(frozen: dict[str, Any], level: str | None = "owner") -> Action:
    return Action(agent_id=1, kind="proposed", service="checkout-api", action_type="scale_down", summary="s",
                  rationale="r", environment="production", mode="approve", status="pending", frozen=frozen,
                  level=level, created_at=T0)


# --- stored form -----------------------------------------------------------------------------------


def test_an_old_row_loads_and_answers() -> None:
    row = json.loads(json.dumps(OLD_ROW))  # as the JSON column gives it back
    snap = EscalationSnapshot.from_json(row)
    assert snap.owner == "U0OWNER" and snap.secondary == "dana@example.com" and snap.channel == "C0CHECKOUT"
    assert snap.leadership == LeadershipSnapshot("C0LEADERS", ("U0VP",))
    assert snap.admins == ("U0ADMIN",)
    assert snap.levels() == ("owner", "secondary", "leadership")
    assert snap.chain == Chain((("owner", 0.0), ("secondary", 2.0), ("leadership", 4.0)), 1.0, 6.0, "deny")
    assert (snap.mode, snap.rule_index, snap.tier, snap.storm_per_minute) == ("approve", 1, "tier1", 10)
    assert snap.target("leadership") == "C0LEADERS"
    assert snap.people_up_to("secondary") == ["U0ADMIN", "U0OWNER", "dana@example.com"]
    assert snap.default_decider("leadership") == ("U0VP", "leadership")


def test_the_stored_form_is_unchanged() -> None:
    """Same keys, same order, same values: freeze() writes exactly what it wrote before."""
    policy = load_policy_text()
    for name, row in (("checkout-api", OLD_ROW), ("batch", OLD_BATCH_ROW)):
        frozen = freeze(policy, name, evaluate(policy, name, "scale_down", "production", "proposed")).to_json()
        assert json.dumps(frozen) == json.dumps(row)
        assert json.dumps(EscalationSnapshot.from_json(row).to_json()) == json.dumps(row)


def test_a_partial_row_takes_the_defaults() -> None:
    snap = EscalationSnapshot.from_json({"steps": [{"notify": "owner", "after": 0}], "owner": "U0O", "timeout": 60})
    assert snap.steps == (("owner", 0.0),) and snap.timeout == 60.0
    assert snap.on_timeout == "deny" and snap.admins == () and snap.leadership is None
    assert snap.people_up_to("leadership") == ["U0O"]
    assert EscalationSnapshot.from_json({}) == EscalationSnapshot.from_json(None) == EscalationSnapshot()
    assert EscalationSnapshot.from_json({"on_timeout": None}).on_timeout == "deny"
    assert EscalationSnapshot.from_json({"on_timeout": "approve"}).chain.on_timeout == "approve"


def test_snapshot_of_an_action() -> None:
    assert snapshot_of(action(OLD_ROW)) == SNAP
    assert snapshot_of(action({})) == EscalationSnapshot()


# --- the people ------------------------------------------------------------------------------------


def test_target_per_level() -> None:
    assert SNAP.target("owner") == "U0OWNER"
    assert SNAP.target("secondary") == "dana@example.com"
    assert SNAP.target("leadership") == "C0LEADERS"
    assert BATCH.target("secondary") is None
    assert EscalationSnapshot(owner="U0O").target("leadership") is None


def test_people_up_to_each_level_only_grows() -> None:
    assert SNAP.people_up_to(None) == ["U0ADMIN"]
    assert SNAP.people_up_to("owner") == ["U0ADMIN", "U0OWNER"]
    assert SNAP.people_up_to("secondary") == ["U0ADMIN", "U0OWNER", "dana@example.com"]
    assert SNAP.people_up_to("leadership") == ["U0ADMIN", "U0OWNER", "dana@example.com", "U0VP"]
    # no secondary in the chain: leadership follows the owner
    assert BATCH.people_up_to("owner") == ["U0ADMIN", "U0BATCH"]
    assert BATCH.people_up_to("leadership") == ["U0ADMIN", "U0BATCH", "U0VP"]
    # a level the chain does not have (as before): everyone in the chain
    assert BATCH.people_up_to("secondary") == ["U0ADMIN", "U0BATCH", "U0VP"]


def test_default_decider_is_the_last_level_reached() -> None:
    assert SNAP.default_decider(None) == ("U0OWNER", "owner")
    assert SNAP.default_decider("owner") == ("U0OWNER", "owner")
    assert SNAP.default_decider("secondary") == ("dana@example.com", "secondary")
    assert SNAP.default_decider("leadership") == ("U0VP", "leadership")
    no_users = EscalationSnapshot(owner="U0O", leadership=LeadershipSnapshot("C0L"))
    assert no_users.default_decider("leadership") == ("C0L", "leadership")  # the channel when it names nobody


# --- what comes next -------------------------------------------------------------------------------


def test_upcoming_without_a_timeout_lists_every_page_not_fired() -> None:
    assert [(s.key, s.at) for s in BATCH.upcoming(T0, {})] == [("page:owner", at(0)), ("page:leadership", at(900))]
    assert [(s.key, s.at) for s in BATCH.upcoming(T0, {"page:owner": at(0)})] == [("page:leadership", at(900))]
    assert BATCH.upcoming(T0, {"page:owner": at(0), "page:leadership": at(900)}) == ()
    assert BATCH.deadline(T0) is None


def test_upcoming_leaves_out_a_page_planned_after_the_timeout() -> None:
    snap = EscalationSnapshot.from_json({**OLD_ROW, "timeout": 3.0})  # leadership (4 s) would come after it
    assert [s.key for s in snap.upcoming(T0, {"page:owner": at(0)})] == ["page:secondary"]
    assert snap.deadline(T0) == at(3)
    # ... exactly what plan fires: the timeout, never the leadership page
    fired = {"page:owner": at(0), "page:secondary": at(2)}
    assert [s.key for s in plan(snap.chain, T0, fired, at(10)).due] == ["timeout"]
    assert snap.upcoming(T0, fired) == ()
    assert snap.upcoming_after("secondary", T0) == ()


def test_upcoming_brings_a_page_forward_after_a_failure() -> None:
    fired = {"page:owner": at(0), "failed:owner": at(1)}
    assert [(s.key, s.at) for s in SNAP.upcoming(T0, fired)] == [("page:secondary", at(1)),
                                                                   ("page:leadership", at(4))]


def test_upcoming_after_a_level() -> None:
    assert [s.key for s in SNAP.upcoming_after(None, T0)] == ["page:owner", "page:secondary", "page:leadership"]
    assert [s.key for s in SNAP.upcoming_after("owner", T0)] == ["page:secondary", "page:leadership"]
    assert SNAP.upcoming_after("leadership", T0) == ()


def test_the_card_does_not_announce_a_level_that_is_never_paged() -> None:
    """The card used to list leadership at 15m although the action times out at 10m."""
    frozen = {
        "steps": [{"notify": "owner", "after": 0}, {"notify": "secondary", "after": 300},
                  {"notify": "leadership", "after": 900}],
        "owner": "U0OWNER", "secondary": "U0DANA", "leadership": {"channel": "C0LEADERS", "users": ["U0VP"]},
        "timeout": 600, "on_timeout": "deny",
    }
    assert card.upcoming(action(frozen, "secondary")) == (None, at(600))
    assert card.upcoming(action(frozen, "owner")) == (("secondary", at(300)), at(600))
