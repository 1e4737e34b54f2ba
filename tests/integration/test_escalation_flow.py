"""Escalation through the running app (real HTTP, signed Slack requests, the fake Slack Web API),
with second-scale policies: owner -> secondary -> leadership -> timeout, who may respond, fail closed."""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import select
from sqlmodel import col

from bot.delivery import callbacks
from bot.demo.fakeslack import FakeSlack
from bot.policy.rules import Policy
from storage.models import EscalationStep, LedgerEntry, Response
from tests.conftest import Running, proposal
from tests.conftest import test_policy as load_policy_text
from tests.policies import FAST
from tests.slack_helpers import until as _until

# A climb to the timeout takes several seconds: wait up to 15 s by default.
until = functools.partial(_until, within=15.0)

# Fail closed: the next level is far away, so only the failure can bring it forward.
# FAST with the secondary at 5 s and the leadership at 8 s: the clicks made "before the secondary
# step" must land before it on a loaded machine too (at 2 s, one sometimes did not, and was accepted).
WIDENING = (FAST.replace("after: 2s", "after: 5s").replace("after: 4s", "after: 8s")
            .replace("remind_every: 1s", "remind_every: 10m").replace("timeout: 6s", "timeout: 12s"))
LEADERSHIP_AFTER = 8.0

FAIL_CLOSED = """
leadership: {channel: C0LEADERS, users: [U0VP]}
tiers:
  slow:
    escalation:
      - {notify: owner, after: 0s}
      - {notify: secondary, after: 1s}
      - {notify: leadership, after: 60s}
    timeout: 120s
services:
  checkout-api: {owner: U0OWNER, secondary: ghost@example.com, channel: C0CHECKOUT, tier: slow}
  gone-owner:
    owner: U0GONE
    secondary: dana@example.com
    channel: C0GONE
    tier: slow
    escalation: [{notify: owner, after: 0s}, {notify: secondary, after: 60s}]
rules:
  - mode: approve
"""


