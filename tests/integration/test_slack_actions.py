"""Approve, override (with its reason modal) and acknowledge, clicked as Slack sends them, over HTTP."""

from __future__ import annotations

import asyncio
import json

import pytest

from bot.demo.fakeslack import FakeSlack
from storage.models import Response
from tests.conftest import Running, proposal
from tests.slack_helpers import (
    action_state,
    buttons,
    card_for,
    click,
    click_payload,
    decided,
    ephemerals,
    ledger_events,
    responses,
    submission,
    until,
)
from tests.socket_transport import TRANSPORTS


def restart(**over: object) -> dict[str, object]:
    """An executed restart on `search` (tier2): acknowledge mode, owner U0SEARCH."""
    body = proposal(
        kind="executed",
        service="search",
        action_type="restart",
        summary="Restarted search-indexer after OOM",
        rationale="heap exhausted twice in 10m",
    )
    body.update(over)
    return body


@pytest.mark.parametrize("transport", TRANSPORTS, indirect=True)
async def test_owner_approves_with_one_click(running: Running, fake_slack: FakeSlack) -> None:
    status, body = await running.submit(proposal())
    assert status == 201, body
    card = await card_for(fake_slack, "U0OWNER", body["id"])
    assert set(buttons(card)) == {"Approve", "Override"}
    await click(running, fake_slack, "U0OWNER", card, "Approve", channel="DU0OWNER")
    got = await decided(running, body["id"])
    assert got["status"] == "approved"
    assert got["decision"]["by"] == {"slack_user_id": "U0OWNER", "name": "olive"}
    assert (got["decision"]["outcome"], got["decision"]["via"], got["decision"]["level"]) == (
        "approved",
        "button",
        "owner",
    )
    [answer] = await responses(running, body["id"])
    assert answer.accepted and answer.response == "approve"
    assert "decision" in [e.event for e in await ledger_events(running, body["id"])]
    assert ephemerals(fake_slack, "U0OWNER") == []  # no refusal note for the winner


@pytest.mark.parametrize("transport", TRANSPORTS, indirect=True)
async def test_override_asks_for_a_reason_in_a_modal(running: Running, fake_slack: FakeSlack) -> None:
    _, body = await running.submit(proposal())
    card = await card_for(fake_slack, "U0OWNER", body["id"])
    await click(running, fake_slack, "U0OWNER", card, "Override", trigger_id="trig-override")
    [opened] = await fake_slack.wait_for(lambda: fake_slack.calls_to("views.open"))
    assert opened.args["trigger_id"] == "trig-override"
    view = opened.args["view"]
    assert view["callback_id"] == "override_modal"
    assert json.loads(view["private_metadata"])["action_id"] == body["id"]
    assert (await action_state(running, body["id"]))["status"] == "pending"  # nothing decided yet

    resp = await running.interact(submission("U0OWNER", view, "Black Friday traffic starts in 2 hours"))
    assert resp.status == 200
    got = await decided(running, body["id"])
    assert got["status"] == "denied" and got["decision"]["outcome"] == "denied"
    assert got["decision"]["reason"] == "Black Friday traffic starts in 2 hours"
    update = await fake_slack.wait_for(lambda: fake_slack.calls_to("chat.update", channel="U0OWNER"))
    assert "Black Friday traffic starts in 2 hours" in json.dumps(update[-1].args["blocks"])


@pytest.mark.parametrize("reason", ["", "   \n "])
@pytest.mark.parametrize("transport", TRANSPORTS, indirect=True)
async def test_empty_reason_is_answered_inline(running: Running, fake_slack: FakeSlack, reason: str) -> None:
    _, body = await running.submit(proposal())
    card = await card_for(fake_slack, "U0OWNER", body["id"])
    await click(running, fake_slack, "U0OWNER", card, "Override")
    [opened] = await fake_slack.wait_for(lambda: fake_slack.calls_to("views.open"))
    resp = await running.interact(submission("U0OWNER", opened.args["view"], reason))
    assert resp.status == 200
    answer = json.loads(await resp.text())
    assert answer["response_action"] == "errors" and "reason" in answer["errors"]["reason"]
    await asyncio.sleep(0.2)
    assert (await action_state(running, body["id"]))["status"] == "pending"
    assert await responses(running, body["id"]) == []


