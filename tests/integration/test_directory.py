"""Resolving policy people given by email, against the fake Slack over HTTP."""

from __future__ import annotations

import asyncio
import time

import pytest
from slack_sdk.errors import SlackApiError

from bot.contract.serialize import Person
from bot.delivery.directory import UserNotFound, mention_ids, people, resolve
from bot.demo.fakeslack import FakeSlack, Fault
from tests.conftest import Running


async def test_email_is_resolved_once_and_cached(running: Running, fake_slack: FakeSlack) -> None:
    assert await resolve(running.svc, "dana@example.com") == "U0DANA"
    assert await resolve(running.svc, "Dana@Example.com") == "U0DANA"
    assert len(fake_slack.calls_to("users.lookupByEmail")) == 1


async def test_concurrent_first_lookups_of_one_email_ask_slack_once(running: Running, fake_slack: FakeSlack) -> None:
    found = await asyncio.gather(*(resolve(running.svc, spec) for spec in ["dana@example.com"] * 5
                                   + ["DANA@example.com"] * 3))
    assert found == ["U0DANA"] * 8
    assert len(fake_slack.calls_to("users.lookupByEmail")) == 1
    assert running.svc.email_lookups == {}  # nothing kept once answered


async def test_a_server_that_only_routes_get_still_resolves(running: Running, fake_slack: FakeSlack) -> None:
    fake_slack.inject(Fault(method="users.lookupByEmail", status=405, times=1))
    assert await resolve(running.svc, "dana@example.com") == "U0DANA"
    assert fake_slack.calls_to("users.lookupByEmail", email="dana@example.com")


async def test_unknown_email_is_a_permanent_not_found(running: Running, fake_slack: FakeSlack) -> None:
    with pytest.raises(UserNotFound, match="nobody@example.com"):
        await resolve(running.svc, "nobody@example.com")
    with pytest.raises(UserNotFound):  # cached: Slack is not asked again
        await resolve(running.svc, "nobody@example.com")
    assert len(fake_slack.calls_to("users.lookupByEmail")) == 1


async def test_an_outage_answering_html_is_slack_trouble_to_retry(running: Running, fake_slack: FakeSlack) -> None:
    """Slack down answers 503 with a text body: a SlackApiError the relay retries and counts
    against the breaker (it raised AttributeError on the non-JSON body before), and nothing cached."""
    fake_slack.down = True
    with pytest.raises(SlackApiError) as raised:
        await resolve(running.svc, "dana@example.com")
    assert raised.value.response.status_code == 503
    fake_slack.down = False
    assert await resolve(running.svc, "dana@example.com") == "U0DANA"


async def test_a_reader_names_people_from_the_cache_and_asks_slack_once(running: Running,
                                                                        fake_slack: FakeSlack) -> None:
    found = await people(running.svc, ["dana@example.com", "U0OWNER", "U0NOBODY", "C0CHECKOUT", None])
    assert found == {"dana@example.com": Person("U0DANA", "Dana Secondary"),
                     "U0OWNER": Person("U0OWNER", "Olive Owner"),
                     "U0NOBODY": Person("U0NOBODY", None)}  # Slack does not know U0NOBODY: no name
    assert await people(running.svc, ["dana@example.com", "U0OWNER", "U0NOBODY"]) == found
    assert len(fake_slack.calls_to("users.lookupByEmail")) == 1 and len(fake_slack.calls_to("users.info")) == 2
    # For a Slack message: the emails that resolve, as the ids Slack renders as names.
    assert await mention_ids(running.svc, ["dana@example.com", "ghost@example.com", "U0OWNER"]) == {
        "dana@example.com": "U0DANA"}


async def test_a_reader_waits_for_slack_only_so_long_and_the_lookup_still_fills_the_cache(
        running: Running, fake_slack: FakeSlack) -> None:
    fake_slack.inject(Fault(method="users.lookupByEmail", delay=1.5))  # slow, then answers
    began = time.monotonic()
    assert await people(running.svc, ["dana@example.com"], wait=0.2) == {}  # shown as given meanwhile
    assert time.monotonic() - began < 1.0
    await asyncio.sleep(1.6)
    cached = await people(running.svc, ["dana@example.com"], wait=0)
    assert cached == {"dana@example.com": Person("U0DANA", "Dana Secondary")}
    assert len(fake_slack.calls_to("users.lookupByEmail")) == 1
