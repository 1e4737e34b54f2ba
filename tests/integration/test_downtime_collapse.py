"""Page spam after downtime (issue 15, finding 3), reproduced: pending tier1 proposals whose whole
chain passed while the server was down. On restart each gets ONE notice in the
channel its last level would have used, no secondary or leadership page, and the record keeps
what was skipped and why."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlmodel import col, select

from bot.app import create_app
from bot.demo.fakeslack import FakeSlack
from bot.policy.rules import Policy
from storage.models import EscalationStep, LedgerEntry
from tests.conftest import Running, make_settings, proposal, serve
from tests.conftest import test_policy as parse
from tests.slack_helpers import until

ACTIONS = 6
# The tier1 chain of tests/policies.py, spread out so that posting the first cards (paced at Slack's
# one a second per channel: 6 cards take 5 s, more on a loaded machine) is over long before the
# first reminder is due (a 5 s reminder made this test count 13 posts instead of 12).
SLOW_CHAIN = """
leadership: {channel: C0LEADERS, users: [U0VP]}
tiers:
  tier1:
    escalation:
      - {notify: owner, after: 0s}
      - {notify: secondary, after: 30s}
      - {notify: leadership, after: 40s}
    remind_every: 20s
    timeout: 50s
services:
  checkout-api: {owner: U0OWNER, secondary: dana@example.com, channel: C0CHECKOUT, tier: tier1}
rules:
  - mode: approve
"""


class JumpingClock:
    """Real time, plus whatever `jump` added: the server is stopped, the clock jumps, it restarts."""

    def __init__(self) -> None:
        self.base, self.start = datetime.now(UTC), time.monotonic()

    def __call__(self) -> datetime:
        return self.base + timedelta(seconds=time.monotonic() - self.start)

    def jump(self, seconds: float) -> None:
        self.base += timedelta(seconds=seconds)


@pytest.fixture
def policy() -> Policy:
    return parse(SLOW_CHAIN)


async def test_actions_that_expired_while_down_get_one_notice_and_no_pages(
    database_url: str, fake_slack: FakeSlack, policy: Policy
) -> None:
    clock = JumpingClock()

    def app() -> web.Application:
        made = create_app(make_settings(database_url, fake_slack.url), policy=policy, clock=clock)
        return made

    async with serve(app()) as run:
        token = run.token
        ids = []
        for n in range(ACTIONS):
            status, body = await run.submit(proposal(summary=f"Scale down, try {n}"))
            assert status == 201, body
            ids.append(body["id"])
        # The owner's DM and the service channel's card for each, then the server goes away.
        await fake_slack.wait_for(lambda: len(fake_slack.posts()) >= 2 * ACTIONS)
    before = len(fake_slack.posts())
    assert before == 2 * ACTIONS

    clock.jump(70)  # down for 70 s: secondary (30 s), leadership (40 s) and timeout (50 s) all passed

    async with restarted(app(), token) as run:

        async def all_expired() -> bool:
            states = [(await run.get(f"/v1/actions/{i}"))[1]["status"] for i in ids]
            return all(s == "expired" for s in states)

        await until(all_expired)
        await fake_slack.wait_for(lambda: len(fake_slack.posts()) >= before + ACTIONS)
        await until(lambda: _outbox_idle(run), within=10)
        posts = fake_slack.posts()[before:]

        # One notice per expired action, in the leadership channel, mentioning nobody.
        assert len(posts) == ACTIONS, [(p.args.get("channel"), p.args.get("text")) for p in posts]
        assert {p.args["channel"] for p in posts} == {"C0LEADERS"}
        assert sorted(int(p.args["text"].split("Action ")[1].split(" ")[0]) for p in posts) == sorted(ids)
        assert not any("<@" in p.args["text"] or "<!" in p.args["text"] for p in posts)
        assert not fake_slack.posts("U0DANA")  # no secondary page for an action already expired

        async with run.svc.db.session() as session:
            steps = (await session.execute(select(EscalationStep).where(
                col(EscalationStep.action_id) == ids[0]))).scalars().all()
            events = (await session.execute(select(col(LedgerEntry.event)).where(
                col(LedgerEntry.action_id) == ids[0]))).scalars().all()
        by_key = {s.step: s for s in steps}
        assert {"page:owner", "skipped:secondary", "skipped:leadership", "timeout"} <= set(by_key)
        assert "page:secondary" not in by_key and "page:leadership" not in by_key
        assert "downtime" in (by_key["skipped:secondary"].note or "")
        assert by_key["skipped:leadership"].late_seconds > 10
        assert list(events).count("escalation.skipped") == 2
        assert "decision" in events


@contextlib.asynccontextmanager
async def restarted(app: web.Application, token: str) -> AsyncIterator[Running]:
    """The server again, on the same database (its agent already exists)."""
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            run = Running(server, app, http)
            run.token = token
            yield run
    finally:
        await server.close()


async def _outbox_idle(run: object) -> bool:
    from storage.models import OutboxMessage

    svc = run.svc  # type: ignore[attr-defined]
    async with svc.db.session() as session:
        rows = (await session.execute(select(col(OutboxMessage.status)).where(
            col(OutboxMessage.status).in_(["pending", "sending"])))).scalars().all()
    return not rows
