"""Resolving policy people given by email, against the fake Slack over HTTP."""

from __future__ import annotations

import pytest

from bot.delivery.directory import UserNotFound, resolve
from bot.demo.fakeslack import FakeSlack, Fault
from tests.conftest import Running


async def test_email_is_resolved_once_and_cached(running: Running, fake_slack: FakeSlack) -> None:
    assert await resolve(running.svc, "dana@example.com") == "U0DANA"
    assert await resolve(running.svc, "Dana@Example.com") == "U0DANA"
    assert len(fake_slack.calls_to("users.lookupByEmail")) == 1


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
