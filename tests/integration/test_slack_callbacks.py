"""The agent learns the owner's click: its callback_url receives the decision, signed with its secret."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from bot.delivery import callbacks
from bot.demo.fakeslack import FakeSlack
from tests.conftest import Running, proposal
from tests.slack_helpers import card_for, click, decided


class Receiver:
    """A tiny agent endpoint on a random port that keeps every request it gets."""

    def __init__(self) -> None:
        self.requests: list[tuple[bytes, dict[str, str]]] = []
        self.arrived = asyncio.Event()
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks/countersign", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hooks/countersign"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append((await request.read(), dict(request.headers)))
        self.arrived.set()
        return web.Response(status=204)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


async def test_owner_click_reaches_the_agent_signed(running: Running, fake_slack: FakeSlack,
                                                    receiver: Receiver) -> None:
    token, secret = await running.add_agent("deploy-bot")
    status, body = await running.submit(proposal(callback_url=receiver.url, external_id="deploy-981"),
                                        token=token)
    assert status == 201, body
    card = await card_for(fake_slack, "U0OWNER", body["id"])
    await click(running, fake_slack, "U0OWNER", card, "Approve")
    await decided(running, body["id"], token=token)
    await asyncio.wait_for(receiver.arrived.wait(), timeout=10)

    [(raw, headers)] = receiver.requests
    timestamp, signature = headers["X-Countersign-Timestamp"], headers["X-Countersign-Signature"]
    assert signature.startswith("v1=")
    assert callbacks.verify(secret, raw, timestamp, signature)
    assert not callbacks.verify("whsec_someone-else", raw, timestamp, signature)
    assert not callbacks.verify(secret, raw.replace(b"approved", b"denied"), timestamp, signature)
    assert not callbacks.verify(secret, raw, str(int(timestamp) - 600), signature)

    sent: dict[str, Any] = json.loads(raw)
    assert sent["action_id"] == body["id"] and sent["external_id"] == "deploy-981"
    assert sent["status"] == "approved"
    assert sent["decision"]["outcome"] == "approved"
    assert sent["decision"]["by"]["slack_user_id"] == "U0OWNER"
    assert sent["decision"]["accountability"] == "explicit" and sent["decision"]["via"] == "button"


async def test_an_autonomous_action_tells_the_agent_its_decision_too(running: Running, receiver: Receiver) -> None:
    """SPEC: on a decision, POST it to callback_url. An autonomous action is decided on arrival (by
    policy): the agent gets the same signed callback as for a click, once."""
    token, secret = await running.add_agent("autoscaler")
    status, body = await running.submit(proposal(service="search", callback_url=receiver.url), token=token)
    assert status == 201 and body["status"] == "recorded", body
    await asyncio.wait_for(receiver.arrived.wait(), timeout=10)
    [(raw, headers)] = receiver.requests
    assert callbacks.verify(secret, raw, headers["X-Countersign-Timestamp"], headers["X-Countersign-Signature"])
    sent = json.loads(raw)
    assert (sent["action_id"], sent["status"]) == (body["id"], "recorded")
    assert sent["decision"]["accountability"] == "policy" and sent["decision"]["via"] == "policy"
    assert sent["decision"]["by"]["slack_user_id"] == "U0SEARCH"
    await asyncio.sleep(0.3)
    assert len(receiver.requests) == 1
