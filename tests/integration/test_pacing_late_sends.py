"""The soak's 429 (issue 15): the shared per-channel budget (bot/delivery/shared_budget.py) counted
a send when its row was claimed, under the row's own key. Two ways the posts Slack saw broke it:
- one person, two keys: a DM to `dana@example.com` was paced under the e-mail while Slack received
  it for U0DANA, whose DMs by id were paced under `U0DANA`: two budgets for one conversation;
- sends leaving late: a post that waited seconds between its claim and its departure (here the
  first users.lookupByEmail; in the soak a loaded machine, a resumed row's history check) arrived
  together with the sends other replicas were allowed meanwhile.
Against a fake Slack that enforces 1 post a second per channel with bursts of 5 (429 beyond)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from bot.app import create_app
from bot.demo.fakeslack import FakeSlack, Fault, RateLimit
from bot.policy.rules import Policy
from tests.conftest import Running, make_settings, proposal
from tests.conftest import test_policy as parse
from tests.integration.test_downtime_collapse import restarted
from tests.slack_helpers import card_for, click, decided

POLICY = """
leadership: {channel: C0LEADERS, users: [U0VP]}
tiers:
  slow:
    escalation:
      - {notify: owner, after: 0s}
    timeout: 1h
services:
  mail-api: {owner: dana@example.com, tier: slow}
  id-api: {owner: U0DANA, tier: slow}
rules:
  - mode: approve
"""


@pytest.fixture
def policy() -> Policy:
    return parse(POLICY)


async def _dms_to_dana(fake_slack: FakeSlack, count: int, within: float = 60.0) -> None:
    await fake_slack.wait_for(lambda: len(fake_slack.posts("U0DANA")) >= count, timeout=within)


async def test_a_person_named_by_email_and_by_id_has_one_budget(running: Running, fake_slack: FakeSlack) -> None:
    fake_slack.post_limit = RateLimit(per_second=1.0, burst=5)
    fake_slack.add_user("U0DANA", "dana@example.com", "Dana")
    # Dana's id is known (cached) before the storm: a first page looked her up.
    assert (await running.submit(proposal(service="mail-api", summary="first")))[0] == 201
    await _dms_to_dana(fake_slack, 1)
    await asyncio.sleep(5.0)  # the budget is full again
    results = await asyncio.gather(*(running.submit(proposal(service=service, summary=f"{service} {n}"))
                                     for n in range(6) for service in ("mail-api", "id-api")))
    assert all(status == 201 for status, _ in results), results
    await _dms_to_dana(fake_slack, 13)
    assert fake_slack.post_limit.refused == [], [c.args.get("text") for c in fake_slack.post_limit.refused]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_sends_leaving_late_do_not_bunch_with_other_replicas_sends(
        running: Running, fake_slack: FakeSlack, database_url: str, policy: Policy) -> None:
    fake_slack.post_limit = RateLimit(per_second=1.0, burst=5)
    fake_slack.add_user("U0DANA", "dana@example.com", "Dana")
    # Each replica's first page to Dana waits 3 s on users.lookupByEmail: its sends leave late.
    fake_slack.inject(Fault(method="users.lookupByEmail", delay=3.0, times=None))
    async with contextlib.AsyncExitStack() as replicas:
        for _ in range(2):  # three replicas on one database, sharing one Slack budget
            app = create_app(make_settings(database_url, fake_slack.url), policy=policy)
            await replicas.enter_async_context(restarted(app, running.token))
        results = await asyncio.gather(*(running.submit(proposal(service="mail-api", summary=f"late {n}"))
                                         for n in range(12)))
        assert all(status == 201 for status, _ in results), results
        await asyncio.sleep(3.5)
        fake_slack.faults.clear()
        await _dms_to_dana(fake_slack, 12)
    assert fake_slack.post_limit.refused == [], [c.args.get("text") for c in fake_slack.post_limit.refused]


async def test_refusal_dms_wait_their_turn_with_the_persons_cards(running: Running, fake_slack: FakeSlack) -> None:
    """A click with no channel nor response_url (App Home; the soak's clicks) is refused by DM.
    Posted by the listener straight away, those DMs took Slack's budget from the cards queued for
    the same person: the 2-minute soak's 429s on U0OWNER."""
    fake_slack.post_limit = RateLimit(per_second=1.0, burst=5)
    status, body = await running.submit(proposal(service="id-api", summary="decided first"))
    assert status == 201, body
    card = await card_for(fake_slack, "U0DANA", body["id"])
    await click(running, fake_slack, "U0DANA", card, "Approve", channel=None, response_url=False)
    await decided(running, body["id"])
    await asyncio.sleep(5.0)  # Dana's budget is full again
    clicks = [click(running, fake_slack, "U0DANA", card, "Approve", channel=None, response_url=False,
                    trigger_id=f"t{n}") for n in range(6)]
    submits = [running.submit(proposal(service="id-api", summary=f"next {n}")) for n in range(3)]
    await asyncio.gather(*clicks, *submits)

    def refusals() -> list[Any]:
        return [c for c in fake_slack.posts("U0DANA") if "already decided" in str(c.args.get("text"))]

    await fake_slack.wait_for(lambda: len(refusals()) >= 6 and len(fake_slack.posts("U0DANA")) >= 10, timeout=60)
    assert fake_slack.post_limit.refused == [], [c.args.get("text") for c in fake_slack.post_limit.refused]
