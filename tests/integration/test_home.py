"""App Home: an `app_home_opened` event (signed, as Slack sends it) publishes the opener's Home with
what waits on them (with buttons), their recent decisions and their services; changes that concern
someone re-publish it through the outbox."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlmodel import col

from bot.actions.decisions import respond
from bot.demo.fakeslack import Call, FakeSlack
from bot.escalation.home_refresh import concerned, refresh_homes
from storage.models import OutboxMessage
from storage.queries import actions as repo
from tests.conftest import Running, proposal
from tests.socket_transport import TRANSPORTS

_events = itertools.count(1)


async def drained(running: Running) -> None:
    """Wait until the relay has sent everything queued (e.g. Home refreshes the pages queued), so
    the next views.publish for someone is the answer to the event we send."""
    for _ in range(500):
        async with running.svc.db.session() as session:
            waiting = (
                await session.execute(
                    select(func.count())
                    .select_from(OutboxMessage)
                    .where(col(OutboxMessage.status).in_(("pending", "sending")))
                )
            ).scalar_one()
        if not waiting:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the outbox never drained")


async def open_home(running: Running, fake_slack: FakeSlack, user: str) -> dict[str, Any]:
    await drained(running)
    before = len(fake_slack.calls_to("views.publish", user_id=user))
    resp = await running.slack(
        {
            "token": "legacy",
            "team_id": "T1",
            "api_app_id": "A1",
            "type": "event_callback",
            "event_id": f"Ev{next(_events)}",
            "event_time": int(time.time()),
            "event": {
                "type": "app_home_opened",
                "user": user,
                "channel": "D0",
                "tab": "home",
                "event_ts": f"{time.time():.6f}",
            },
        },
        form=False,
    )
    assert resp.status == 200
    calls = await fake_slack.wait_for(
        lambda: fake_slack.calls_to("views.publish", user_id=user)[before:] or None
    )
    view: dict[str, Any] = calls[-1].args["view"]
    assert view["type"] == "home"  # and the fake validated it with slack_sdk's View
    return view


def sections(view: dict[str, Any]) -> str:
    return "\n".join(b["text"]["text"] for b in view["blocks"] if b["type"] in ("section", "header"))


def buttons(view: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (e["action_id"], e["value"]) for b in view["blocks"] if b["type"] == "actions" for e in b["elements"]
    ]


@pytest.mark.parametrize("transport", TRANSPORTS, indirect=True)
async def test_home_shows_waiting_decisions_and_services(running: Running, fake_slack: FakeSlack) -> None:
    _, done = await running.submit(proposal(summary="Scale checkout-api to 8 pods"))
    _, waiting = await running.submit(proposal(summary="Raise the connection pool to 200"))
    _, other = await running.submit(
        proposal(kind="executed", service="search", action_type="restart", summary="Restarted search-indexer")
    )
    assert (
        await respond(
            running.svc, done["id"], user_id="U0OWNER", user_name="olive", response="approve", via="button"
        )
    ).accepted

    view = await open_home(running, fake_slack, "U0OWNER")
    text = sections(view)
    waiting_part, rest = text.split("Your recent decisions")
    decisions, services = rest.split("Your services")
    assert "Waiting on you (1)" in waiting_part and f"*#{waiting['id']}*" in waiting_part
    assert f"*#{other['id']}*" not in text  # search belongs to someone else
    assert buttons(view) == [("approve", str(waiting["id"])), ("override", str(waiting["id"]))]
    assert f"*#{done['id']}*" in decisions and "approved" in decisions
    assert (
        "*checkout-api*" in services and "*approve*" in services and "*forbidden* `drop_database`" in services
    )
    assert "*search*" not in services
    assert "secondary <@U0DANA>" in services and "dana@example.com" not in services  # a mention, not the email

    stranger = await open_home(running, fake_slack, "U0STRANGER")
    assert buttons(stranger) == [] and "Nothing waits on you" in sections(stranger)
    assert "not named as owner or secondary" in sections(stranger)
    admin = await open_home(running, fake_slack, "U0ADMIN")  # admins may answer everything
    assert {v for _, v in buttons(admin)} == {str(waiting["id"]), str(other["id"])}


@pytest.mark.parametrize("transport", TRANSPORTS, indirect=True)
async def test_messages_tab_is_ignored(running: Running, fake_slack: FakeSlack) -> None:
    resp = await running.slack(
        {
            "token": "legacy",
            "team_id": "T1",
            "api_app_id": "A1",
            "type": "event_callback",
            "event_id": "EvM",
            "event_time": int(time.time()),
            "event": {"type": "app_home_opened", "user": "U0OWNER", "channel": "D0", "tab": "messages"},
        },
        form=False,
    )
    assert resp.status == 200
    await open_home(running, fake_slack, "U0SEARCH")  # a later event is handled: the first one was skipped
    assert fake_slack.calls_to("views.publish", user_id="U0OWNER") == []


async def test_refresh_publishes_home_for_everyone_concerned(running: Running, fake_slack: FakeSlack) -> None:
    _, body = await running.submit(proposal(summary="Raise the connection pool to 200"))
    async with running.svc.db.session() as session:
        action = await repo.get(session, body["id"])
        assert action is not None
        assert concerned(action) == ["U0OWNER"]  # paged so far: the owner (admins are left out)
        action.level = "secondary"
        assert concerned(action) == ["U0OWNER", "dana@example.com"]
        refresh_homes(session, action)
        await session.commit()

    def published(user: str) -> list[Call]:
        return fake_slack.calls_to("views.publish", user_id=user)

    owner = await fake_slack.wait_for(lambda: published("U0OWNER"))
    dana = await fake_slack.wait_for(lambda: published("U0DANA"))  # the email resolved when sent
    assert f"*#{body['id']}*" in json.dumps(owner[-1].args["view"])
    assert "Your services" in json.dumps(dana[-1].args["view"])


async def test_page_and_decision_refresh_the_home(running: Running, fake_slack: FakeSlack) -> None:
    """bot.paging and bot.decisions queue the refresh: no one has to reopen the tab."""
    _, body = await running.submit(proposal(summary="Raise the connection pool to 200"))
    paged = await fake_slack.wait_for(lambda: fake_slack.calls_to("views.publish", user_id="U0OWNER"))
    assert buttons(paged[-1].args["view"]) == [("approve", str(body["id"])), ("override", str(body["id"]))]
    count = len(fake_slack.calls_to("views.publish", user_id="U0OWNER"))
    assert (
        await respond(
            running.svc, body["id"], user_id="U0OWNER", user_name="olive", response="approve", via="button"
        )
    ).accepted
    after = await fake_slack.wait_for(lambda: fake_slack.calls_to("views.publish", user_id="U0OWNER")[count:])
    view = after[-1].args["view"]
    assert buttons(view) == [] and f"*#{body['id']}*" in sections(view).split("Your recent decisions")[1]


async def test_home_says_when_ones_service_is_paused(running: Running, fake_slack: FakeSlack) -> None:
    """An owner's Home says their service is paused, by whom and why (every new action there needs
    them now, whatever the rules say): published again when the pause starts and when it ends."""
    from tests.integration.test_commands import dump, slash

    def homes_saying(needle: str, present: bool) -> list[Call]:
        published = fake_slack.calls_to("views.publish", user_id="U0OWNER")
        return [c for c in published[before:] if (needle in json.dumps(c.args)) == present]

    assert "*Now:*" not in sections(await open_home(running, fake_slack, "U0OWNER"))
    before = len(fake_slack.calls_to("views.publish", user_id="U0OWNER"))
    assert "Paused" in dump(await slash(running, fake_slack, "pause checkout-api 2h bad deploys"))
    [view] = (await fake_slack.wait_for(lambda: homes_saying("bad deploys", True)))[:1]
    services = sections(view.args["view"]).split("Your services")[1]
    assert "*Now:*" in services and "*Paused* (`checkout-api`) by <@U0OWNER>" in services
    before = len(fake_slack.calls_to("views.publish", user_id="U0OWNER"))
    assert "Resumed" in dump(await slash(running, fake_slack, "resume checkout-api"))
    await fake_slack.wait_for(lambda: homes_saying("bad deploys", False))  # published again, without it
