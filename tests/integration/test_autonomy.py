"""Autonomy through the running app, the fake Slack and both databases: results (idempotent, isolated),
agents seeing only their own actions, pauses from Slack, the brake, grants from a suggestion."""

from __future__ import annotations

import itertools
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import col, select

from bot.actions.decisions import respond
from bot.clock import FakeClock
from bot.demo.fakeslack import FakeSlack
from bot.policy.rules import Policy
from storage.models import LedgerEntry, Pause, SlackMessage
from storage.queries import actions as repo
from tests.conftest import Running, proposal
from tests.conftest import test_policy as make_policy
from tests.policies import AUTONOMY
from tests.slack_helpers import click_payload, until

_keys = itertools.count(1)


@pytest.fixture
def policy() -> Policy:
    return make_policy(AUTONOMY)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1))


async def slash(running: Running, fake_slack: FakeSlack, text: str, user: str = "U0OWNER") -> dict[str, Any]:
    key = f"auto{next(_keys)}"
    resp = await running.slack({"command": "/ai-actions", "text": text, "user_id": user, "user_name": user.lower(),
                                "team_id": "T1", "channel_id": "C0CHECKOUT",
                                "response_url": fake_slack.response_url(key), "trigger_id": "trig"})
    assert resp.status == 200
    calls = await fake_slack.wait_for(lambda: fake_slack.calls_to(f"response_url:{key}"))
    answer: dict[str, Any] = calls[0].args
    return answer


async def post_result(running: Running, action_id: int, body: dict[str, Any], token: str | None = None
                      ) -> tuple[int, Any]:
    async with running.http.post(f"{running.url}/v1/actions/{action_id}/result", json=body,
                                 headers={"Authorization": f"Bearer {token or running.token}"}) as r:
        return r.status, await r.json()


async def ledger_events(running: Running, prefix: str) -> list[LedgerEntry]:
    async with running.svc.db.session() as session:
        rows = await session.execute(select(LedgerEntry).where(col(LedgerEntry.event).startswith(prefix))
                                     .order_by(col(LedgerEntry.seq)))
        return list(rows.scalars())


async def _copies(running: Running, action_id: int) -> list[SlackMessage]:
    async with running.svc.db.session() as session:
        return await repo.slack_messages(session, action_id)


def texts(fake_slack: FakeSlack, channel: str) -> list[str]:
    return [json.dumps(c.args) for c in fake_slack.posts(channel)]


async def test_result_is_stored_once_shown_on_get_and_a_failure_is_announced(
        running: Running, fake_slack: FakeSlack, clock: FakeClock) -> None:
    status, action = await running.submit(proposal(service="search", kind="executed", action_type="restart",
                                                   summary="Restarted <!channel>"))
    assert status == 201 and action["mode"] == "acknowledge"
    await fake_slack.wait_for(lambda: fake_slack.posts("C0SEARCH"))
    body = {"result": "failed", "detail": "pods crashlooped *again*",
            "evidence": [{"label": "logs", "url": "https://logs.example.com/1"}]}
    first = await post_result(running, action["id"], body)
    assert first[0] == 200 and first[1]["result"] == "failed"
    assert await post_result(running, action["id"], body) == first  # the same body: the same answer
    other = await post_result(running, action["id"], {**body, "result": "succeeded"})
    assert other[0] == 409 and other[1]["error"]["code"] == "result_conflict"
    got = await running.get(f"/v1/actions/{action['id']}")
    assert got[1]["result"]["result"] == "failed" and got[1]["result"]["detail"] == "pods crashlooped *again*"
    assert [e.data["result"] for e in await ledger_events(running, "action.result")] == ["failed"]
    # The service channel is told, with the agent's text escaped.
    notice = f"Action {action['id']} failed"
    told = await posted(fake_slack, clock, "C0SEARCH", notice)
    assert "<!channel>" not in told and "*again*" not in told and "crashlooped" in told
    await posted(fake_slack, clock, "U0SEARCH", notice)  # the accountable
    # Every copy of the card shows it.
    await fake_slack.wait_for(lambda: [c for c in fake_slack.calls_to("chat.update") if "Result reported" in
                                       json.dumps(c.args)])


