"""Agent input that must be refused or neutralised (issue 15, finding 5): callback URLs into our own
network (SSRF), executed_at far in the future, a confidence sent as a string, and invisible
zero-width / bidi control characters in what people read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web

from bot.app import create_app
from bot.contract.callback_target import AllowList
from bot.delivery.ssrf import CallbackRefused, GuardedResolver
from bot.demo.fakeslack import FakeSlack
from bot.policy.rules import Policy
from storage import outbox
from tests.conftest import Running, make_settings, proposal, serve
from tests.integration.test_slack_callbacks import Receiver
from tests.slack_helpers import card_for, click, decided, until


@pytest.fixture
async def strict(database_url: str, fake_slack: FakeSlack, policy: Policy) -> AsyncIterator[Running]:
    """The app with the default callback rules: no COUNTERSIGN_CALLBACK_ALLOW."""
    settings = make_settings(database_url, fake_slack.url, COUNTERSIGN_CALLBACK_ALLOW="")
    async with serve(create_app(settings, policy=policy)) as run:
        yield run


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/iam/",
    "http://127.0.0.1:8080/hook",
    "http://localhost:8080/hook",
    "http://[::1]/hook",
    "http://10.1.2.3/hook",
    "http://192.168.0.10/hook",
    "http://[::ffff:169.254.169.254]/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://0.0.0.0:3000/",
])
async def test_callback_into_our_own_network_is_refused_naming_the_field(strict: Running, url: str) -> None:
    status, body = await strict.submit(proposal(callback_url=url))
    assert status == 422, body
    assert body["error"]["message"].startswith("callback_url: ")
    assert body["error"]["fields"][0]["field"] == "callback_url"
    _, page = await strict.get("/v1/actions")
    assert page["items"] == []  # nothing was stored, nobody was paged


async def test_a_public_callback_is_accepted(strict: Running) -> None:
    status, body = await strict.submit(proposal(callback_url="https://93.184.215.14/hooks/countersign"))
    assert status == 201, body


async def test_the_allow_list_lets_loopback_through(running: Running) -> None:
    status, body = await running.submit(proposal(callback_url="http://127.0.0.1:9/hook"))
    assert status == 201, body


async def test_checked_again_when_sending(running: Running, fake_slack: FakeSlack) -> None:
    """Allowed when submitted, refused by the time the decision is sent: nothing reaches the target,
    and the delivery fails for good (no retries against it)."""
    receiver = Receiver()
    await receiver.start()
    try:
        status, body = await running.submit(proposal(callback_url=receiver.url))
        assert status == 201, body
        running.svc.settings.callback_allow = ""  # as if the name now pointed somewhere refused
        card = await card_for(fake_slack, "U0OWNER", body["id"])
        await click(running, fake_slack, "U0OWNER", card, "Approve")
        await decided(running, body["id"])

        async def failed() -> list[str]:
            async with running.svc.db.session() as session:
                rows = await outbox.listing(session, status="failed")
            return [r.last_error or "" for r in rows if r.target == "callback"]

        [error] = await until(failed)
        assert "callback_url refused" in error and "127.0.0.1" in error
        await asyncio.sleep(0.3)
        assert receiver.requests == []
    finally:
        await receiver.stop()


async def test_the_send_time_resolver_drops_refused_addresses() -> None:
    with pytest.raises(CallbackRefused, match="localhost"):
        await GuardedResolver(AllowList.parse("")).resolve("localhost", 80)
    kept = await GuardedResolver(AllowList.parse("127.0.0.0/8")).resolve("localhost", 80)
    assert kept and all(r["host"].startswith("127.") for r in kept)


def test_a_bad_allow_entry_is_named_at_start() -> None:
    with pytest.raises(ValueError, match="not a host"):
        AllowList.parse("10.0.0.0/8, not a host!")


async def test_executed_at_far_in_the_future_is_refused(running: Running) -> None:
    status, body = await running.submit(proposal(kind="executed", executed_at="9998-01-01T00:00:00Z"))
    assert status == 400 and body["error"]["fields"][0]["field"] == "executed_at", body
    soon = (datetime.now(UTC) + timedelta(minutes=2)).isoformat()
    status, body = await running.submit(proposal(kind="executed", executed_at=soon))
    assert status == 201, body  # clock skew is not an attack


async def test_confidence_as_a_string_is_refused(running: Running) -> None:
    status, body = await running.submit(proposal(confidence="0.5"))
    assert status == 400, body
    assert body["error"]["fields"] == [{"field": "confidence", "message": "a JSON number from 0 to 1, not a string"}]


async def test_invisible_characters_are_removed_and_an_empty_summary_refused(
        running: Running, fake_slack: FakeSlack) -> None:
    status, body = await running.submit(proposal(summary="\u200b\u200c\u2060\ufeff \u202e"))
    assert status == 400 and body["error"]["fields"][0]["field"] == "summary", body

    status, body = await running.submit(proposal(
        summary="Delete \u202etxt.exe\u202c logs", action_type="re\u200bstart",
        evidence=[{"label": "Gra\u2066fana\u2069", "url": "https://grafana.example.com/d/x"}]))
    assert status == 201, body
    got = (await running.get(f"/v1/actions/{body['id']}"))[1]
    assert got["summary"] == "Delete txt.exe logs" and got["action_type"] == "restart"
    assert got["evidence"][0]["label"] == "Grafana"
    card = await card_for(fake_slack, "U0OWNER", body["id"])
    assert not any(ch in str(card.args) for ch in "\u202e\u200b\u2066")


class Redirector(Receiver):
    """An allowed endpoint that answers 307 towards another address."""

    def __init__(self, location: str) -> None:
        super().__init__()
        self.location = location

    async def _handle(self, request: web.Request) -> web.Response:
        await super()._handle(request)
        return web.Response(status=307, headers={"Location": self.location})


async def test_a_callback_redirect_is_not_followed(database_url: str, fake_slack: FakeSlack, policy: Policy) -> None:
    """Only 127.0.0.1 is allowed; it redirects to 127.0.0.2 (refused): the signed decision must not be
    POSTed there. A redirect is a failed delivery, retried like any other (it may be temporary)."""
    target = Receiver()
    await target.start()
    runner = web.AppRunner(target._runner.app)  # type: ignore[union-attr]  # the same handler on 127.0.0.2
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.2", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    hidden = f"http://127.0.0.2:{port}/hooks/countersign"
    redirector = Redirector(hidden)
    await redirector.start()
    settings = make_settings(database_url, fake_slack.url, COUNTERSIGN_CALLBACK_ALLOW="127.0.0.1/32")
    try:
        async with serve(create_app(settings, policy=policy)) as running:
            status, body = await running.submit(proposal(callback_url=redirector.url))
            assert status == 201, body
            card = await card_for(fake_slack, "U0OWNER", body["id"])
            await click(running, fake_slack, "U0OWNER", card, "Approve")
            await decided(running, body["id"])
            await asyncio.wait_for(redirector.arrived.wait(), timeout=10)

            async def retrying() -> list[str]:
                async with running.svc.db.session() as session:
                    rows = await outbox.listing(session)
                return [r.last_error or "" for r in rows if r.target == "callback" and r.last_error]

            [error] = await until(retrying)
            assert "307" in error
            await asyncio.sleep(0.3)
            assert target.requests == [], "the decision was POSTed to a refused address"
    finally:
        await redirector.stop()
        await runner.cleanup()
        await target.stop()
