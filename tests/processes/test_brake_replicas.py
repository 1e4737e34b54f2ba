"""The automatic brake trips exactly once with three `countersign serve` replicas on one database and
overrides arriving at all of them at the same moment (signed Slack requests, counted at the fake Slack)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import pytest
from sqlalchemy import select
from sqlmodel import col

from bot.demo.fakeslack import FakeSlack
from storage.db import Database
from storage.models import LedgerEntry, Pause
from storage.queries import agents
from tests.processes.test_escalation_processes import Server, outbox_drained, server_env, wait_until
from tests.slack_helpers import submission

pytestmark = pytest.mark.processes

POLICY = """
leadership: {channel: C0LEADERS, users: [U0VP]}
services:
  checkout-api: {owner: U0OWNER, channel: C0CHECKOUT}
rules:
  - mode: approve
brake: {max_overrides: 2, window: 1h}
"""
OVERRIDES = 6


def signed(body: str) -> dict[str, str]:
    ts = str(int(time.time()))
    sig = "v0=" + hmac.new(b"test-secret", f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": sig}


@pytest.fixture
def servers() -> list[Server]:
    return []


@pytest.mark.timeout(180)
async def test_three_replicas_and_concurrent_overrides_trip_the_brake_once(
        database_url: str, tmp_path: Path, servers: list[Server]) -> None:
    policy_path = tmp_path / "policy.yml"
    policy_path.write_text(POLICY)
    fake = FakeSlack()
    await fake.start()
    db = Database(database_url)
    replicas = [Server(server_env(database_url, fake.url, policy_path), tmp_path, f"replica{n}") for n in range(3)]
    try:
        replicas[0].start()
        await replicas[0].ready(within=60)  # it migrates the schema; the others find it current
        for replica in replicas[1:]:
            replica.start()
        for replica in replicas:
            servers.append(replica)
            await replica.ready(within=60)
        async with db.session() as session:
            _, token = await agents.create(session, "remediator")
            await session.commit()
        async with aiohttp.ClientSession() as http:
            ids = []
            for i in range(OVERRIDES):
                async with http.post(f"{replicas[0].url}/v1/actions", headers={"Authorization": f"Bearer {token}"},
                                     json={"kind": "proposed", "service": "checkout-api", "action_type": "deploy",
                                           "summary": f"deploy {i}", "rationale": "new build"}) as resp:
                    assert resp.status == 201
                    ids.append((await resp.json())["id"])

            async def override(n: int, action_id: int) -> int:
                view = {"callback_id": "override_modal", "private_metadata": json.dumps({"action_id": action_id}),
                        "type": "modal"}
                body = urlencode({"payload": json.dumps(submission("U0OWNER", view, "wrong build"))})
                async with http.post(f"{replicas[n % 3].url}/slack/events", data=body.encode(),
                                     headers=signed(body)) as resp:
                    return resp.status

            statuses = await asyncio.gather(*(override(n, a) for n, a in enumerate(ids)))
            assert set(statuses) == {200}

        async def all_decided_and_sent() -> bool:
            async with db.session() as session:
                decided = (await session.execute(select(LedgerEntry).where(col(LedgerEntry.event) == "decision"))).all()
                await session.commit()
            return len(decided) == OVERRIDES and await outbox_drained(db)

        await wait_until(all_decided_and_sent, 60, "six overrides decided and every message sent")
        await asyncio.sleep(1.0)  # a second brake, if there were one, would show now
        async with db.session() as session:
            pauses = list((await session.execute(select(Pause))).scalars())
            started = list((await session.execute(select(LedgerEntry).where(
                col(LedgerEntry.event) == "pause.started"))).scalars())
            await session.commit()
        assert len(pauses) == 1 and pauses[0].by == "countersign", [r.output() for r in replicas]
        assert pauses[0].target == "agent:remediator@checkout-api" and "overrides within 1h" in pauses[0].reason
        assert len(started) == 1

        def brake_posts(channel: str) -> int:
            return sum(1 for c in fake.posts(channel) if "Automatic brake" in json.dumps(c.args))

        assert (brake_posts("C0LEADERS"), brake_posts("C0CHECKOUT"), brake_posts("U0OWNER")) == (1, 1, 1)
    finally:
        for replica in replicas:
            replica.kill9()
        await db.dispose()
        await fake.stop()
