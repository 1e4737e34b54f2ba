"""bot.reports.stats (and storage.queries.stats and people beneath it) on a database seeded through
the API, bot.decisions and the sweeper, with an injected clock: counts by mode and outcome, rates per
agent and service, the median time to response, the default-accountability actions, and who is
waiting on whom."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.actions.decisions import respond
from bot.clock import FakeClock
from bot.policy.rules import Policy
from bot.reports import stats
from storage.queries import people
from storage.queries import stats as queries
from tests.conftest import Running, proposal
from tests.conftest import test_policy as make_policy
from tests.integration.test_commands import SLOW


@pytest.fixture
def policy() -> Policy:
    return make_policy(SLOW)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1))


async def until_status(running: Running, action_id: int, status: str) -> dict[str, Any]:
    for _ in range(200):
        _, got = await running.get(f"/v1/actions/{action_id}")
        if got["status"] == status:
            return got
        await asyncio.sleep(0.02)
    raise AssertionError(f"action {action_id} is {got['status']}, not {status}")


async def submit(running: Running, token: str | None = None, **over: Any) -> int:
    status, body = await running.submit(proposal(**over), token=token)
    assert status == 201, body
    return int(body["id"])


async def answer(
    running: Running, action_id: int, user: str, response: str, reason: str | None = None
) -> None:
    result = await respond(
        running.svc,
        action_id,
        user_id=user,
        user_name=user.lower(),
        response=response,
        via="button",
        reason=reason,
    )
    assert result.accepted, result.message


async def test_window_figures(running: Running, clock: FakeClock) -> None:
    deploybot, _ = await running.add_agent("deploybot")
    t0 = clock()
    await submit(running, service="batch", action_type="scale_up")  # ten days before the window
    clock.advance(10 * 86400)
    t1 = clock()
    a1, a2, a3 = [await submit(running, summary=f"proposal {i}") for i in range(3)]
    b1 = await submit(running, deploybot, kind="executed", service="search", action_type="restart")
    await submit(running, deploybot, service="batch", action_type="scale_up")  # autonomous
    clock.advance(100)
    await answer(running, a1, "U0OWNER", "approve")  # 100 s
    clock.advance(50)
    await answer(running, b1, "U0SEARCH", "acknowledge")  # 150 s
    clock.advance(150)
    await answer(running, a2, "U0OWNER", "override", "not during the sale")  # 300 s
    clock.advance(3600)
    await until_status(running, a3, "expired")  # the sweeper timed it out: denied, by default
    b3 = await submit(running, deploybot, service="search", action_type="restart")  # proposal: waits

    async with running.svc.db.session() as session:
        figures = await stats.window_stats(session, t1, clock() + timedelta(seconds=1))
        old = await stats.window_stats(session, t0, t0 + timedelta(seconds=1))
    assert old.total == 1 and old.by_mode == {"autonomous": 1}
    assert figures.total == 6
    assert figures.by_mode == {"approve": 3, "acknowledge": 2, "autonomous": 1}
    assert figures.by_outcome == {
        "approved": 1,
        "denied": 1,
        "expired": 1,
        "acknowledged": 1,
        "recorded": 1,
        "pending": 1,
    }
    assert figures.by_mode_outcome[("approve", "expired")] == 1
    remediator, deploy = figures.per_agent["remediator"], figures.per_agent["deploybot"]
    assert (remediator.total, remediator.approved, remediator.overridden, remediator.defaulted) == (
        3,
        1,
        1,
        1,
    )
    assert remediator.rate(remediator.approved) == pytest.approx(1 / 3)
    assert (deploy.total, deploy.approved, deploy.recorded, deploy.pending, deploy.decided) == (3, 1, 1, 1, 1)
    assert deploy.rate(deploy.approved) == 1.0
    assert figures.per_service["checkout-api"].total == 3 and figures.per_service["search"].pending == 1
    assert (figures.responded, figures.median_response_seconds) == (3, pytest.approx(150.0))
    assert figures.defaulted == 1 and [a.id for a in figures.recent_defaults] == [a3]

    clock.advance(200)
    await answer(running, b3, "U0SEARCH", "approve")  # 200 s: four responses, median of the middle two
    since, end = t1, clock() + timedelta(seconds=1)
    async with running.svc.db.session() as session:
        figures = await stats.window_stats(session, since, end)
        overrides = await stats.decided_overrides(session, since, end)
        defaults = await queries.decided_by_default(session, since, end)
        slowest = await stats.slowest_responses(session, since, end, limit=2)
        mine = await people.decided_by(session, "U0OWNER")
    assert (figures.responded, figures.median_response_seconds) == (4, pytest.approx(175.0))
    assert [a.id for a in overrides] == [a2] and [a.id for a in defaults] == [a3]
    assert [a.id for a in slowest] == [a2, b3]
    assert [a.id for a in mine] == [a2, a1]


async def test_waiting_on_follows_escalation(running: Running, clock: FakeClock) -> None:
    action_id = await submit(running, summary="Raise the pool")
    async with running.svc.db.session() as session:
        owner = await stats.person(session, "U0OWNER")
        admin = await stats.person(session, "U0ADMIN")
        vp = await stats.person(session, "U0VP")
        policy = running.svc.policy
        assert [a.id for a in await stats.waiting_on(session, policy, owner)] == [action_id]
        assert [a.id for a in await stats.waiting_on(session, policy, admin)] == [action_id]
        assert await stats.waiting_on(session, policy, vp) == []
    clock.advance(20 * 60 + 1)  # the secondary (dana@example.com) is paged; the email resolves on sending
    for _ in range(200):
        _, got = await running.get(f"/v1/actions/{action_id}")
        if got["escalation"]["level"] == "secondary":
            break
        await asyncio.sleep(0.02)
    for _ in range(200):
        async with running.svc.db.session() as session:
            dana = await stats.person(session, "U0DANA")
            if "dana@example.com" in dana.specs:
                assert [a.id for a in await stats.waiting_on(session, policy, dana)] == [action_id]
                assert await stats.waiting_on(session, policy, vp) == []
                break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the secondary's email was never resolved")
    clock.advance(20 * 60)  # leadership
    for _ in range(200):
        async with running.svc.db.session() as session:
            if await stats.waiting_on(session, policy, vp):
                break
        await asyncio.sleep(0.02)
    async with running.svc.db.session() as session:
        assert [a.id for a in await stats.waiting_on(session, policy, vp)] == [action_id]
        assert stats.services_of(policy, owner) == {"checkout-api": "owner"}
        assert stats.services_of(policy, dana) == {"checkout-api": "secondary"}
