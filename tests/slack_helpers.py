"""Acting as Slack in the Slack tests: read the cards the fake Slack received, click their buttons,
fill in modals, and wait for the outcome (all over real HTTP, signed as Slack signs)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from sqlmodel import col, select

from bot.demo.fakeslack import Call, FakeSlack
from storage.models import LedgerEntry, Response
from tests.conftest import Running
from tests.socket_transport import SocketAnswer

NAMES = {"U0OWNER": "olive", "U0DANA": "dana", "U0VP": "vic", "U0ADMIN": "ada", "U0STRANGER": "sam"}


async def until(check: Callable[[], Awaitable[Any]], within: float = 10.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; last result {result!r}")
        await asyncio.sleep(0.03)


def buttons(call: Call) -> dict[str, dict[str, Any]]:
    """The buttons on a recorded card, by label."""
    return {
        e["text"]["text"]: e
        for b in call.args.get("blocks") or []
        if b["type"] == "actions"
        for e in b["elements"]
    }


async def card_for(fake_slack: FakeSlack, channel: str, action_id: int) -> Call:
    """The (first) card about `action_id` posted to `channel`."""

    def found() -> list[Call]:
        return [
            c
            for c in fake_slack.posts(channel)
            if any(e.get("value") == str(action_id) for e in buttons(c).values())
        ]

    calls = await fake_slack.wait_for(found)
    return calls[0]


def click_payload(
    user: str,
    button: dict[str, Any],
    *,
    channel: str | None,
    response_url: str | None,
    trigger_id: str = "trigger-1",
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "type": "block_actions",
        "api_app_id": "A0COUNTERSIGN",
        "team": {"id": "T1"},
        "user": {
            "id": user,
            "username": NAMES.get(user, user.lower()),
            "name": NAMES.get(user, user.lower()),
            "team_id": "T1",
        },
        "actions": [
            {
                "type": "button",
                "action_id": button["action_id"],
                "block_id": "decide",
                "value": button["value"],
                "text": button["text"],
                "action_ts": str(time.time()),
            }
        ],
        "trigger_id": trigger_id,
    }
    if channel:
        payload["channel"] = {"id": channel}
        payload["container"] = {"type": "message", "channel_id": channel, "message_ts": "1.1"}
    if response_url:
        payload["response_url"] = response_url
    return payload


async def click(
    running: Running,
    fake_slack: FakeSlack,
    user: str,
    card: Call,
    label: str,
    *,
    channel: str | None = "C0CHECKOUT",
    response_url: bool = True,
    trigger_id: str = "trigger-1",
) -> aiohttp.ClientResponse | SocketAnswer:
    resp = await running.interact(
        click_payload(
            user,
            buttons(card)[label],
            channel=channel,
            response_url=fake_slack.response_url(f"{user}-{trigger_id}") if response_url else None,
            trigger_id=trigger_id,
        )
    )
    assert resp.status == 200, resp.status
    return resp


def submission(user: str, view: dict[str, Any], reason: str | None) -> dict[str, Any]:
    """A view_submission of `view` (as views.open received it) with the reason typed in."""
    state = {"values": {"reason": {"reason_input": {"type": "plain_text_input", "value": reason}}}}
    return {
        "type": "view_submission",
        "team": {"id": "T1"},
        "api_app_id": "A0COUNTERSIGN",
        "user": {
            "id": user,
            "username": NAMES.get(user, user),
            "name": NAMES.get(user, user),
            "team_id": "T1",
        },
        "view": {**view, "id": "V1", "state": state, "hash": "h1"},
        "trigger_id": "trigger-2",
    }


async def action_state(running: Running, action_id: int, *, token: str | None = None) -> dict[str, Any]:
    """The action as its agent reads it (another agent's token gets 404: agents are isolated)."""
    status, body = await running.get(f"/v1/actions/{action_id}", token=token)
    assert status == 200, body
    return body


async def decided(running: Running, action_id: int, *, token: str | None = None) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        body = await action_state(running, action_id, token=token)
        return body if body["decision"] and body["decision"]["accountability"] == "explicit" else None

    return await until(check)


async def responses(running: Running, action_id: int) -> list[Response]:
    async with running.svc.db.session() as session:
        rows = await session.execute(
            select(Response).where(col(Response.action_id) == action_id).order_by(col(Response.id))
        )
        return list(rows.scalars())


async def ledger_events(running: Running, action_id: int) -> list[LedgerEntry]:
    async with running.svc.db.session() as session:
        rows = await session.execute(
            select(LedgerEntry).where(col(LedgerEntry.action_id) == action_id).order_by(col(LedgerEntry.seq))
        )
        return list(rows.scalars())


def ephemerals(fake_slack: FakeSlack, user: str) -> list[Call]:
    """Private notes to `user`: chat.postEphemeral, or an ephemeral post to a response_url."""
    return [
        c
        for c in fake_slack.calls
        if (c.method == "chat.postEphemeral" and c.args.get("user") == user)
        or (c.method.startswith(f"response_url:{user}-") and c.args.get("response_type") == "ephemeral")
    ]
