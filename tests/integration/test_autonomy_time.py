"""Time in autonomy: the digest covers the time since the previous one (the minute before it too),
with the track record and suggestions; a pause ends at its deadline with no process up at that
moment (the app is restarted after it); the track record's arithmetic on a known history."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from sqlmodel import col, select

from bot.actions.decisions import respond
from bot.app import create_app
from bot.autonomy import grants, trust
from bot.clock import FakeClock
from bot.demo.fakeslack import FakeSlack
from bot.policy.rules import Policy
from bot.reports.digest import run_digest
from storage.models import LedgerEntry
from tests.conftest import Running, make_settings, proposal, serve
from tests.conftest import test_policy as make_policy
from tests.integration.test_autonomy import post_result, slash
from tests.policies import AUTONOMY
from tests.slack_helpers import until


@pytest.fixture
def policy(request: pytest.FixtureRequest) -> Policy:
    return make_policy(getattr(request, "param", AUTONOMY))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1))


async def test_the_digest_covers_the_minute_before_it_and_then_the_next_24_hours(
        running: Running, clock: FakeClock) -> None:
    svc = running.svc
    first = await run_digest(svc)  # the previous digest
    assert first is not None
    clock.advance(24 * 3600 - 60)
    _, approved = await running.submit(proposal(summary="approve me"))
    _, overridden = await running.submit(proposal(summary="override me"))
    assert (await respond(svc, approved["id"], user_id="U0OWNER", user_name="olive", response="approve",
                          via="slash")).accepted
    assert (await respond(svc, overridden["id"], user_id="U0OWNER", user_name="olive", response="override",
                          via="slash", reason="no")).accepted
    clock.advance(59)
    digest = await run_digest(svc)
    assert digest is not None
    assert digest["since"] == first["until"]
    assert digest["total"] == 2 and digest["by_outcome"] == {"approved": 1, "denied": 1}
    assert [i["id"] for i in digest["overrides"]] == [overridden["id"]]
    assert [(r["agent"], r["service"], r["actions"]) for r in digest["trust"]] == [("remediator", "checkout-api", 2)]
    assert await run_digest(svc) is None  # this send time is claimed: once, whatever the replicas


async def test_track_record_arithmetic_on_a_known_history(running: Running, clock: FakeClock) -> None:
    svc = running.svc
    ids = []
    for i, seconds in enumerate((60, 120, 600, 30)):
        _, a = await running.submit(proposal(summary=f"a{i}"))
        clock.advance(seconds)
        response, reason = ("override", "no") if i == 3 else ("approve", None)
        assert (await respond(svc, a["id"], user_id="U0OWNER", user_name="olive", response=response, via="slash",
                              reason=reason)).accepted
        ids.append(a["id"])
    assert (await post_result(running, ids[0], {"result": "succeeded"}))[0] == 200
    assert (await post_result(running, ids[1], {"result": "rolled_back"}))[0] == 200
    _, violation = await running.submit(proposal(kind="executed", summary="went ahead"))
    now = clock()
    async with svc.db.read_session() as session:
        [record] = await trust.records(session, now - timedelta(days=30), now)
    assert (record.actions, record.approved, record.denied, record.pending, record.violations) == (5, 3, 1, 1, 1)
    assert record.decisions == 4 and record.approval_rate == 0.75 and record.override_rate == 0.25
    assert record.median_decision_seconds == pytest.approx(90.0)  # 30, 60, 120, 600 -> (60 + 120) / 2
    assert (record.succeeded, record.failed, record.rolled_back) == (1, 0, 1)


async def test_a_pause_ends_at_its_deadline_with_nobody_up_then(
        database_url: str, fake_slack: FakeSlack, policy: Policy, clock: FakeClock) -> None:
    async with serve(create_app(make_settings(database_url, fake_slack.url), policy=policy, clock=clock)) as run:
        assert "Paused" in str(await slash(run, fake_slack, "pause search 1h flaky", user="U0SEARCH"))
        _, during = await run.submit(proposal(service="search"))
        assert during["mode"] == "approve"
        token = run.token
    clock.advance(3601)  # the deadline passes while no process runs
    app = create_app(make_settings(database_url, fake_slack.url), policy=policy, clock=clock)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            again = Running(server, app, http)
            again.token = token
            _, after = await again.submit(proposal(service="search"))
            assert after["mode"] == "autonomous" and after["paused"] is None

            async def ended() -> list[LedgerEntry]:
                async with again.svc.db.session() as session:
                    return list((await session.execute(select(LedgerEntry).where(
                        col(LedgerEntry.event) == "pause.ended"))).scalars())

            [entry] = await until(ended)
            assert entry.data["by"] == "expiry" and entry.data["target"] == "search"
            _, listed = await again.get("/v1/pauses")
            assert listed["items"] == []
    finally:
        await server.close()


@pytest.mark.parametrize("policy", [AUTONOMY.replace("on_timeout: deny", "on_timeout: approve")], indirect=True,
                         ids=["approve-on-timeout"])
async def test_a_proposal_its_timeout_approved_takes_a_result(running: Running, clock: FakeClock) -> None:
    """`on_timeout: approve` tells the agent to go ahead (status expired, outcome approved): so it
    ran, and its result is taken like an approved proposal's (it was refused 409 not_run)."""
    status, action = await running.submit(proposal())
    assert status == 201 and action["mode"] == "approve"
    clock.advance(3601)

    async def timed_out() -> dict[str, object] | None:
        status, body = await running.get(f"/v1/actions/{action['id']}")
        return body if status == 200 and body["decision"] else None

    got = await until(timed_out)
    assert got["status"] == "expired" and got["decision"]["outcome"] == "approved"  # type: ignore[index]
    status, body = await post_result(running, action["id"], {"result": "succeeded"})
    assert status == 200 and body["result"] == "succeeded", body


async def test_a_revoked_grant_is_announced_as_revoked_by_whoever_revoked_it(
        running: Running, fake_slack: FakeSlack, clock: FakeClock) -> None:
    """The notice said "revoked by" the leader who had granted it, whoever revoked it."""
    for i in range(3):
        _, a = await running.submit(proposal(summary=f"scale {i}"))
        assert (await respond(running.svc, a["id"], user_id="U0OWNER", user_name="olive", response="approve",
                              via="slash")).accepted
    async with running.svc.db.read_session() as session:
        [suggestion] = await trust.current_suggestions(running.svc, session, clock())
    row = await grants.decide(running.svc, "U0VP", suggestion.token(), "granted")
    assert row.id is not None
    await grants.revoke(running.svc, row.id, "U0ADMIN")

    async def revoked() -> str | None:
        clock.advance(1)  # the pacer runs on the fake clock
        return next((json.dumps(c.args) for c in fake_slack.posts("C0LEADERS") if "revoked" in json.dumps(c.args)),
                    None)

    text = await until(revoked)
    assert "Promotion revoked* by <@U0ADMIN>" in text and "is now *approve*" in text
