"""Socket Mode (issue 15, finding 11): the app connects to the fake Slack's WebSocket (through
`apps.connections.open`), answers envelopes by envelope_id, and survives Slack's `disconnect` and a
dropped connection without losing a click or deciding one twice. The approve / override modal /
slash / App Home tests also run over Socket Mode (their `transport` parameter)."""

from __future__ import annotations

import asyncio

import pytest

from bot.demo.fakeslack import FakeSlack
from bot.demo.fakeslack_socket import Ack
from tests.conftest import Running, proposal
from tests.slack_helpers import buttons, card_for, click_payload, decided, responses, until

pytestmark = pytest.mark.parametrize("transport", ["socket"], indirect=True)


async def test_connects_through_apps_connections_open_and_acks_by_envelope(
    running: Running, fake_slack: FakeSlack
) -> None:
    assert fake_slack.calls_to("apps.connections.open")  # asked for the ws:// URL with its app token
    assert fake_slack.socket.connections == 1
    status, body = await running.submit(proposal())
    assert status == 201
    card = await card_for(fake_slack, "U0OWNER", body["id"])
    payload = click_payload("U0OWNER", buttons(card)["Approve"], channel="DU0OWNER", response_url=None)
    ack = await fake_slack.socket.send("interactive", payload)
    assert ack.envelope_id == fake_slack.socket.sent[-1]["envelope_id"]
    assert (await decided(running, body["id"]))["status"] == "approved"


async def test_disconnect_message_makes_the_app_reconnect_and_clicks_still_work(
    running: Running, fake_slack: FakeSlack
) -> None:
    await fake_slack.socket.disconnect()  # Slack's "refresh_requested"
    await fake_slack.socket.wait_connected(count=2)
    assert len(fake_slack.calls_to("apps.connections.open")) == 2
    await until(lambda: _one_open(fake_slack))  # the old connection was left
    status, body = await running.submit(proposal())
    card = await card_for(fake_slack, "U0OWNER", body["id"])
    resp = await running.interact(click_payload("U0OWNER", buttons(card)["Approve"], channel="DU0OWNER",
                                                response_url=None))
    assert resp.status == 200
    assert (await decided(running, body["id"]))["status"] == "approved"


async def test_dropped_connection_reconnects_and_no_click_is_lost_or_decided_twice(
    running: Running, fake_slack: FakeSlack
) -> None:
    socket = fake_slack.socket
    ids = []
    for n in range(3):
        status, body = await running.submit(proposal(summary=f"Scale down, step {n}"))
        assert status == 201
        ids.append(body["id"])
    cards = [await card_for(fake_slack, "U0OWNER", i) for i in ids]
    clicks = [click_payload("U0OWNER", buttons(c)["Approve"], channel="DU0OWNER", response_url=None,
                            trigger_id=f"t{n}") for n, c in enumerate(cards)]

    # The first click is acked; the second is in flight when the connection drops.
    await socket.send("interactive", clicks[0])
    in_flight = asyncio.ensure_future(socket.send("interactive", clicks[1], timeout=3))
    await asyncio.sleep(0)
    await socket.drop()
    await socket.wait_connected(count=2, timeout=15)  # the app noticed and opened a new connection
    acked = await _settled(in_flight)
    if not acked:  # the ack was lost with the connection: Slack's user clicks again
        await socket.send("interactive", clicks[1])
    await socket.send("interactive", clicks[1])  # and a stale retry of the same click arrives too
    await socket.send("interactive", clicks[2])

    for action_id in ids:  # every click decided its action ...
        assert (await decided(running, action_id))["status"] == "approved"
    for action_id in ids:  # ... once: a repeat is refused, never a second decision
        accepted = [r for r in await responses(running, action_id) if r.accepted]
        assert len(accepted) == 1, (action_id, accepted)


async def _one_open(fake_slack: FakeSlack) -> bool:
    return fake_slack.socket.open_connections == 1


async def _settled(future: asyncio.Future[Ack]) -> bool:
    try:
        await future
        return True
    except (TimeoutError, ConnectionError, RuntimeError):
        return False
