"""One hostile agent, every message kind Countersign sends to Slack, through the real bolt app and
the fake Slack (issue 15, finding 4): cards, card updates, notices, storm packs, App Home, command
answers (shared and private) and the digest. Whatever the agent wrote must never notify anyone,
link or format, in a block's mrkdwn nor in the top-level `text` (the notification itself)."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import pytest

from bot.demo.fakeslack import Call, FakeSlack
from bot.policy.rules import Policy
from bot.reports.digest import run_digest
from tests import conftest
from tests.conftest import Running, proposal
from tests.integration.test_storms import STORMY
from tests.slack_helpers import card_for, click, decided, until
from tests.unit.test_hostile_text import HOSTILE, LIVE, URL

_keys = itertools.count()


@pytest.fixture
def policy() -> Policy:
    return conftest.test_policy(STORMY)  # search storms past 3 actions a minute: packs and threads


def mrkdwn_texts(value: Any, key: str = "") -> list[str]:
    """Every string Slack parses as mrkdwn in a call's arguments: the top-level `text`, and each
    text object whose type is not plain_text (plain_text shows verbatim, parsing nothing)."""
    found: list[str] = []
    if isinstance(value, dict):
        if value.get("type") == "plain_text":
            return []
        for k, v in value.items():
            if k in ("text", "fallback", "pretext") and isinstance(v, str):
                found.append(v)
            elif k not in ("url", "image_url", "value", "action_id", "block_id", "private_metadata"):
                found.extend(mrkdwn_texts(v, k))
    elif isinstance(value, list):
        for item in value:
            found.extend(mrkdwn_texts(item, key))
    return found


def live_in(call: Call) -> list[str]:
    args = dict(call.args)
    if isinstance(args.get("view"), str):
        args["view"] = json.loads(args["view"])
    if isinstance(args.get("blocks"), str):
        args["blocks"] = json.loads(args["blocks"])
    texts = [URL.sub("<URL|", t) for t in mrkdwn_texts(args)]
    return [f"{call.method}: {token} in {t[:120]!r}" for t in texts for token in LIVE if token in t]


async def slash(running: Running, fake_slack: FakeSlack, text: str) -> dict[str, Any]:
    key = f"hostile{next(_keys)}"
    resp = await running.slack({"command": "/ai-actions", "text": text, "user_id": "U0OWNER",
                                "user_name": "olive", "team_id": "T1", "channel_id": "C0CHECKOUT",
                                "response_url": fake_slack.response_url(key), "trigger_id": "trig"})
    assert resp.status == 200
    calls = await fake_slack.wait_for(lambda: fake_slack.calls_to(f"response_url:{key}"))
    answer: dict[str, Any] = calls[0].args
    return answer


async def test_no_message_kind_lets_agent_text_notify_or_format(running: Running, fake_slack: FakeSlack) -> None:
    fake_slack.add_user("U0SEARCH", "search@example.com", "Sol Search")
    fake_slack.add_user("U0BATCH", "batch@example.com", "Bea Batch")
    token, _ = await running.add_agent(f"bot {HOSTILE}"[:60])
    evil = dict(action_type=f"scale {HOSTILE}", summary=f"Summary {HOSTILE}", rationale=f"Because {HOSTILE}",
                evidence=[{"label": HOSTILE, "url": "https://grafana.example.com/d/x"}],
                external_id=HOSTILE, model={"provider": HOSTILE, "name": HOSTILE, "version": HOSTILE})

    status, proposed = await running.submit(proposal(**evil), token=token)  # cards to owner, channel
    assert status == 201, proposed
    for i in range(5):  # acknowledge-mode actions on a storming service: threads and packs
        status, body = await running.submit(proposal(**{**evil, "action_type": "restart", "service": "search",
                                                        "summary": f"Restart {i} {HOSTILE}"}), token=token)
        assert status == 201, body
    status, body = await running.submit(proposal(**{**evil, "service": "batch"}), token=token)  # FYI
    assert status == 201, body
    status, body = await running.submit(proposal(**{**evil, "action_type": "drop_database"}), token=token)
    assert status == 403, body  # the forbidden notice to the service channel

    card = await card_for(fake_slack, "U0OWNER", proposed["id"])
    await click(running, fake_slack, "U0OWNER", card, "Approve")  # card updates, home refresh
    await decided(running, proposed["id"], token=token)
    answers = [await slash(running, fake_slack, text) for text in (
        f"share show {proposed['id']}", f"show {proposed['id']}", "share recent", "pending", "mine",
        "service checkout-api", "share stats 7d")]
    assert answers[0]["response_type"] == "in_channel"
    shared_text = answers[0]["text"]
    assert "Summary" in shared_text and "<!channel>" not in shared_text and "&lt;!channel&gt;" in shared_text

    await running.slack({"token": "legacy", "team_id": "T1", "api_app_id": "A1", "type": "event_callback",
                         "event_id": "EvHostile", "event_time": int(time.time()),
                         "event": {"type": "app_home_opened", "user": "U0OWNER", "channel": "D0", "tab": "home",
                                   "event_ts": f"{time.time():.6f}"}}, form=False)
    await run_digest(running.svc)

    def seen() -> set[str]:
        return {c.method.split(":")[0] for c in fake_slack.calls}

    await until(lambda: _all_kinds(fake_slack, seen()), within=20)
    # The agent's text did reach every kind of message (escaped), so the scan below means something.
    assert set(_kinds_carrying_agent_text(fake_slack)) >= {
        "views.publish", "chat.postMessage", "chat.postMessage/thread", "chat.update", "response_url"}
    problems = [p for call in fake_slack.calls for p in live_in(call)]
    assert problems == [], "\n".join(problems[:20])


async def _all_kinds(fake_slack: FakeSlack, methods: set[str]) -> bool:
    wanted = {"chat.postMessage", "chat.update", "views.publish", "response_url"}
    digest = any("digest" in json.dumps(c.args).lower() for c in fake_slack.posts("C0LEADERS"))
    packs = any("thread_ts" in c.args for c in fake_slack.posts("C0SEARCH"))
    return wanted <= methods and digest and packs


def _kinds_carrying_agent_text(fake_slack: FakeSlack) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for c in fake_slack.calls:
        if "&lt;!channel&gt;" in json.dumps(c.args):
            key = c.method.split(":")[0] + ("/thread" if "thread_ts" in c.args else "")
            kinds[key] = kinds.get(key, 0) + 1
    return kinds
