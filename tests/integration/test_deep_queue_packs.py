"""A deep queue to one person or channel leaves packed, at Slack's pace and without a 429: reminders
a line each in one message, refusal notes likewise, a storm's leadership cards several to a message
with the leadership called once; a reminder about an action decided while it waited is recorded as
skipped and takes no turn of the channel's budget (what kept the soak's outbox from draining)."""

from __future__ import annotations

import re
import time

import pytest

from bot.demo.fakeslack import Call, FakeSlack, RateLimit
from bot.policy.rules import Policy
from tests import conftest
from tests.conftest import Running, proposal
from tests.integration.test_outbox import drained, rows, until
from tests.policies import CALM

# Tier 1 at minute scale, but reminded every second; checkout-api storms past 3 actions a minute.
REMINDING = CALM.replace("remind_every: 10m", "remind_every: 1s").replace(
    "    channel: C0CHECKOUT\n    tier: tier1\n", "    channel: C0CHECKOUT\n    tier: tier1\n    storm_per_minute: 3\n")


@pytest.fixture
def policy(request: pytest.FixtureRequest) -> Policy:
    text = getattr(request, "param", REMINDING)
    assert "remind_every: 1s" in REMINDING and "storm_per_minute: 3" in REMINDING
    return conftest.test_policy(text)


async def click(running: Running, action_id: int, verb: str = "approve", user: str = "U0OWNER") -> None:
    """A button click with neither a channel nor a response_url (as from App Home): a refusal is
    queued as a DM note."""
    resp = await running.interact({
        "type": "block_actions", "user": {"id": user, "name": user.lower()}, "team": {"id": "T1"},
        "actions": [{"action_id": verb, "value": str(action_id), "type": "button", "block_id": "b"}],
        "trigger_id": "t1"})
    assert resp.status == 200


async def proposals(running: Running, tag: str, n: int) -> list[int]:
    """`n` tier-1 proposals on checkout-api (summaries tagged `tag00`, `tag01`...), their ids."""
    ids = []
    for i in range(n):
        status, body = await running.submit(proposal(summary=f"Scale checkout-api down {tag}{i:02d}"))
        assert status == 201, body
        ids.append(body["id"])
    return ids


def reminded_ids(call: Call) -> set[int]:
    """The actions a reminder (one, or a pack) names."""
    text = str(call.args.get("text") or "")
    if "still wait for a response: actions " in text:
        return {int(n) for n in text.rsplit("actions ", 1)[1].split(", ")}
    found = re.search(r"action (\d+) still waits", text)
    return {int(found.group(1))} if found else set()


async def test_reminders_and_notes_pile_up_and_leave_packed(running: Running, fake_slack: FakeSlack) -> None:
    fake_slack.post_limit = RateLimit(per_second=1.0, burst=5)  # Slack's limit, enforced
    running.runtime.relay.packer.when_deeper = 4
    fake_slack.down = True  # the backlog builds up during an outage
    ids = await proposals(running, "deep", 8)
    # While Slack is down the sweeper keeps reminding the owner, once a second for each action.
    await until(lambda: _count(running, "reminder", at_least=20), within=20)
    early = ids[:3]
    for action_id in early:  # decided meanwhile: their queued reminders are needless now
        await click(running, action_id)
    for _ in range(5):  # clicked again: "already decided" notes, queued for the owner's DM
        await click(running, early[0])
    fake_slack.down = False

    def packed_reminder() -> bool:
        return any(len(reminded_ids(c)) > 1 for c in fake_slack.posts("U0OWNER"))

    await fake_slack.wait_for(packed_reminder, timeout=30)
    for action_id in ids[3:]:  # stop the reminders, and let the queue empty
        await click(running, action_id)
    await until(lambda: drained(running), within=40)

    owner = fake_slack.posts("U0OWNER")
    reminders = [c for c in owner if reminded_ids(c)]
    queued = [r for r in await rows(running) if r.payload.get("kind") == "reminder"]
    assert len(reminders) < len(queued) / 3  # packed, not a post each
    assert not set().union(*map(reminded_ids, reminders)) & set(early)  # nobody nudged about a decided one
    needless = [r for r in queued if r.action_id in early]
    assert needless and all("approved before the reminder's turn" in str((r.result or {}).get("skipped"))
                            for r in needless)
    notes = [c for c in owner if "was already decided" in str(c.args.get("text"))]
    assert sum(str(c.args["text"]).count("was already decided") for c in notes) == 5  # every note arrives
    assert len(notes) < 5  # in fewer posts than notes
    assert fake_slack.post_limit.refused == []


async def _count(running: Running, kind: str, *, at_least: int) -> bool:
    return len([r for r in await rows(running) if r.payload.get("kind") == kind]) >= at_least


LEADING = REMINDING.replace("remind_every: 1s", "remind_every: 10m").replace(
    "after: 20m", "after: 1s").replace("after: 40m", "after: 2s")


@pytest.mark.parametrize("policy", [LEADING], indirect=True)
async def test_a_storms_leadership_cards_leave_packed_calling_leadership_once(
        running: Running, fake_slack: FakeSlack) -> None:
    fake_slack.add_user("U0DANA", "dana@example.com", "Dana")
    fake_slack.post_limit = RateLimit(per_second=1.0, burst=5)
    running.runtime.relay.packer.when_deeper = 4
    fake_slack.down = True
    ids = await proposals(running, "lead", 10)
    await until(lambda: _leadership_cards(running, len(ids)), within=20)  # escalated while Slack was down
    fake_slack.down = False
    await until(lambda: drained(running), within=40)

    leaders = fake_slack.posts("C0LEADERS")
    carried = [int(e["value"]) for c in leaders for b in c.args.get("blocks") or [] if b.get("type") == "actions"
               for e in b["elements"] if e.get("action_id") == "approve"]
    assert sorted(carried) == sorted(ids)  # every action's leadership card, once, with its buttons
    assert len(leaders) < len(ids)  # packed
    packs = [c for c in leaders if "actions on checkout-api" in str(c.args.get("text"))]
    assert packs and all(str(c.args["text"]).count("<@U0VP>") == 1 for c in packs)
    assert fake_slack.post_limit.refused == []


async def _leadership_cards(running: Running, n: int) -> bool:
    return len(await rows(running, purpose="card:leadership")) >= n


async def test_after_a_packed_backlog_a_new_page_goes_out_at_once(running: Running, fake_slack: FakeSlack) -> None:
    """Each post deferred for its turn is given a slot one second after the last one; when the
    backlog then leaves in packs (or is skipped), those slots are never used. A page arriving after
    the backlog drained must not wait behind them."""
    fake_slack.post_limit = RateLimit(per_second=1.0, burst=5)
    running.runtime.relay.packer.when_deeper = 4
    ids = await proposals(running, "slot", 12)
    await until(lambda: _count(running, "reminder", at_least=40), within=30)
    for action_id in ids:
        await click(running, action_id)
    await until(lambda: drained(running), within=60)

    status, body = await running.submit(proposal(summary="Scale checkout-api down afterwards"))
    assert status == 201
    submitted = time.monotonic()  # the clock of the fake Slack's calls (Call.at)
    page = await fake_slack.wait_for(lambda: [c for c in fake_slack.posts("U0OWNER")
                                              if "afterwards" in str(c.args.get("text"))], timeout=60)
    assert page[0].at - submitted < 5.0, f"the page waited {page[0].at - submitted:.1f} s behind an empty queue"