class SlackWithMissingChannels(FakeSlack):
    """The fake Slack, where posting to some channels answers `channel_not_found` as Slack does
    for a DM to a deleted user or a channel that does not exist."""

    missing: set[str]

    def _answer(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        if method == "chat.postMessage" and args.get("channel") in getattr(self, "missing", set()):
            return {"ok": False, "error": "channel_not_found"}
        return super()._answer(method, args)


@pytest.fixture
def policy(request: pytest.FixtureRequest) -> Policy:
    return load_policy_text(getattr(request, "param", FAST))


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    slack = SlackWithMissingChannels()
    slack.missing = {"U0GONE"}
    await slack.start()
    people = [("U0OWNER", "owner@example.com", "Olive Owner"), ("U0DANA", "dana@example.com", "Dana"),
              ("U0VP", "vp@example.com", "Vic"), ("U0ADMIN", "admin@example.com", "Ada"),
              ("U0STRANGER", "s@example.com", "Sam")]
    for user, email, name in people:
        slack.add_user(user, email, name)
    yield slack
    await slack.stop()


class Agent:
    """The agent's side: a callback endpoint that records what Countersign POSTs to it."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        return web.Response(text="ok")


@pytest.fixture
async def agent() -> AsyncIterator[tuple[Agent, str]]:
    receiver = Agent()
    app = web.Application()
    app.router.add_post("/decided", receiver.handle)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    yield receiver, str(server.make_url("/decided"))
    await server.close()


async def state(running: Running, action_id: int, token: str | None = None) -> dict[str, Any]:
    """The action as its own agent reads it (agents are isolated: another agent's token gets 404)."""
    status, body = await running.get(f"/v1/actions/{action_id}", token=token)
    assert status == 200, body
    return body


async def steps(running: Running, action_id: int) -> dict[str, EscalationStep]:
    async with running.svc.db.session() as session:
        rows = (await session.execute(
            select(EscalationStep).where(col(EscalationStep.action_id) == action_id))).scalars().all()
        await session.commit()
    return {row.step: row for row in rows}


async def click(running: Running, fake_slack: FakeSlack, user: str, action_id: int, button: str,
                channel: str) -> None:
    resp = await running.interact({
        "type": "block_actions", "team": {"id": "T1"}, "api_app_id": "A0COUNTERSIGN",
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T1"},
        "channel": {"id": channel},
        "container": {"type": "message", "channel_id": channel, "message_ts": "1.1"},
        "actions": [{"type": "button", "action_id": button, "block_id": "decide", "value": str(action_id),
                     "text": {"type": "plain_text", "text": button}, "action_ts": str(time.time())}],
        "response_url": fake_slack.response_url(f"{user}-{button}"), "trigger_id": "trigger-1",
    })
    assert resp.status == 200


async def responses(running: Running, action_id: int) -> list[Response]:
    async with running.svc.db.session() as session:
        query = select(Response).where(col(Response.action_id) == action_id)
        rows = (await session.execute(query)).scalars().all()
        await session.commit()
    return list(rows)


def parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


async def test_unanswered_proposal_climbs_every_level_then_is_denied_and_the_agent_is_told(
    running: Running, fake_slack: FakeSlack, agent: tuple[Agent, str]
) -> None:
    receiver, callback_url = agent
    token, secret = await running.add_agent("deploy-bot")
    status, body = await running.submit(proposal(callback_url=callback_url), token=token)
    assert status == 201, body
    action_id, created = body["id"], parse(body["created_at"])
    first = await state(running, action_id, token)
    assert first["escalation"]["level"] == "owner"
    # FAST: reminders every 1 s, so the next step is the owner's first reminder
    assert parse(first["escalation"]["next_at"]) == created + timedelta(seconds=1)

    await fake_slack.wait_for(lambda: fake_slack.posts("U0OWNER") and fake_slack.posts("C0CHECKOUT"))
    metrics = await running.get("/metrics")
    assert 'countersign_pending_actions{level="owner"} 1.0' in metrics[1]
    assert "countersign_escalation_next_step_timestamp_seconds" in metrics[1]
    assert not fake_slack.posts("U0DANA") and not fake_slack.posts("C0LEADERS")

    dana = await fake_slack.wait_for(lambda: fake_slack.posts("U0DANA"), timeout=10)  # email-resolved
    assert fake_slack.calls_to("users.lookupByEmail", email="dana@example.com")
    mid = await state(running, action_id, token)
    assert mid["escalation"]["level"] == "secondary" and mid["status"] == "pending"
    leaders = await fake_slack.wait_for(lambda: fake_slack.posts("C0LEADERS"), timeout=10)
    assert dana[0].at < leaders[0].at

    final = await until(lambda: _decided(running, action_id, token))
    assert final["status"] == "expired"
    assert final["escalation"]["next_at"] is None
    decision = final["decision"]
    assert decision["outcome"] == "denied" and decision["accountability"] == "default"
    assert decision["via"] == "timeout" and decision["level"] == "leadership"
    assert decision["reason"] == "no response before the timeout; on_timeout: deny"  # the policy's word
    assert decision["by"]["slack_user_id"] == "U0VP"  # the last level reached (its first leadership user)
    assert parse(decision["at"]) >= created + timedelta(seconds=6)

    fired = await steps(running, action_id)
    assert {"page:owner", "page:secondary", "page:leadership", "timeout"} <= set(fired)
    for key, due in (("page:secondary", 2), ("page:leadership", 4), ("timeout", 6)):
        assert fired[key].due_at == created + timedelta(seconds=due)
        assert fired[key].fired_at >= fired[key].due_at
        assert fired[key].late_seconds < 1.0, (key, fired[key].late_seconds)  # on time, to a tick
    assert any(key.startswith("remind:owner:") for key in fired)
    assert not any(key.startswith("remind:") and row.fired_at > fired["timeout"].fired_at
                   for key, row in fired.items())
    await fake_slack.wait_for(lambda: fake_slack.calls_to("chat.update"))  # earlier copies updated

    async def told() -> Any:
        return receiver.received
    headers, raw = (await until(told))[0]
    signed = headers["X-Countersign-Timestamp"], headers["X-Countersign-Signature"]
    assert callbacks.verify(secret, raw, *signed)
    sent = json.loads(raw)
    assert sent["action_id"] == action_id and sent["status"] == "expired"
    assert sent["decision"]["outcome"] == "denied" and sent["decision"]["accountability"] == "default"


async def _decided(running: Running, action_id: int, token: str | None = None) -> dict[str, Any] | None:
    body = await state(running, action_id, token)
    return body if body["decision"] else None


async def test_executed_action_stays_pending_with_default_accountability_then_is_acknowledged(
    running: Running, fake_slack: FakeSlack
) -> None:
    status, body = await running.submit(proposal(kind="executed", action_type="restart",
                                                 environment="staging", summary="Restarted checkout-api"))
    assert status == 201 and body["mode"] == "acknowledge", body
    action_id = body["id"]
    timed_out = await until(lambda: _decided(running, action_id))
    assert timed_out["status"] == "pending"
    assert timed_out["decision"]["outcome"] == "unacknowledged"
    assert timed_out["decision"]["accountability"] == "default"
    assert timed_out["decision"]["level"] == "leadership" and timed_out["decision"]["via"] == "timeout"
    assert timed_out["escalation"]["next_at"] is None  # nothing more fires
    await fake_slack.wait_for(lambda: fake_slack.posts("C0LEADERS"))

    await click(running, fake_slack, "U0OWNER", action_id, "acknowledge", "U0OWNER")
    acked = await until(lambda: _with_status(running, action_id, "acknowledged"))
    assert acked["decision"]["accountability"] == "explicit"
    assert acked["decision"]["by"]["slack_user_id"] == "U0OWNER" and acked["decision"]["via"] == "button"
    assert "timeout" in await steps(running, action_id)


async def _with_status(running: Running, action_id: int, status: str) -> dict[str, Any] | None:
    body = await state(running, action_id)
    return body if body["status"] == status else None


@pytest.mark.parametrize("policy", [WIDENING], indirect=True, ids=["widening"])
async def test_who_may_respond_widens_with_each_level(running: Running, fake_slack: FakeSlack) -> None:
    start = time.monotonic()
    status, body = await running.submit(proposal())
    assert status == 201
    action_id = body["id"]
    await fake_slack.wait_for(lambda: fake_slack.posts("U0OWNER"))
    # Before the secondary step: Dana (and a stranger) are refused, and the attempts are recorded.
    await click(running, fake_slack, "U0DANA", action_id, "approve", "C0CHECKOUT")
    await click(running, fake_slack, "U0STRANGER", action_id, "approve", "C0CHECKOUT")
    refused = await until(lambda: _refusals(running, action_id, 2))
    assert {(r.slack_user_id, r.refusal, r.level) for r in refused} == {
        ("U0DANA", "not_authorized", "owner"), ("U0STRANGER", "not_authorized", "owner")}
    assert (await state(running, action_id))["status"] == "pending"

    await fake_slack.wait_for(lambda: fake_slack.posts("U0DANA"), timeout=15)
    assert (await state(running, action_id))["escalation"]["level"] == "secondary"
    await click(running, fake_slack, "U0STRANGER", action_id, "approve", "C0CHECKOUT")
    await click(running, fake_slack, "U0DANA", action_id, "approve", "U0DANA")
    approved = await until(lambda: _with_status(running, action_id, "approved"))
    assert approved["decision"]["by"]["slack_user_id"] == "U0DANA"
    assert approved["decision"]["level"] == "secondary"
    assert approved["decision"]["accountability"] == "explicit"
    assert approved["escalation"]["next_at"] is None
    rows = await responses(running, action_id)
    assert [r.accepted for r in rows if r.slack_user_id == "U0STRANGER"] == [False, False]
    # No further step fires once decided: leadership is never paged, even after its time.
    await asyncio.sleep(max(0.0, LEADERSHIP_AFTER + 1.0 - (time.monotonic() - start)))
    assert not fake_slack.posts("C0LEADERS")
    assert "page:leadership" not in await steps(running, action_id)


async def _refusals(running: Running, action_id: int, n: int) -> list[Response] | None:
    rows = [r for r in await responses(running, action_id) if not r.accepted]
    return rows if len(rows) >= n else None


@pytest.mark.parametrize("policy", [FAIL_CLOSED], indirect=True, ids=["fail-closed"])
async def test_secondary_not_found_escalates_to_leadership_at_once(running: Running,
                                                                   fake_slack: FakeSlack) -> None:
    start = time.monotonic()
    status, body = await running.submit(proposal())
    assert status == 201
    action_id = body["id"]
    leaders = await fake_slack.wait_for(lambda: fake_slack.posts("C0LEADERS"), timeout=15)
    assert leaders[0].at - start < 15  # planned at 60 s: brought forward by the failure
    fired = await steps(running, action_id)
    assert "users_not_found" in (fired["failed:secondary"].note or "")
    assert fired["page:leadership"].fired_at - fired["failed:secondary"].fired_at < timedelta(seconds=2)
    got = await state(running, action_id)
    assert got["escalation"]["level"] == "leadership"
    assert parse(got["escalation"]["next_at"]) == parse(got["created_at"]) + timedelta(seconds=120)
    async with running.svc.db.session() as session:
        query = select(LedgerEntry).where(col(LedgerEntry.action_id) == action_id,
                                          col(LedgerEntry.event) == "page.failed")
        failed = (await session.execute(query)).scalars().all()
        await session.commit()
    assert [(e.data["level"], "users_not_found" in e.data["reason"]) for e in failed] == [("secondary", True)]


@pytest.mark.parametrize("policy", [FAIL_CLOSED], indirect=True, ids=["fail-closed"])
async def test_owner_channel_not_found_pages_the_secondary_at_once(running: Running,
                                                                   fake_slack: FakeSlack) -> None:
    status, body = await running.submit(proposal(service="gone-owner"))
    assert status == 201
    action_id = body["id"]
    await fake_slack.wait_for(lambda: fake_slack.posts("U0DANA"), timeout=15)  # planned at 60 s
    fired = await steps(running, action_id)
    assert fired["failed:owner"].note == "channel_not_found"
    got = await state(running, action_id)
    assert got["escalation"]["level"] == "secondary" and got["status"] == "pending"
    # The secondary may now respond, as soon as the page went out.
    await click(running, fake_slack, "U0DANA", action_id, "approve", "U0DANA")
    approved = await until(lambda: _with_status(running, action_id, "approved"))
    assert approved["decision"]["level"] == "secondary"
