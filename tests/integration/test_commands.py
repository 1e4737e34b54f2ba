"""`/ai-actions` over HTTP: signed slash commands against the running app, answered through the
response_url recorded by the fake Slack, on a database seeded through the API and the domain."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from slack_sdk.models.blocks import Block

from bot.actions.decisions import respond
from bot.clock import FakeClock
from bot.demo.fakeslack import FakeSlack
from bot.policy.rules import Policy
from tests.conftest import Running, proposal
from tests.conftest import test_policy as make_policy
from tests.policies import FAST
from tests.socket_transport import TRANSPORTS

# FAST with minute-scale escalation: the seeded clock moves by minutes without paging anyone else.
SLOW = (
    FAST.replace("after: 2s", "after: 20m")
    .replace("after: 4s", "after: 40m")
    .replace("remind_every: 1s", "remind_every: 10m")
    .replace("timeout: 6s", "timeout: 1h")
)

_keys = itertools.count(1)


@pytest.fixture
def policy() -> Policy:
    return make_policy(SLOW)


@pytest.fixture
def clock() -> FakeClock:
    # Ahead of the wall clock, so messages the outbox queued (stamped with real time) are due at once.
    return FakeClock(datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1))


async def slash(running: Running, fake_slack: FakeSlack, text: str, user: str = "U0OWNER") -> dict[str, Any]:
    """Send `/ai-actions text` as Slack would; return what the app posted to the response_url."""
    key = f"cmd{next(_keys)}"
    started = time.monotonic()
    resp = await running.slack(
        {
            "command": "/ai-actions",
            "text": text,
            "user_id": user,
            "user_name": user.lower(),
            "team_id": "T1",
            "channel_id": "C0CHECKOUT",
            "response_url": fake_slack.response_url(key),
            "trigger_id": "trig",
        }
    )
    assert resp.status == 200
    assert time.monotonic() - started < 3.0, "not acknowledged within Slack's 3 s"
    calls = await fake_slack.wait_for(lambda: fake_slack.calls_to(f"response_url:{key}"))
    answer: dict[str, Any] = calls[0].args
    for block in answer.get("blocks") or []:
        Block.parse(block).validate_json()  # type: ignore[union-attr]  # Slack would reject it otherwise
    assert len(answer.get("blocks") or []) <= 50
    return answer


def dump(answer: dict[str, Any]) -> str:
    return json.dumps(answer, ensure_ascii=False)


def buttons(answer: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (e["action_id"], e["value"])
        for b in answer["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
    ]


async def seed(running: Running, clock: FakeClock) -> dict[str, int]:
    """approved, overridden, an acknowledge-mode executed action, an autonomous one, and a pending
    proposal with a refused attempt: through the API and bot.decisions, as people would."""
    ids: dict[str, int] = {}

    async def submit(name: str, body: dict[str, Any]) -> None:
        status, got = await running.submit(body)
        assert status == 201, got
        ids[name] = got["id"]
        clock.advance(10)

    await submit("approved", proposal(summary="Scale checkout-api to 8 pods"))
    await submit("overridden", proposal(summary="Flush the checkout cache", action_type="flush_cache"))
    await submit(
        "executed",
        proposal(
            kind="executed",
            service="search",
            action_type="restart",
            summary="Restarted search-indexer",
            rationale="OOM loop",
        ),
    )
    await submit(
        "autonomous", proposal(service="batch", action_type="scale_up", summary="Added 2 batch workers")
    )
    await submit(
        "pending",
        proposal(
            summary="Raise checkout-api connection pool to 200", rationale="p99 latency from pool waits"
        ),
    )
    svc = running.svc
    clock.advance(60)
    assert (
        await respond(
            svc, ids["approved"], user_id="U0OWNER", user_name="olive", response="approve", via="button"
        )
    ).accepted
    clock.advance(120)
    assert (
        await respond(
            svc,
            ids["overridden"],
            user_id="U0OWNER",
            user_name="olive",
            response="override",
            via="button",
            reason="cache flush during peak would hurt",
        )
    ).accepted
    refused = await respond(
        svc, ids["pending"], user_id="U0STRANGER", user_name="sam", response="approve", via="button"
    )
    assert refused.refusal == "not_authorized"
    return ids


@pytest.mark.parametrize("transport", TRANSPORTS, indirect=True)
async def test_help_and_unknown_text(running: Running, fake_slack: FakeSlack) -> None:
    answer = await slash(running, fake_slack, "")
    assert answer["response_type"] == "ephemeral"
    assert "recent [N]" in dump(answer) and "who-owns SERVICE" in dump(answer)
    answer = await slash(running, fake_slack, "frobnicate everything")
    assert "I don't know `frobnicate`" in dump(answer) and "stats [WINDOW]" in dump(answer)


async def test_recent_pending_and_mine(running: Running, fake_slack: FakeSlack, clock: FakeClock) -> None:
    ids = await seed(running, clock)
    recent = await slash(running, fake_slack, "recent 3")
    text = dump(recent)
    shown = [b["text"]["text"] for b in recent["blocks"] if b["type"] == "section"]
    assert [
        f"*#{i}*" in s
        for s, i in zip(shown, (ids["pending"], ids["autonomous"], ids["executed"]), strict=True)
    ] == [True, True, True]
    assert f"*#{ids['overridden']}*" not in text
    assert "<!date^" in text  # each reader sees their own time zone

    pending = await slash(running, fake_slack, "pending")
    assert "Pending: 2 waiting" in dump(pending)
    assert set(buttons(pending)) == {
        ("approve", str(ids["pending"])),
        ("override", str(ids["pending"])),
        ("acknowledge", str(ids["executed"])),
        ("override", str(ids["executed"])),
    }

    mine = await slash(running, fake_slack, "mine", user="U0OWNER")
    assert buttons(mine) == [("approve", str(ids["pending"])), ("override", str(ids["pending"]))]
    decided = dump(mine).split("Decided by you")[1]
    assert f"*#{ids['approved']}*" in decided and f"*#{ids['overridden']}*" in decided
    assert "cache flush during peak would hurt" in decided
    search_owner = await slash(running, fake_slack, "mine", user="U0SEARCH")
    assert buttons(search_owner) == [
        ("acknowledge", str(ids["executed"])),
        ("override", str(ids["executed"])),
    ]
    stranger = await slash(running, fake_slack, "mine", user="U0STRANGER")
    assert buttons(stranger) == [] and "Nothing waits on you" in dump(stranger)


@pytest.mark.parametrize("transport", TRANSPORTS, indirect=True)
async def test_pending_buttons_decide(running: Running, fake_slack: FakeSlack, clock: FakeClock) -> None:
    ids = await seed(running, clock)
    pending = await slash(running, fake_slack, "pending")
    action_id, value = next(b for b in buttons(pending) if b[0] == "approve")
    block_id = next(b["block_id"] for b in pending["blocks"] if b["type"] == "actions")
    resp = await running.interact(
        {
            "type": "block_actions",
            "user": {"id": "U0OWNER", "name": "olive"},
            "team": {"id": "T1"},
            "actions": [{"action_id": action_id, "value": value, "type": "button", "block_id": block_id}],
            "response_url": fake_slack.response_url("click"),
            "trigger_id": "t1",
            "container": {"type": "message"},
        }
    )
    assert resp.status == 200
    for _ in range(100):
        _, got = await running.get(f"/v1/actions/{ids['pending']}")
        if got["status"] != "pending":
            break
        await asyncio.sleep(0.05)
    assert got["status"] == "approved" and got["decision"]["by"]["slack_user_id"] == "U0OWNER"


async def test_show_has_the_whole_record(running: Running, fake_slack: FakeSlack, clock: FakeClock) -> None:
    ids = await seed(running, clock)
    pending = dump(await slash(running, fake_slack, f"show {ids['pending']}"))
    assert "p99 latency from pool waits" in pending  # the AI's rationale
    assert "Submitted by agent *remediator*" in pending and "Paged *owner*: <@U0OWNER>" in pending
    assert "<@U0STRANGER> tried to approve via button: refused (not_authorized)" in pending
    assert "nobody yet: pending at *owner*" in pending
    assert '"action_id": "approve"' in pending
    overridden = dump(await slash(running, fake_slack, f"show #{ids['overridden']}"))
    assert "*Accountable:* <@U0OWNER> (olive)" in overridden and "explicitly, by responding" in overridden
    assert "cache flush during peak would hurt" in overridden and '"action_id"' not in overridden
    autonomous = dump(await slash(running, fake_slack, f"show {ids['autonomous']}"))
    assert "by policy" in autonomous and "<@U0BATCH>" in autonomous
    assert "There is no action 999999" in dump(await slash(running, fake_slack, "show 999999"))
    assert "Which action?" in dump(await slash(running, fake_slack, "show"))


async def test_service_and_who_owns(running: Running, fake_slack: FakeSlack, clock: FakeClock) -> None:
    ids = await seed(running, clock)
    service = dump(await slash(running, fake_slack, "service checkout-api"))
    assert "owner <@U0OWNER>" in service and "secondary <@U0DANA>" in service and "<#C0CHECKOUT>" in service
    assert "*approve* `rollback`, `restart`, `*`" in service and "*forbidden* `drop_database`" in service
    assert f"*#{ids['approved']}*" in service and f"*#{ids['executed']}*" not in service
    who = dump(await slash(running, fake_slack, "who-owns search"))
    assert "owner <@U0SEARCH>" in who and "secondary nobody" in who and "owner at 0s" in who
    assert "There is no service `nope`" in dump(await slash(running, fake_slack, "who-owns nope"))


async def test_stats_and_share(running: Running, fake_slack: FakeSlack, clock: FakeClock) -> None:
    await seed(running, clock)
    answer = await slash(running, fake_slack, "stats 7d")
    assert answer["response_type"] == "ephemeral"
    text = dump(answer)
    assert "*5 actions* submitted" in text
    assert "*By mode:* approve 3, acknowledge 1, autonomous 1" in text
    # The approve came 110 s after its submission, the override 220 s after its own: median 165 s.
    assert "*Median time to response:* 2m 45s (over 2 explicit responses)" in text
    assert "*remediator*: 5 · approved 50% · overridden 50% · no answer 0% · 2 pending" in text
    shared = await slash(running, fake_slack, "share stats 30d")
    assert shared["response_type"] == "in_channel" and "Shared by <@U0OWNER>" in dump(shared)


async def test_a_shared_record_cannot_ping_or_format(running: Running, fake_slack: FakeSlack) -> None:
    """`share show ID` posts to the channel: the agent's summary must not @channel it, even in `text`."""
    status, body = await running.submit(proposal(summary="<!channel> *deploy* now <@U0VP>",
                                                 rationale="_asap_ <!here>"))
    assert status == 201, body
    shared = await slash(running, fake_slack, f"share show {body['id']}")
    assert shared["response_type"] == "in_channel"
    assert shared["text"].startswith(f"Action {body['id']}: &lt;!channel&gt; \u2217deploy\u2217 now &lt;@U0VP&gt;")
    mrkdwn = dump({"blocks": [b for b in shared["blocks"] if b["type"] != "header"]})  # a header: plain text
    for live in ("<!channel>", "<!here>", "<@U0VP>", "*deploy*", "_asap_"):
        assert live not in shared["text"] and live not in mrkdwn, live