async def test_an_autonomous_actions_fyi_is_redrawn_with_its_result(running: Running, fake_slack: FakeSlack) -> None:
    """SPEC: the result is shown "on the cards": for an autonomous action that is its FYI."""
    status, action = await running.submit(proposal(service="search", kind="executed", summary="Scaled search"))
    assert status == 201 and action["mode"] == "autonomous"
    await fake_slack.wait_for(lambda: fake_slack.posts("C0SEARCH"))
    [copy] = await until(lambda: _copies(running, action["id"]))  # where the FYI lives, once it was sent
    assert (copy.purpose, copy.channel) == ("fyi", "C0SEARCH")
    assert (await post_result(running, action["id"], {"result": "succeeded"}))[0] == 200
    [update] = await fake_slack.wait_for(lambda: fake_slack.calls_to("chat.update", channel="C0SEARCH"))
    assert update.args["ts"] == copy.ts
    assert "Scaled search" in json.dumps(update.args) and "Result reported" in json.dumps(update.args)
    assert "Approve" not in json.dumps(update.args)  # still an FYI, not turned into a card


async def test_a_result_is_refused_for_a_denied_proposal_bad_body_and_another_agent(running: Running) -> None:
    status, action = await running.submit(proposal())
    assert status == 201 and action["mode"] == "approve"
    denied = await respond(running.svc, action["id"], user_id="U0OWNER", user_name="olive", response="override",
                           via="slash", reason="not now")
    assert denied.accepted
    status, body = await post_result(running, action["id"], {"result": "succeeded"})
    assert status == 409 and body["error"]["code"] == "not_run" and "denied" in body["error"]["message"]
    status, body = await post_result(running, action["id"], {"result": "exploded"})
    assert status == 400 and "result" in body["error"]["message"]
    other_token, _ = await running.add_agent("other-agent")
    status, body = await post_result(running, action["id"], {"result": "succeeded"}, token=other_token)
    assert status == 404
    assert await ledger_events(running, "action.result") == []


async def test_agents_see_only_their_own_actions(running: Running) -> None:
    status, mine = await running.submit(proposal(callback_url="https://hooks.example.com/x", metadata={"k": 1}))
    assert status == 201
    other_token, _ = await running.add_agent("snoop")
    for path in (f"/v1/actions/{mine['id']}", f"/v1/actions/{mine['id']}/decision?wait=0"):
        status, body = await running.get(path, token=other_token)
        assert status == 404 and "hooks.example.com" not in json.dumps(body)
    status, page = await running.get("/v1/actions", token=other_token)
    assert status == 200 and page["items"] == []
    status, page = await running.get("/v1/actions")
    assert [a["id"] for a in page["items"]] == [mine["id"]]


async def test_pause_from_slack_changes_the_mode_and_resume_restores_it(
        running: Running, fake_slack: FakeSlack, clock: FakeClock) -> None:
    status, before = await running.submit(proposal(service="search", action_type="scale_down"))
    assert before["mode"] == "autonomous" and before["paused"] is None
    refused = await slash(running, fake_slack, "pause search 2h bad deploys", user="U0STRANGER")
    assert "may not pause" in json.dumps(refused)
    assert [e.actor for e in await ledger_events(running, "pause.refused")] == ["U0STRANGER"]
    for bad, why in (("pause nowhere 1h x", "Unknown target"), ("pause search 2x oops", "Cannot read the duration"),
                     ("pause search 31d too long", "at most 30 days"), ("pause search 2h", "needs a reason"),
                     ("pause agent:ghost 1h x", "Unknown agent"), ("pause search -5m oops", "Cannot read the duration"),
                     ("pause search 99999999999d x", "at most 30 days")):
        assert why in json.dumps(await slash(running, fake_slack, bad, user="U0ADMIN")), bad
    assert await ledger_events(running, "pause.started") == []

    answer = await slash(running, fake_slack, "pause search 2h bad deploys <!here>", user="U0SEARCH")
    assert "Paused" in json.dumps(answer)
    status, during = await running.submit(proposal(service="search", action_type="scale_down"))
    assert during["mode"] == "approve" and during["paused"]["by"] == "U0SEARCH"
    assert "bad deploys" in during["paused"]["reason"] and during["paused"]["until"]
    status, executed = await running.submit(proposal(service="search", kind="executed", action_type="scale_down"))
    assert executed["mode"] == "approve" and executed["policy_violation"] is True
    status, listed = await running.get("/v1/pauses")
    assert [p["target"] for p in listed["items"]] == ["search"]
    assert "<!here>" not in await posted(fake_slack, clock, "C0SEARCH", "Paused")

    assert "Resumed" in json.dumps(await slash(running, fake_slack, "resume search", user="U0SEARCH"))
    status, after = await running.submit(proposal(service="search", action_type="scale_down"))
    assert after["mode"] == "autonomous" and after["paused"] is None
    assert before["id"] < during["id"] < after["id"]
    assert [e.data["by"] for e in await ledger_events(running, "pause.ended")] == ["U0SEARCH"]
    status, listed = await running.get("/v1/pauses")
    assert listed["items"] == []


