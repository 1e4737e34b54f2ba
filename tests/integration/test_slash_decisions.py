"""`/ai-actions approve|override|ack`: signed slash commands decide with the buttons' rules,
recorded `via: "slash"`; refusals are ephemeral and recorded; the cards and the agent follow."""

from __future__ import annotations

from bot.demo.fakeslack import FakeSlack
from tests.conftest import Running, proposal
from tests.integration.test_commands import dump, slash
from tests.slack_helpers import action_state, card_for, decided, ledger_events, responses, until


async def _pending(running: Running, fake_slack: FakeSlack, **over: object) -> int:
    status, body = await running.submit(proposal(**over))
    assert status == 201, body
    await card_for(fake_slack, "C0CHECKOUT", body["id"])
    return int(body["id"])


async def test_owner_approves_by_slash_and_cards_follow(running: Running, fake_slack: FakeSlack) -> None:
    action_id = await _pending(running, fake_slack)
    answer = await slash(running, fake_slack, f"approve {action_id} looks right")
    assert "Approved" in dump(answer) and f"/a/{action_id}?" in dump(answer)
    body = await decided(running, action_id)
    assert body["status"] == "approved"
    assert body["decision"]["via"] == "slash" and body["decision"]["reason"] == "looks right"
    assert body["decision"]["by"]["slack_user_id"] == "U0OWNER"
    await fake_slack.wait_for(lambda: fake_slack.calls_to("chat.update", channel="C0CHECKOUT"))


async def test_stranger_is_refused_privately_and_recorded(running: Running, fake_slack: FakeSlack) -> None:
    action_id = await _pending(running, fake_slack)
    answer = await slash(running, fake_slack, f"approve {action_id}", user="U0STRANGER")
    assert "not paged" in dump(answer)
    assert (await action_state(running, action_id))["status"] == "pending"
    [refused] = await responses(running, action_id)
    assert (refused.accepted, refused.refusal, refused.via) == (False, "not_authorized", "slash")
    assert any(e.event == "response.refused" for e in await ledger_events(running, action_id))


async def test_override_needs_a_reason_then_wins_and_later_is_told(running: Running, fake_slack: FakeSlack) -> None:
    action_id = await _pending(running, fake_slack)
    answer = await slash(running, fake_slack, f"override {action_id}")
    assert "needs a reason" in dump(answer)
    assert (await action_state(running, action_id))["status"] == "pending"
    await slash(running, fake_slack, f"override {action_id} cost is fine, traffic spike expected")
    body = await until(lambda: _status(running, action_id, "denied"))
    assert body["decision"]["reason"] == "cost is fine, traffic spike expected"
    late = await slash(running, fake_slack, f"approve {action_id}", user="U0ADMIN")
    assert "already decided" in dump(late)
    assert [r.refusal for r in await responses(running, action_id)] == ["reason_required", None, "already_decided"]


async def test_ack_on_executed_and_help_lists_decisions(running: Running, fake_slack: FakeSlack) -> None:
    status, body = await running.submit(proposal(kind="executed", service="search", action_type="restart",
                                                 summary="Restarted search"))
    assert status == 201, body
    answer = await slash(running, fake_slack, f"ack {body['id']}", user="U0SEARCH")
    assert "Acknowledged" in dump(answer)
    state = await until(lambda: _status(running, body["id"], "acknowledged"))
    assert state["decision"]["via"] == "slash"
    help_text = dump(await slash(running, fake_slack, "help"))
    assert "approve ID [reason]" in help_text and "override ID REASON" in help_text and "ack ID" in help_text
    assert "Which action" in dump(await slash(running, fake_slack, "approve soon"))
    assert "There is no action 999" in dump(await slash(running, fake_slack, "approve 999"))


async def _status(running: Running, action_id: int, status: str) -> dict[str, object] | None:
    body = await action_state(running, action_id)
    return body if body["status"] == status else None


async def test_a_decider_slack_cannot_name_is_recorded_with_the_commands_user_name(
        running: Running, fake_slack: FakeSlack) -> None:
    """users.info does not know the user (a guest, a deleted profile, a stand-in Web API): the name
    recorded is the one the command carried, as a click records the payload's."""
    fake_slack.users.pop("U0OWNER")
    action_id = await _pending(running, fake_slack)
    await slash(running, fake_slack, f"override {action_id} not during the freeze")
    body = await decided(running, action_id)
    assert body["decision"]["by"] == {"slack_user_id": "U0OWNER", "name": "u0owner"}