async def test_pending_beyond_one_page(
    running: Running, fake_slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(22):
        status, _ = await running.submit(proposal(summary=f"Proposal {i}"))
        assert status == 201
    answer = await slash(running, fake_slack, "pending")
    assert "Pending: 22 waiting" in dump(answer) and "Showing the newest 20 of 22 pending." in dump(answer)
    assert len(buttons(answer)) == 40  # every shown item carries its two buttons
    from handlers.listeners import commands

    monkeypatch.setattr(commands, "COUNT_CAP", 21)  # the count stops early on a large backlog
    assert "Pending: 21+ waiting" in dump(await slash(running, fake_slack, "pending"))


async def test_a_command_without_a_response_url_is_answered_in_the_acknowledgement(
        running: Running, fake_slack: FakeSlack) -> None:
    """Slack always sends a response_url; a bare client may not. bolt's respond() raised then (a
    traceback, and a 404 after 3 s): the answer now comes back in the HTTP answer itself."""
    _, body = await running.submit(proposal())
    started = time.monotonic()
    resp = await running.slack({"command": "/ai-actions", "text": f"show {body['id']}", "user_id": "U0OWNER",
                                "user_name": "olive", "team_id": "T1", "channel_id": "C0CHECKOUT"})
    assert resp.status == 200 and time.monotonic() - started < 3.0
    answer = json.loads(await resp.text())
    assert answer["response_type"] == "ephemeral" and f"#{body['id']}" in dump(answer)
    resp = await running.slack({"command": "/ai-actions", "text": f"share approve {body['id']} fine",
                                "user_id": "U0OWNER", "team_id": "T1", "channel_id": "C0CHECKOUT"})
    assert resp.status == 200
    assert json.loads(await resp.text())["response_type"] == "in_channel"
    got = (await running.get(f"/v1/actions/{body['id']}"))[1]
    assert got["status"] == "approved" and got["decision"]["via"] == "slash"