async def test_pausing_all_is_announced_in_every_service_channel_and_to_leadership(
        running: Running, fake_slack: FakeSlack, clock: FakeClock) -> None:
    assert "Paused" in json.dumps(await slash(running, fake_slack, "pause all 1h incident 42", user="U0ADMIN"))
    channels = sorted({s.channel for s in running.svc.policy.services.values() if s.channel} | {"C0LEADERS"})
    assert len(channels) >= 3
    for channel in channels:
        assert "incident 42" in await posted(fake_slack, clock, channel, "Paused")
    assert "Resumed" in json.dumps(await slash(running, fake_slack, "resume all", user="U0ADMIN"))
    for channel in channels:
        await posted(fake_slack, clock, channel, "Pause ended")


async def posted(fake_slack: FakeSlack, clock: FakeClock, channel: str, needle: str) -> str:
    """Wait for a post containing `needle`; the pacer runs on the fake clock, so move it meanwhile."""

    async def found() -> str | None:
        clock.advance(1)
        return next((t for t in texts(fake_slack, channel) if needle in t), None)

    text: str = await until(found)
    return text


async def test_the_brake_trips_once_after_two_overrides(running: Running, fake_slack: FakeSlack,
                                                        clock: FakeClock) -> None:
    ids = [(await running.submit(proposal(summary=f"try {i}")))[1]["id"] for i in range(3)]
    for action_id in ids:
        result = await respond(running.svc, action_id, user_id="U0OWNER", user_name="olive", response="override",
                               via="slash", reason="wrong call")
        assert result.accepted
    async with running.svc.db.session() as session:
        pauses = list((await session.execute(select(Pause))).scalars())
    assert len(pauses) == 1 and pauses[0].by == "countersign" and "2 overrides" in pauses[0].reason
    assert pauses[0].target == "agent:remediator@checkout-api"
    status, next_one = await running.submit(proposal(service="checkout-api", action_type="restart",
                                                     environment="staging"))
    assert next_one["mode"] == "approve" and next_one["paused"]["by"] == "countersign"
    for channel in ("C0LEADERS", "U0OWNER", "C0CHECKOUT"):  # leadership, the owner, the service channel
        await posted(fake_slack, clock, channel, "Automatic brake")
    # The owner resumes it from Slack.
    assert "Resumed" in json.dumps(await slash(running, fake_slack, "resume checkout-api", user="U0OWNER"))
    status, again = await running.submit(proposal(service="checkout-api", action_type="restart",
                                                  environment="staging"))
    assert again["mode"] == "acknowledge" and again["paused"] is None


async def test_a_grant_changes_new_actions_not_those_in_flight_and_ends(running: Running, fake_slack: FakeSlack,
                                                                        clock: FakeClock) -> None:
    for i in range(3):
        status, a = await running.submit(proposal(summary=f"scale {i}"))
        assert (await respond(running.svc, a["id"], user_id="U0OWNER", user_name="olive", response="approve",
                              via="slash")).accepted
    status, in_flight = await running.submit(proposal(summary="in flight"))
    assert in_flight["mode"] == "approve"
    owner_view = await slash(running, fake_slack, "trust remediator", user="U0OWNER")
    assert "Promote" in json.dumps(owner_view) and "autonomy_grant" not in json.dumps(owner_view)
    lead_view = await slash(running, fake_slack, "trust checkout-api", user="U0VP")
    grant = next(e for b in lead_view["blocks"] if b["type"] == "actions" for e in b["elements"]
                 if e["action_id"] == "autonomy_grant")
    # A stranger's click is refused and recorded; the leader's grants.
    for user in ("U0STRANGER", "U0VP"):
        resp = await running.interact(click_payload(user, grant, channel="C0CHECKOUT",
                                                    response_url=fake_slack.response_url(f"g-{user}")))
        assert resp.status == 200
        answered = f"response_url:g-{user}"
        await fake_slack.wait_for(lambda: fake_slack.calls_to(answered))  # noqa: B023
    assert [e.actor for e in await ledger_events(running, "grant.refused")] == ["U0STRANGER"]
    granted = await ledger_events(running, "grant.granted")
    assert len(granted) == 1 and granted[0].data["mode"] == "acknowledge"
    status, new = await running.submit(proposal(summary="after the grant"))
    assert new["mode"] == "acknowledge" and new["rule"]["rule"]["grant"]["by"] == "U0VP"
    status, still = await running.get(f"/v1/actions/{in_flight['id']}")
    assert still["mode"] == "approve"
    # It expires by itself: the deadline is in the database.
    clock.advance(86400 + 1)
    status, later = await running.submit(proposal(summary="after expiry"))
    assert later["mode"] == "approve"
    await until(lambda: ledger_events(running, "grant.expired"))
    # told like its start (it ended silently): the team's next actions wait for approval again
    ended = await posted(fake_slack, clock, "C0LEADERS", "Promotion expired")
    assert "is now *approve*" in ended and "by <@" not in ended
    assert "is now *approve*" in await posted(fake_slack, clock, "C0CHECKOUT", "Promotion expired")


