"""Slack's request signature is checked on every request: forged or stale requests decide nothing."""

from __future__ import annotations

import asyncio
import json
import time

from bot.demo.fakeslack import FakeSlack
from tests.conftest import Running, proposal
from tests.slack_helpers import action_state, card_for, click_payload, responses


async def test_forged_and_stale_requests_are_rejected(running: Running, fake_slack: FakeSlack) -> None:
    _, body = await running.submit(proposal())
    card = await card_for(fake_slack, "U0OWNER", body["id"])
    approve = next(e for b in card.args["blocks"] if b["type"] == "actions" for e in b["elements"]
                   if e["action_id"] == "approve")
    payload = click_payload("U0OWNER", approve, channel="C0CHECKOUT", response_url=fake_slack.response_url())

    forged = await running.interact(payload, secret="not-the-signing-secret")
    assert forged.status == 401
    stale = await running.interact(payload, timestamp=int(time.time()) - 600)  # 10 minutes old: a replay
    assert stale.status == 401
    unsigned = await running.http.post(f"{running.url}/slack/events", data={"payload": json.dumps(payload)})
    assert unsigned.status == 401
    for odd in ("abc", "", "1e10", "1796476064.52", "12 34"):  # not a whole number: 401, never a 500
        headers = {"X-Slack-Signature": "v0=00", "X-Slack-Request-Timestamp": odd}
        async with running.http.post(f"{running.url}/slack/events", data={"payload": json.dumps(payload)},
                                     headers=headers) as resp:
            assert resp.status == 401, (odd, resp.status)

    await asyncio.sleep(0.3)  # had any of them been dispatched, the click would have decided by now
    assert (await action_state(running, body["id"]))["status"] == "pending"
    assert await responses(running, body["id"]) == []

    fresh = await running.interact(payload)  # the same click, signed now: accepted
    assert fresh.status == 200
