"""The pure autonomy rules: thresholds at and just below, grants and pauses over the file's rules,
the brake, and the policy keys' validation with line numbers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.policy.autonomy import (
    GrantInForce,
    InForce,
    PauseInForce,
    Record,
    apply,
    brake_trips,
    demotion,
    promotion,
    suggestions,
)
from bot.policy.rules import Autonomy, Brake, PolicyError, evaluate, parse_policy
from tests.policies import AUTONOMY, FAST

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
RULES = Autonomy.model_validate({"promote": {"min_decisions": 20, "min_approval_rate": 0.95,
                                             "max_failed_results": 0},
                                 "demote": {"max_override_rate": 0.3, "max_failed_results": 2}})


def record(approved: int = 0, denied: int = 0, failed: int = 0, **kw: Any) -> Record:
    return Record("bot", "checkout-api", "scale_down", "production", actions=approved + denied, approved=approved,
                  denied=denied, failed=failed, **kw)


@pytest.mark.parametrize(("approved", "denied", "failed", "expected"), [
    (19, 1, 0, "acknowledge"),  # 20 decisions, 95%: at both thresholds
    (19, 0, 0, None),  # 19 decisions: one short
    (18, 2, 0, None),  # 90% < 95%
    (20, 0, 1, None),  # one failed result > 0
])
def test_promotion_at_and_just_below_each_threshold(approved: int, denied: int, failed: int,
                                                     expected: str | None) -> None:
    found = promotion(record(approved, denied, failed), "approve", RULES)
    assert (found.mode_suggested if found else None) == expected
    if found:
        assert found.mode_now == "approve" and found.figures["decisions"] == 20


@pytest.mark.parametrize(("approved", "denied", "failed", "expected"), [
    (7, 3, 0, "approve"),  # 30% overrides: at the threshold
    (8, 3, 0, None),  # 27%
    (10, 0, 2, "approve"),  # 2 failed results: at the threshold
    (10, 0, 1, None),
])
def test_demotion_at_and_just_below_each_threshold(approved: int, denied: int, failed: int,
                                                    expected: str | None) -> None:
    found = demotion(record(approved, denied, failed), "acknowledge", RULES)
    assert (found.mode_suggested if found else None) == expected


def test_no_promotion_beyond_autonomous_nor_out_of_forbidden_and_no_demotion_below_approve() -> None:
    good, bad = record(40), record(0, 40)
    assert promotion(good, "autonomous", RULES) is None and promotion(good, "forbidden", RULES) is None
    assert demotion(bad, "approve", RULES) is None


def grant(mode: str, until: datetime = NOW + timedelta(days=1), **key: str) -> GrantInForce:
    k = {"agent": "bot", "service": "checkout-api", "action_type": "scale_down", "environment": "production", **key}
    return GrantInForce(1, k["agent"], k["service"], k["action_type"], k["environment"], "promote", mode, "U0VP",
                        until)


def test_a_grant_applies_to_its_exact_key_until_it_expires_and_never_relaxes_forbidden() -> None:
    policy = parse_policy(FAST)
    base = evaluate(policy, "checkout-api", "scale_down", "production")
    assert base.mode == "approve"
    key = {"agent": "bot", "service": "checkout-api", "action_type": "scale_down", "environment": "production"}
    granted = apply(base, InForce(grants=(grant("acknowledge"),)), now=NOW, **key)
    assert granted.match.mode == "acknowledge" and granted.match.rule["grant"]["rule_mode"] == "approve"
    assert apply(base, InForce(grants=(grant("acknowledge"),)), now=NOW, **{**key, "agent": "other"}).match == base
    assert apply(base, InForce(grants=(grant("acknowledge", until=NOW),)), now=NOW, **key).match == base
    forbidden = evaluate(policy, "checkout-api", "drop_database", "production")
    relax = grant("autonomous", action_type="drop_database")
    assert apply(forbidden, InForce(grants=(relax,)), now=NOW, **{**key, "action_type": "drop_database"}
                 ).match.mode == "forbidden"


def test_a_pause_makes_anything_but_forbidden_approve() -> None:
    policy = parse_policy(FAST)
    key = {"agent": "bot", "service": "batch", "action_type": "scale_up", "environment": "production"}
    base = evaluate(policy, "batch", "scale_up", "production")
    assert base.mode == "autonomous"
    everything = PauseInForce(7, "all", None, None, "U0VP", "incident", None)
    other_agent = PauseInForce(8, "agent:x", None, "x", "U0VP", "x", None)
    over = PauseInForce(9, "batch", "batch", None, "U0VP", "x", NOW)
    paused = apply(base, InForce(pauses=(everything,)), now=NOW, **key)
    assert paused.match.mode == "approve" and paused.pause == everything
    assert apply(base, InForce(pauses=(other_agent, over)), now=NOW, **key).match.mode == "autonomous"
    promoted = apply(base, InForce(grants=(grant("autonomous", NOW + timedelta(days=1), **key),),
                                   pauses=(everything,)), now=NOW, **key)
    assert promoted.match.mode == "approve"
    forbidden = evaluate(policy, "batch", "delete_data", "production")
    assert apply(forbidden, InForce(pauses=(everything,)), now=NOW, **key).match.mode == "forbidden"


def test_the_brake_trips_at_the_limit_not_below() -> None:
    brake = Brake(max_overrides=3, max_failed_results=2, window=3600)
    assert brake_trips(brake, 2, 1) is None
    trip = brake_trips(brake, 3, 0)
    assert trip is not None and "3 overrides within 1h" in trip.reason
    failed = brake_trips(brake, 0, 2)
    assert failed is not None and "2 failed" in failed.reason
    assert brake_trips(None, 99, 99) is None


def test_suggestions_use_the_policy_and_skip_a_demoted_key() -> None:
    policy = parse_policy(AUTONOMY)
    good = Record("bot", "checkout-api", "scale_down", "production", actions=3, approved=3)
    found = suggestions(policy, InForce(), [good], [], NOW)
    assert [(s.kind, s.mode_now, s.mode_suggested) for s in found] == [("promote", "approve", "acknowledge")]
    bad = Record("bot", "search", "restart", "production", actions=2, acknowledged=1, overridden=1)
    assert [(s.kind, s.mode_now, s.mode_suggested) for s in suggestions(policy, InForce(), [bad], [bad], NOW)] == [
        ("demote", "acknowledge", "approve")]


def test_autonomy_and_brake_keys_are_validated_with_line_numbers() -> None:
    bad = FAST + "autonomy:\n  promote: {min_decisions: 0, min_aproval: 1}\n  grant_for: soon\nbrake: {window: 1x}\n"
    with pytest.raises(PolicyError) as err:
        parse_policy(bad, "p.yml")
    text = "\n".join(err.value.problems)
    assert "autonomy.promote.min_decisions" in text and "unknown key 'min_aproval'" in text
    assert "autonomy.grant_for: bad duration 'soon'" in text and "brake.window: bad duration '1x'" in text
    lines = len(FAST.splitlines())
    assert f"p.yml:{lines + 2}:" in text and f"p.yml:{lines + 4}:" in text
    service_brake = FAST.replace("    tier: tier2\n", "    tier: tier2\n    brake: {max_overrides: 1}\n")
    policy = parse_policy(service_brake + "brake: {max_overrides: 5}\n")
    assert policy.brake_for("search") == Brake(max_overrides=1) and policy.brake_for("batch") == Brake(max_overrides=5)


def test_a_pause_does_not_make_suggestions_of_its_own() -> None:
    """Suggestions weigh the policy's mode (rules and grants), not a pause: search · restart is
    `acknowledge` by the file, and a pause making it `approve` for a while must not bring
    "approve → acknowledge" (granting that would change nothing), nor hide a real demotion."""
    policy = parse_policy(AUTONOMY)
    paused = InForce(pauses=(PauseInForce(7, "all", None, None, "U0VP", "incident", None),))
    good = Record("bot", "search", "restart", "production", actions=3, approved=3)
    assert [(s.mode_now, s.mode_suggested) for s in suggestions(policy, paused, [good], [], NOW)] == [
        ("acknowledge", "autonomous")]
    bad = Record("bot", "search", "restart", "production", actions=2, acknowledged=1, overridden=1)
    assert [(s.kind, s.mode_now, s.mode_suggested) for s in suggestions(policy, paused, [bad], [bad], NOW)] == [
        ("demote", "acknowledge", "approve")]
