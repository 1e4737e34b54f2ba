"""Storms: past `storm_per_minute` actions a minute, a service's channel cards go into one thread under
a parent card with a running count; owners are still paged for every action; no 429 is earned."""

from __future__ import annotations

import json

import pytest
from sqlmodel import select

from bot.demo.fakeslack import FakeSlack, RateLimit
from bot.policy.rules import Policy
from storage.models import StormThread
from tests import conftest
from tests.conftest import Running
from tests.integration.test_outbox import about, acknowledge, drained, restart, rows, until
from tests.policies import FAST

STORMY = FAST.replace("    channel: C0SEARCH\n    tier: tier2\n",
                      "    channel: C0SEARCH\n    tier: tier2\n    storm_per_minute: 3\n")


@pytest.fixture
def policy() -> Policy:
    assert STORMY != FAST
    return conftest.test_policy(STORMY)


async def test_storm_threads_channel_cards_under_one_parent_with_a_count(running: Running,
                                                                          fake_slack: FakeSlack) -> None:
    fake_slack.add_user("U0SEARCH", "search@example.com", "Sol Search")
    fake_slack.post_limit = RateLimit(per_second=1.0, burst=5)  # Slack's limit, enforced
    tags = [f"storm{i:02d}q" for i in range(7)]
    ids = {}
    for tag in tags:
        status, body = await running.submit(restart(tag))
        assert status == 201
        ids[tag] = body["id"]
    await until(lambda: drained(running), within=40)
    await until(lambda: _parent_count_shows(fake_slack, "7 actions"), within=15)

    channel = fake_slack.posts("C0SEARCH")
    parents = [c for c in channel if "Storm on search" in c.args.get("text", "")]
    assert len(parents) == 1  # ONE parent card
    [parent_row] = await rows(running, purpose="storm:parent")
    parent_ts = parent_row.result["ts"]  # type: ignore[index]
    for tag in tags[:3]:  # under the threshold: posted in the channel itself
        [card] = about(channel, tag)
        assert "thread_ts" not in card.args
    for tag in tags[3:]:  # the rest: each its own card, in the thread
        [card] = about(channel, tag)
        assert card.args["thread_ts"] == parent_ts
    for tag in tags:  # the owner is still paged for every action, in the DM, not threaded
        [dm] = about(fake_slack.posts("U0SEARCH"), tag)
        assert "thread_ts" not in dm.args
    assert fake_slack.post_limit.refused == []  # paced: no 429 earned
    async with running.svc.db.session() as session:
        [storm] = list((await session.execute(select(StormThread))).scalars())
    assert (storm.service, storm.ts, storm.count) == ("search", parent_ts, 4)

    # A decision on a threaded card updates that card in place, and the parent's pending count.
    await acknowledge(running, ids[tags[5]])
    [child] = await rows(running, action_id=ids[tags[5]], purpose="card:channel")
    await fake_slack.wait_for(lambda: fake_slack.calls_to("chat.update", ts=child.result["ts"]))  # type: ignore[index]


async def _parent_count_shows(fake_slack: FakeSlack, words: str) -> bool:
    updates = [c for c in fake_slack.calls_to("chat.update") if "Storm on search" in json.dumps(c.args)]
    return bool(updates) and words in updates[-1].args["text"]


async def test_a_deep_storm_queue_packs_cards_each_with_its_own_buttons(running: Running,
                                                                        fake_slack: FakeSlack) -> None:
    fake_slack.add_user("U0SEARCH", "search@example.com", "Sol Search")
    fake_slack.post_limit = RateLimit(per_second=1.0, burst=5)
    running.runtime.relay.packer.when_deeper = 4
    fake_slack.down = True  # the backlog builds up during an outage
    tags = [f"pack{i:02d}w" for i in range(12)]
    ids = {}
    for tag in tags:
        status, body = await running.submit(restart(tag))
        assert status == 201
        ids[tag] = body["id"]
    fake_slack.down = False
    await until(lambda: drained(running), within=40)

    dms = fake_slack.posts("U0SEARCH")
    for tag in tags:  # every action paged exactly once, with its own buttons
        [dm] = about(dms, tag)
        assert any(e.get("value") == str(ids[tag]) for b in dm.args["blocks"] if b["type"] == "actions"
                   for e in b["elements"]), tag
    assert len(dms) < len(tags)  # but not one message each: packed
    assert fake_slack.post_limit.refused == []
    packed = [dm for dm in dms if sum(b["type"] == "actions" for b in dm.args["blocks"]) > 1]
    assert packed
    block_ids = [b["block_id"] for b in packed[0].args["blocks"] if b["type"] == "actions"]
    assert len(set(block_ids)) == len(block_ids)  # Slack refuses duplicate block ids

    # Deciding one packed card redraws the pack: that card loses its buttons, the others keep theirs.
    member = next(t for t in tags if about(packed[:1], t))
    await acknowledge(running, ids[member])
    ts = next(r.result["ts"] for r in await rows(running, action_id=ids[member], purpose="card:dm:owner")
              if r.result)

    def redrawn() -> bool:
        message = fake_slack.messages.get(("U0SEARCH", ts)) or {}
        values = {e.get("value") for b in message.get("blocks") or [] if b["type"] == "actions"
                  for e in b["elements"]}
        return str(ids[member]) not in values and len(values) >= 1

    await fake_slack.wait_for(redrawn)
