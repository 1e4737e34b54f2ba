"""When nobody can be paged (issue 15, finding 1), it shows: /healthz is `degraded` with the reason
(HTTP 200 kept), `countersign_paging_unreachable` counts the actions no level reached, the API's
escalation field and `countersign actions show` say "unreachable", and so does the leadership card
once Slack is back. Also /healthz answers within a second whatever the database does (finding 6)."""

from __future__ import annotations

import time
from typing import Any

import asyncpg
import pytest

from bot.actions.record import action_record, format_record
from bot.demo.fakeslack import FakeSlack, Fault
from storage import outbox
from tests.conftest import Running, proposal
from tests.slack_helpers import until


async def _health(running: Running) -> tuple[int, dict[str, Any], float]:
    started = time.monotonic()
    async with running.http.get(f"{running.url}/healthz") as resp:
        return resp.status, await resp.json(), time.monotonic() - started


async def _metric(running: Running, name: str) -> float:
    async with running.http.get(f"{running.url}/metrics") as resp:
        text = await resp.text()
    [line] = [ln for ln in text.splitlines() if ln.startswith(name + " ")]
    return float(line.split()[1])


async def test_a_revoked_token_degrades_health_and_marks_the_action_unreachable(
        running: Running, fake_slack: FakeSlack) -> None:
    assert (await _health(running))[1]["status"] == "ok"
    fake_slack.inject(Fault(error="token_revoked", times=None))
    status, body = await running.submit(proposal())
    assert status == 201, body
    action_id = body["id"]

    async def unreachable() -> dict[str, Any] | None:
        got = (await running.get(f"/v1/actions/{action_id}"))[1]
        return got if got["escalation"]["unreachable"] else None

    got = await until(unreachable)
    assert got["status"] == "pending" and got["escalation"]["failed_levels"] == ["leadership", "owner", "secondary"]
    code, health, _ = await _health(running)
    assert code == 200 and health["status"] == "degraded", health
    assert "token_revoked" in health["checks"]["paging"] and f"({action_id})" in health["checks"]["paging"]
    assert await _metric(running, "countersign_paging_unreachable") == 1.0
    async with running.svc.db.session() as session:
        record = await action_record(session, action_id)
    assert record is not None and "UNREACHABLE" in format_record(record)
    listed = (await running.get("/v1/actions"))[1]["items"]
    assert [a["escalation"]["unreachable"] for a in listed] == [True]

    # Slack is back and the operator retries: the leadership card arrives, saying what happened.
    fake_slack.faults.clear()
    async with running.svc.db.session() as session:
        await outbox.retry_failed(session, target="slack")
        await session.commit()
    leaders = await fake_slack.wait_for(lambda: [c for c in fake_slack.posts("C0LEADERS")
                                                 if "Unreachable" in str(c.args.get("blocks"))])
    assert "Unreachable (nobody could be paged)" in leaders[0].args["text"]
    await until(lambda: _metric_is(running, 0.0))
    got = (await running.get(f"/v1/actions/{action_id}"))[1]
    assert got["escalation"]["unreachable"] is False  # a card is in front of people now
    assert (await _health(running))[1]["status"] == "ok"


async def _metric_is(running: Running, value: float) -> bool:
    return await _metric(running, "countersign_paging_unreachable") == value


async def test_a_run_of_permanent_failures_degrades_health(running: Running, fake_slack: FakeSlack) -> None:
    fake_slack.inject(Fault(method="chat.postMessage", error="channel_not_found", times=None))
    for _ in range(2):
        assert (await running.submit(proposal(service="search", action_type="restart")))[0] == 201

    async def degraded() -> dict[str, Any] | None:
        code, health, _ = await _health(running)
        assert code == 200 and health["status"] in ("ok", "degraded"), health
        return health if "channel_not_found" in health["checks"]["paging"] else None

    health = await until(degraded)
    assert health["status"] == "degraded" and "Slack deliveries failed for good" in health["checks"]["paging"]


async def test_a_posts_only_fault_degrades_health_until_a_post_gets_through(
        running: Running, fake_slack: FakeSlack) -> None:
    """Only chat.postMessage fails (every post answered 500) while Slack's other methods answer:
    the breaker, which they reset, cannot be relied on to see it (the soak's miss)."""
    assert (await _health(running))[1]["status"] == "ok"
    fake_slack.inject(Fault(method="chat.postMessage", status=500, times=None))
    for n in range(3):
        assert (await running.submit(proposal(summary=f"Scale down {n}")))[0] == 201

    seen: list[dict[str, Any]] = []

    async def paging_check() -> dict[str, Any] | None:
        code, health, _ = await _health(running)
        assert code == 200, health  # agents keep submitting: their actions are stored and escalated
        seen.append(health)
        return health if health["checks"]["paging"] != "ok" else None

    try:
        health = await until(paging_check, within=30)
    except AssertionError:
        raise AssertionError(f"never degraded: {seen[-1:]}") from None
    assert health["status"] == "degraded"
    assert health["checks"]["paging"].startswith("chat.postMessage failing: the last "), health
    assert "HTTP 500" in health["checks"]["paging"]
    assert fake_slack.posts() == []  # nothing got through meanwhile

    fake_slack.faults.clear()

    async def healthy() -> dict[str, Any] | None:
        health = (await _health(running))[1]
        seen.append(health)
        return health if health["status"] == "ok" else None

    try:
        health = await until(healthy, within=60)
    except AssertionError:
        raise AssertionError(f"never back to ok: {seen[-1:]}") from None
    assert health["checks"]["paging"] == "ok" and fake_slack.posts()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_healthz_answers_within_a_second_under_an_exclusive_lock(running: Running,
                                                                      database_url: str) -> None:
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
    locker = await asyncpg.connect(dsn)
    try:
        tx = locker.transaction()
        await tx.start()
        await locker.execute("LOCK TABLE alembic_version, outbox, actions IN ACCESS EXCLUSIVE MODE")
        for _ in range(3):
            code, health, took = await _health(running)
            assert took < 1.0, took
            assert code == 503 and health["status"] == "down", health
        await tx.rollback()
    finally:
        await locker.close()
    code, health, took = await _health(running)
    assert code == 200 and health["status"] == "ok" and took < 1.0, health