async def test_a_demotion_is_suggested_with_grant_and_applies_only_once_granted(
        running: Running, fake_slack: FakeSlack) -> None:
    restart = {"kind": "executed", "service": "checkout-api", "action_type": "restart", "environment": "staging"}
    status, first = await running.submit(proposal(**restart))
    assert first["mode"] == "acknowledge"
    assert (await respond(running.svc, first["id"], user_id="U0OWNER", user_name="olive", response="override",
                          via="slash", reason="it broke the canary")).accepted
    status, unchanged = await running.submit(proposal(**restart, summary="restart again"))
    assert unchanged["mode"] == "acknowledge"  # a suggestion changes nothing until someone grants it
    lead_view = await slash(running, fake_slack, "trust checkout-api", user="U0VP")
    assert "Demote" in json.dumps(lead_view) and "override rate 100%" in json.dumps(lead_view)
    buttons = {e["action_id"]: e for b in lead_view["blocks"] if b["type"] == "actions" for e in b["elements"]}
    assert set(buttons) == {"autonomy_grant", "autonomy_dismiss"}
    resp = await running.interact(click_payload("U0VP", buttons["autonomy_grant"], channel="C0CHECKOUT",
                                                response_url=fake_slack.response_url("demote")))
    assert resp.status == 200
    await fake_slack.wait_for(lambda: fake_slack.calls_to("response_url:demote"))
    granted = await ledger_events(running, "grant.granted")
    assert [(e.data["kind"], e.data["previous_mode"], e.data["mode"], e.actor) for e in granted] == [
        ("demote", "acknowledge", "approve", "U0VP")]
    status, after = await running.submit(proposal(**restart, summary="restart once more"))
    assert after["mode"] == "approve" and after["policy_violation"] is True
    assert "Demote" not in json.dumps(await slash(running, fake_slack, "trust checkout-api", user="U0VP"))


async def test_grant_and_dismiss_clicks_without_a_response_url_are_still_answered(
        running: Running, fake_slack: FakeSlack) -> None:
    """bolt's respond() raises without a response_url: the grant went through but the leader saw
    nothing and a traceback was logged. Now the answer goes ephemerally to the channel, else by DM."""
    for i in range(3):
        status, a = await running.submit(proposal(summary=f"scale {i}"))
        assert (await respond(running.svc, a["id"], user_id="U0OWNER", user_name="olive", response="approve",
                              via="slash")).accepted
    lead_view = await slash(running, fake_slack, "trust checkout-api", user="U0VP")
    by_id = {e["action_id"]: e for b in lead_view["blocks"] if b["type"] == "actions" for e in b["elements"]}
    resp = await running.interact(click_payload("U0STRANGER", by_id["autonomy_dismiss"], channel=None,
                                                response_url=None))
    assert resp.status == 200
    refused = await fake_slack.wait_for(lambda: fake_slack.posts("U0STRANGER"))
    assert "Only leadership users and admins" in refused[0].args["text"]
    resp = await running.interact(click_payload("U0VP", by_id["autonomy_grant"], channel="C0CHECKOUT",
                                                response_url=None))
    assert resp.status == 200
    [note] = await fake_slack.wait_for(lambda: fake_slack.calls_to("chat.postEphemeral", user="U0VP"))
    assert note.args["text"].startswith("Granted: `remediator` on checkout-api")
    assert len(await ledger_events(running, "grant.granted")) == 1


async def test_a_pause_says_when_it_ends_as_a_slack_date(running: Running, fake_slack: FakeSlack,
                                                         clock: FakeClock) -> None:
    """The end of a pause read `until 2026-12-06T03:53:09.811093+00:00` in the channel, the answer
    and `pauses`; it is now Slack's <!date> (each reader's time zone), with a minute-precise fallback."""
    answer = json.dumps(await slash(running, fake_slack, "pause search 2h bad deploys", user="U0SEARCH"))
    listed = json.dumps(await slash(running, fake_slack, "pauses", user="U0SEARCH"))
    announced = await posted(fake_slack, clock, "C0SEARCH", "Paused")
    for text in (answer, listed, announced):
        assert "until <!date^" in text and " UTC>" in text, text
        assert not re.search(r"\d{2}:\d{2}:\d{2}\.\d+", text), text  # no raw ISO time with microseconds
