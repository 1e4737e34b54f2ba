"""People given as emails, escalation to the secondary and leadership, every copy of the card
updated, and a person Slack cannot find (a clear error, then escalation takes over).

Time is a FakeClock an hour ahead (so the outbox's wall-clock rows are due at once); moving it
lets the sweeper fire the next level without waiting."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import col, select

from bot.clock import FakeClock
from bot.demo.fakeslack import FakeSlack, Fault
from bot.policy.rules import Policy
from storage.models import OutboxMessage
from storage.queries import actions as repo
from tests.conftest import Running, proposal
from tests.conftest import test_policy as parse_test_policy
from tests.policies import FAST
from tests.slack_helpers import (
    buttons,
    card_for,
    click,
    decided,
    ephemerals,
    ledger_events,
    submission,
    until,
)

GHOST_OWNER = FAST.replace("owner: U0OWNER", "owner: ghost@example.com")
# The owner by email, the secondary by id: only the owner's page needs users.lookupByEmail.
EMAIL_OWNER = FAST.replace("owner: U0OWNER", "owner: olive@example.com").replace(
    "secondary: dana@example.com", "secondary: U0DANA")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1))


@pytest.fixture
def policy(request: pytest.FixtureRequest) -> Policy:
    return parse_test_policy(getattr(request, "param", FAST))


async def test_secondary_given_as_email_is_resolved_and_may_respond_once_paged(
    running: Running, fake_slack: FakeSlack, clock: FakeClock
) -> None:
    _, body = await running.submit(proposal())
    channel_card = await card_for(fake_slack, "C0CHECKOUT", body["id"])
    # Before the secondary is paged, Dana is not (yet) allowed to decide.
    await click(running, fake_slack, "U0DANA", channel_card, "Approve", trigger_id="early")
    note = await fake_slack.wait_for(lambda: ephemerals(fake_slack, "U0DANA"))
    assert "not paged" in note[0].args["text"]

    clock.advance(2.5)  # the secondary's step (2s) is due
    dana_card = await card_for(fake_slack, "U0DANA", body["id"])
    assert fake_slack.calls_to("users.lookupByEmail", email="dana@example.com")
    assert "Escalated to secondary*: <@U0DANA>" in json.dumps(dana_card.args["blocks"])
    await click(running, fake_slack, "U0DANA", dana_card, "Approve", trigger_id="paged")
    got = await decided(running, body["id"])
    assert got["status"] == "approved"
    assert got["decision"]["by"]["slack_user_id"] == "U0DANA" and got["decision"]["level"] == "secondary"


async def test_every_copy_of_the_card_is_updated_in_place(
    running: Running, fake_slack: FakeSlack, clock: FakeClock
) -> None:
    _, body = await running.submit(proposal(summary="Fail over payments-db to replica"))
    await card_for(fake_slack, "U0OWNER", body["id"])
    clock.advance(2.5)
    await card_for(fake_slack, "U0DANA", body["id"])
    clock.advance(2.0)  # leadership (4s)
    lead = await card_for(fake_slack, "C0LEADERS", body["id"])
    assert lead.args["text"].startswith("<@U0VP>")  # the leadership users are mentioned
    await click(running, fake_slack, "U0VP", lead, "Override", channel="C0LEADERS")
    [opened] = await fake_slack.wait_for(lambda: fake_slack.calls_to("views.open"))
    await running.interact(submission("U0VP", opened.args["view"], "replica is 40 minutes behind"))
    got = await decided(running, body["id"])
    assert got["status"] == "denied" and got["decision"]["level"] == "leadership"

    async with running.svc.db.session() as session:
        copies = {c.purpose: (c.channel, c.ts) for c in await repo.slack_messages(session, body["id"])}
    assert set(copies) == {"card:dm:owner", "card:channel", "card:dm:secondary", "card:leadership"}
    assert {ch for ch, _ in copies.values()} == {"U0OWNER", "C0CHECKOUT", "U0DANA", "C0LEADERS"}

    def all_updated() -> bool:
        return all("replica is 40 minutes behind" in json.dumps(fake_slack.messages[key].get("blocks"))
                   for key in copies.values())

    await fake_slack.wait_for(all_updated)
    for key in copies.values():
        latest = fake_slack.messages[key]
        assert not any(b["type"] == "actions" for b in latest["blocks"])  # no buttons once decided
        assert "Denied" in latest["blocks"][0]["text"]["text"] and "<@U0VP>" in json.dumps(latest["blocks"])
        assert fake_slack.calls_to("chat.update", channel=key[0], ts=key[1])


@pytest.mark.parametrize("policy", [GHOST_OWNER], indirect=True)
async def test_owner_slack_cannot_find_is_a_clear_error_and_escalation_takes_over(
    running: Running, fake_slack: FakeSlack, clock: FakeClock
) -> None:
    _, body = await running.submit(proposal())
    # No clock move: paging the owner failed for good, so the secondary is due at once (fail closed).
    dana_card = await card_for(fake_slack, "U0DANA", body["id"])
    assert set(buttons(dana_card)) == {"Approve", "Override"}

    async with running.svc.db.session() as session:
        query = select(OutboxMessage).where(col(OutboxMessage.action_id) == body["id"],
                                            col(OutboxMessage.purpose) == "card:dm:owner")
        failed = list((await session.execute(query)).scalars())
    assert len(failed) == 1 and failed[0].status == "failed"
    assert failed[0].last_error and "ghost@example.com" in failed[0].last_error
    assert "users_not_found" in failed[0].last_error
    events = await ledger_events(running, body["id"])
    page_failed = [e for e in events if e.event == "page.failed"]
    assert page_failed and "users_not_found" in page_failed[0].data["reason"]
    assert page_failed[0].data["level"] == "owner"
    assert await until(lambda: _paged(running, body["id"], "secondary"))
    # The service channel's card says why it went past the owner.
    await fake_slack.wait_for(lambda: [c for c in fake_slack.calls_to("chat.update", channel="C0CHECKOUT")
                                       if "Could not page the owner" in json.dumps(c.args["blocks"])])


async def _paged(running: Running, action_id: int, level: str) -> bool:
    await asyncio.sleep(0)
    return any(e.event == "escalation.page" and e.data.get("level") == level
               for e in await ledger_events(running, action_id))


@pytest.mark.parametrize("policy", [EMAIL_OWNER], indirect=True)
async def test_a_web_api_without_lookup_by_email_fails_the_page_once_and_escalation_goes_on(
    running: Running, fake_slack: FakeSlack, clock: FakeClock
) -> None:
    """A stand-in without users.lookupByEmail answers 404 with no JSON (Slack would say
    `unknown_method`): the owner's DM fails for good at once and the secondary is paged, instead of
    the DM being retried every minute forever, asking Slack twice each time, while nobody is paged."""
    fake_slack.inject(Fault(method="users.lookupByEmail", status=404, times=None))
    _, body = await running.submit(proposal())
    dana_card = await card_for(fake_slack, "U0DANA", body["id"])  # no clock move: fail closed
    assert set(buttons(dana_card)) == {"Approve", "Override"}
    async with running.svc.db.session() as session:
        query = select(OutboxMessage).where(col(OutboxMessage.action_id) == body["id"],
                                            col(OutboxMessage.purpose) == "card:dm:owner")
        [failed] = list((await session.execute(query)).scalars())
    assert failed.status == "failed" and failed.attempts == 1
    assert failed.last_error == "HTTP 404 from users.lookupByEmail"
    page_failed = [e for e in await ledger_events(running, body["id"]) if e.event == "page.failed"]
    assert page_failed and page_failed[0].data["level"] == "owner"
