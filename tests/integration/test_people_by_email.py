"""A policy may name a person by email (`owner: dana@example.com`). Slack messages mention the Slack
user that email resolves to (`<@U0DANA>`, shown as a name), never the address: the FYI posted to a
service channel for an autonomous action, and the daily digest's accountability lines. An email
Slack cannot resolve is shown as text."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time

import pytest

from bot.clock import FakeClock
from bot.demo.fakeslack import Call, FakeSlack
from bot.policy.rules import Policy
from bot.reports.digest import run_digest
from handlers.blocks.digest import digest_message, digest_people
from tests.conftest import Running, proposal
from tests.conftest import test_policy as make_policy
from tests.integration.test_commands import SLOW, dump, slash
from tests.integration.test_digest import DAY, seed_day, wait_for_digests

# SLOW, with search (owner only, defaults to its owner) and batch (autonomous) owned by emails:
# dana's resolves in the fake Slack, nobody's does not.
BY_EMAIL = SLOW.replace("owner: U0SEARCH", "owner: dana@example.com").replace(
    "owner: U0BATCH", "owner: dana@example.com\n    secondary: nobody@example.com")


@pytest.fixture
def policy() -> Policy:
    return make_policy(BY_EMAIL)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.combine(DAY, time(8, 0), tzinfo=UTC))


def everything(call: Call) -> str:
    return json.dumps({"text": call.args.get("text"), "blocks": call.args.get("blocks")}, ensure_ascii=False)


async def test_the_fyi_mentions_an_owner_named_by_email(running: Running, fake_slack: FakeSlack) -> None:
    status, body = await running.submit(proposal(kind="executed", service="batch", action_type="scale_up",
                                                 summary="Added 2 batch workers"))
    assert status == 201 and body["mode"] == "autonomous", body
    posted = await fake_slack.wait_for(lambda: fake_slack.posts("C0BATCH"))
    fyi = everything(posted[0])
    assert "Added 2 batch workers" in fyi
    assert "<@U0DANA>" in fyi and "dana@example.com" not in fyi


async def test_the_digest_mentions_people_named_by_email(
    running: Running, fake_slack: FakeSlack, clock: FakeClock
) -> None:
    ids = await seed_day(running, clock)  # search's restart goes unacknowledged: its owner is accountable
    digest = await run_digest(running.svc, DAY)
    assert digest is not None
    defaulted = {i["id"]: i for i in digest["defaults"]}[ids["unacknowledged"]]
    assert defaulted["decided_by"] == "dana@example.com"  # the snapshot keeps the policy's spec
    posted = await wait_for_digests(fake_slack, clock, 1)
    text = everything(posted[0])
    assert f"*#{ids['unacknowledged']}*" in text
    assert "unacknowledged, accountable <@U0DANA>" in text
    assert "dana@example.com" not in text


async def test_an_email_slack_cannot_resolve_is_shown_as_text(running: Running, fake_slack: FakeSlack) -> None:
    fake_slack.users_by_email.pop("dana@example.com")  # dana left the workspace
    status, body = await running.submit(proposal(kind="executed", service="batch", action_type="scale_up",
                                                 summary="Added 3 batch workers"))
    assert status == 201 and body["mode"] == "autonomous", body
    posted = await fake_slack.wait_for(lambda: fake_slack.posts("C0BATCH"))
    fyi = everything(posted[0])
    assert "dana@example.com" in fyi and "<@U0DANA>" not in fyi


def test_the_digest_shows_whom_slack_cannot_resolve_as_text() -> None:
    item = {"id": 7, "service": "search", "action_type": "restart", "summary": "Restarted search-indexer",
            "outcome": "unacknowledged", "decided_by": "dana@example.com", "decided_by_name": "owner",
            "level": "owner", "decided_at": "2026-03-01T10:00:00Z", "response_seconds": 60.0, "reason": None}
    d = {"day": "2026-03-01", "timezone": "UTC", "since": "2026-03-01T00:00:00Z",
         "until": "2026-03-02T00:00:00Z", "total": 1, "by_mode": {"acknowledge": 1},
         "by_outcome": {"unacknowledged": 1}, "per_agent": {}, "per_service": {}, "responded": 0,
         "median_response_seconds": None, "slowest": [], "overrides": [], "defaults": [item],
         "head": {"seq": 3, "hash": "abc"}}
    assert digest_people(d) == ["dana@example.com"]
    resolved = json.dumps(digest_message(d, {"dana@example.com": "U0DANA"}))
    assert "accountable <@U0DANA> (owner)" in resolved and "dana@example.com" not in resolved
    assert "accountable dana@example.com (owner)" in json.dumps(digest_message(d, {}))


async def test_too_late_names_the_decider_the_policy_gave_by_email(running: Running, fake_slack: FakeSlack) -> None:
    """The owner answers an action the policy already recorded for them: the refusal mentions them
    (it said "by owner", the level word the decision recorded for an email)."""
    status, body = await running.submit(proposal(kind="executed", service="batch", action_type="scale_up",
                                                 summary="Added 4 batch workers"))
    assert status == 201 and body["status"] == "recorded", body
    answer = await slash(running, fake_slack, f"ack {body['id']}", user="U0DANA")
    assert f"Action {body['id']} was already decided: recorded by <@U0DANA>" in dump(answer), dump(answer)
    assert "dana@example.com" not in dump(answer)