async def test_broken_modal_metadata_is_answered_inline(running: Running, fake_slack: FakeSlack) -> None:
    _, body = await running.submit(proposal())
    view = {"type": "modal", "callback_id": "override_modal", "private_metadata": "not json", "blocks": []}
    resp = await running.interact(submission("U0OWNER", view, "a reason"))
    assert json.loads(await resp.text())["response_action"] == "errors"
    assert (await action_state(running, body["id"]))["status"] == "pending"


@pytest.mark.parametrize(("label", "status"), [("Acknowledge", "acknowledged"), ("Override", "overridden")])
async def test_executed_action_acknowledged_or_overridden(
    running: Running, fake_slack: FakeSlack, label: str, status: str
) -> None:
    code, body = await running.submit(restart())
    assert code == 201 and body["mode"] == "acknowledge", body
    card = await card_for(fake_slack, "U0SEARCH", body["id"])
    assert set(buttons(card)) == {"Acknowledge", "Override"}
    await click(running, fake_slack, "U0SEARCH", card, label, channel="C0SEARCH")
    if label == "Override":
        [opened] = await fake_slack.wait_for(lambda: fake_slack.calls_to("views.open"))
        assert "reverted" in json.dumps(opened.args["view"])
        await running.interact(submission("U0SEARCH", opened.args["view"], "restart hid a memory leak"))
    got = await decided(running, body["id"])
    assert got["status"] == status and got["decision"]["by"]["slack_user_id"] == "U0SEARCH"


async def test_stranger_is_refused_privately_and_recorded(running: Running, fake_slack: FakeSlack) -> None:
    _, body = await running.submit(proposal())
    card = await card_for(fake_slack, "C0CHECKOUT", body["id"])
    await click(running, fake_slack, "U0STRANGER", card, "Approve", channel="C0CHECKOUT")
    note = await fake_slack.wait_for(lambda: ephemerals(fake_slack, "U0STRANGER"))
    assert note[0].method == "chat.postEphemeral" and note[0].args["channel"] == "C0CHECKOUT"
    assert "not paged" in note[0].args["text"]
    # Without a channel (e.g. from a modal's message), the response_url carries the refusal.
    await click(running, fake_slack, "U0STRANGER", card, "Override", channel=None, trigger_id="t2")
    await fake_slack.wait_for(lambda: len(ephemerals(fake_slack, "U0STRANGER")) == 2)
    assert ephemerals(fake_slack, "U0STRANGER")[1].method.startswith("response_url:")
    assert fake_slack.calls_to("views.open") == []  # a stranger is not even asked for a reason

    rows = await until(lambda: _two(running, body["id"]))
    assert [(r.slack_user_id, r.response, r.accepted, r.refusal) for r in rows] == [
        ("U0STRANGER", "approve", False, "not_authorized"),
        ("U0STRANGER", "override", False, "not_authorized"),
    ]
    refused = [e for e in await ledger_events(running, body["id"]) if e.event == "response.refused"]
    assert len(refused) == 2 and refused[0].actor == "U0STRANGER"
    assert (await action_state(running, body["id"]))["status"] == "pending"


async def _two(running: Running, action_id: int) -> list[Response] | None:
    rows = await responses(running, action_id)
    return rows if len(rows) == 2 else None


@pytest.mark.parametrize("transport", TRANSPORTS, indirect=True)
async def test_double_click_decides_once(running: Running, fake_slack: FakeSlack) -> None:
    _, body = await running.submit(proposal())
    card = await card_for(fake_slack, "U0OWNER", body["id"])
    await click(running, fake_slack, "U0OWNER", card, "Approve", trigger_id="t1")
    await decided(running, body["id"])
    await click(running, fake_slack, "U0OWNER", card, "Approve", trigger_id="t2")
    note = await fake_slack.wait_for(lambda: ephemerals(fake_slack, "U0OWNER"))
    assert "already decided: approved by <@U0OWNER>" in note[0].args["text"]
    rows = await until(lambda: _two(running, body["id"]))
    assert [(r.accepted, r.refusal) for r in rows] == [(True, None), (False, "already_decided")]
    assert [e.event for e in await ledger_events(running, body["id"])].count("decision") == 1


async def test_two_people_click_at_once_one_decision(running: Running, fake_slack: FakeSlack) -> None:
    _, body = await running.submit(proposal())
    card = await card_for(fake_slack, "U0OWNER", body["id"])
    # The owner and an admin (both allowed) approve at the same instant.
    await asyncio.gather(
        click(running, fake_slack, "U0OWNER", card, "Approve", trigger_id="owner"),
        click(running, fake_slack, "U0ADMIN", card, "Approve", trigger_id="admin"),
    )
    rows = await until(lambda: _two(running, body["id"]))
    winners = [r for r in rows if r.accepted]
    losers = [r for r in rows if not r.accepted]
    assert len(winners) == 1 and len(losers) == 1 and losers[0].refusal == "already_decided"
    got = await decided(running, body["id"])
    assert got["decision"]["by"]["slack_user_id"] == winners[0].slack_user_id
    note = await fake_slack.wait_for(lambda: ephemerals(fake_slack, losers[0].slack_user_id))
    assert f"approved by <@{winners[0].slack_user_id}>" in note[0].args["text"]
    assert [e.event for e in await ledger_events(running, body["id"])].count("decision") == 1


async def test_override_submitted_after_someone_else_decided(running: Running, fake_slack: FakeSlack) -> None:
    _, body = await running.submit(proposal())
    card = await card_for(fake_slack, "U0OWNER", body["id"])
    await click(running, fake_slack, "U0OWNER", card, "Override", channel="C0CHECKOUT")
    [opened] = await fake_slack.wait_for(lambda: fake_slack.calls_to("views.open"))
    # An admin approves while the owner is still typing a reason.
    await click(running, fake_slack, "U0ADMIN", card, "Approve", trigger_id="admin")
    await decided(running, body["id"])
    resp = await running.interact(submission("U0OWNER", opened.args["view"], "too risky today"))
    assert resp.status == 200 and not await resp.text()  # the modal closes; the answer comes privately
    note = await fake_slack.wait_for(lambda: ephemerals(fake_slack, "U0OWNER"))
    assert note[0].args["channel"] == "C0CHECKOUT"
    assert "already decided: approved by <@U0ADMIN>" in note[0].args["text"]
    rows = await until(lambda: _two(running, body["id"]))
    assert [(r.slack_user_id, r.accepted, r.refusal, r.reason) for r in rows] == [
        ("U0ADMIN", True, None, None), ("U0OWNER", False, "already_decided", "too risky today")]


async def test_override_click_without_a_trigger_id_says_how_to_override(running: Running,
                                                                        fake_slack: FakeSlack) -> None:
    """No trigger_id, no modal: the listener raised KeyError (a traceback, and Slack got 404 after
    3 s). Now it answers at once and tells the person the slash command that takes a reason."""
    _, body = await running.submit(proposal())
    card = await card_for(fake_slack, "U0OWNER", body["id"])
    payload = click_payload("U0OWNER", buttons(card)["Override"], channel="C0CHECKOUT", response_url=None)
    del payload["trigger_id"]
    started = asyncio.get_running_loop().time()
    resp = await running.interact(payload)
    assert resp.status == 200 and asyncio.get_running_loop().time() - started < 2.0
    [note] = await fake_slack.wait_for(lambda: ephemerals(fake_slack, "U0OWNER"))
    assert f"/ai-actions override {body['id']} REASON" in note.args["text"]
    assert fake_slack.calls_to("views.open") == []
    assert (await action_state(running, body["id"]))["status"] == "pending"
