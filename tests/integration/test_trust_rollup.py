"""The track record read from the daily rollup equals the live query (storage.queries.trust_live,
the original one) on a history written through the running app over several days; and a decision
and a result that reach an action after its day show at once (the day is read live until the
rollup job recounts it), then from the rollup again."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlmodel import col

from bot.actions.decisions import respond
from bot.autonomy import rollup, trust
from bot.cli.trust import table as cli_table
from bot.clock import FakeClock
from bot.policy.rules import Policy
from handlers.blocks.autonomy import table_lines
from storage.models import Action, TrustRollupSpan
from storage.queries import trust as trust_q
from storage.queries import trust_rollup
from storage.queries.trust_live import Group, Key
from tests.conftest import Running, proposal
from tests.conftest import test_policy as make_policy
from tests.integration.test_autonomy import post_result
from tests.policies import AUTONOMY
from tests.slack_helpers import until

BASE = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=5)
OWNERS = {"checkout-api": "U0OWNER", "search": "U0SEARCH", "batch": "U0BATCH"}


@pytest.fixture
def policy() -> Policy:
    return make_policy(AUTONOMY)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(BASE + timedelta(hours=9, minutes=17))


def assert_same(rolled: dict[Key, Group], live: dict[Key, Group]) -> None:
    assert rolled.keys() == live.keys()
    for key, want in live.items():
        got = rolled[key]
        assert (got.by_status, got.defaults, got.violations, got.results) == (
            want.by_status, want.defaults, want.violations, want.results), key
        if want.median_decision_seconds is None:
            assert got.median_decision_seconds is None, key
        else:  # the histogram's stated precision: within 9 % (2^(1/8) - 1 = 9.05 %)
            assert got.median_decision_seconds == pytest.approx(want.median_decision_seconds, rel=0.0906), key


async def settled(running: Running) -> bool:
    """Nothing left for the sweeper: every timeout that is due has been applied."""
    async with running.svc.db.session() as session:
        due = select(func.count()).where(col(Action.next_at).is_not(None), col(Action.next_at) <= running.svc.clock())
        return (await session.execute(due)).scalar_one() == 0


async def test_the_rollup_backed_track_record_equals_the_live_query(running: Running, clock: FakeClock) -> None:
    svc, rng = running.svc, random.Random(7)
    other, _ = await running.add_agent("planner")
    for day in range(6):  # five whole days, and today
        clock.now = BASE + timedelta(days=day, hours=9, minutes=17)
        for i in range(9):
            service = rng.choice(list(OWNERS))
            body = proposal(service=service, action_type=rng.choice(["scale_down", "restart"]),
                            environment=rng.choice(["production", "staging"]),
                            kind="executed" if i % 4 == 3 else "proposed", summary=f"d{day} a{i}")
            status, a = await running.submit(body, token=other if i % 3 == 0 else None)
            assert status == 201, a
            if a["status"] == "pending" and rng.random() < 0.75:
                clock.advance(rng.choice([5, 40, 90, 700, 2500]))
                yes = "approve" if a["kind"] == "proposed" else "acknowledge"
                response = yes if rng.random() < 0.8 else "override"
                assert (await respond(svc, a["id"], user_id=OWNERS[service], user_name="o", response=response,
                                      via="slash", reason="no" if response == "override" else None)).accepted
            if a["status"] in ("recorded",) or a["kind"] == "executed":
                result = "succeeded" if rng.random() < 0.85 else "rolled_back"
                assert (await post_result(running, a["id"], {"result": result},
                                          token=other if i % 3 == 0 else None))[0] == 200
            clock.advance(1800)  # past some timeouts (1 h), not all
        await until(lambda: settled(running))
    clock.advance(3600)
    await until(lambda: settled(running))
    now = clock()

    assert await rollup.refresh(svc) == 5  # the five whole days; today stays live
    async with svc.db.read_session() as session:
        assert len(await trust_rollup.clean_days(session, BASE, now)) == 5
        spans = (await session.execute(select(TrustRollupSpan.days))).scalars().all()  # type: ignore[call-overload]
        assert sorted(spans) == [5]  # the 5 whole days summed as one span (`6` would need a sixth day)
        agent_id = await trust_q.agent_id_by_name(session, "planner")
        windows = [(BASE - timedelta(hours=1), now, {}),  # every whole day from the rollup
                   (BASE + timedelta(days=1, hours=13), now, {}),  # starts mid-day: that day read live
                   (BASE + timedelta(days=2), BASE + timedelta(days=4, hours=10), {}),  # ends mid-day
                   (BASE + timedelta(hours=2), now, {"service": "checkout-api"}),
                   (BASE, now, {"agent_id": agent_id})]
        for since, until_, filters in windows:
            rolled = await trust_q.track_record(session, since, until_, **filters)  # type: ignore[arg-type]
            assert rolled, (since, until_)
            assert_same(rolled, await trust_q.track_record_live(session, since, until_, **filters))  # type: ignore[arg-type]
        week = await trust_q.track_record(session, now - timedelta(days=7), now, median=False)
        assert_same(week, await trust_q.track_record_live(session, now - timedelta(days=7), now, median=False))
        whole = await trust_q.track_record(session, BASE, now)
    assert any(g.median_approximate for g in whole.values())  # the rollup was read, not only the live path
    assert sum(sum(g.by_status.values()) for g in whole.values()) == 6 * 9


async def test_a_late_decision_and_result_change_a_rolled_up_day(running: Running, clock: FakeClock) -> None:
    svc = running.svc
    clock.now = BASE + timedelta(hours=22)
    _, executed = await running.submit(proposal(service="search", action_type="restart", kind="executed",
                                                summary="restarted"))
    _, approved = await running.submit(proposal(summary="approve me"))
    clock.advance(90)
    assert (await respond(svc, approved["id"], user_id="U0OWNER", user_name="olive", response="approve",
                          via="slash")).accepted
    clock.now = BASE + timedelta(days=1, hours=2)  # the executed action timed out: `default` accountability
    await until(lambda: settled(running))
    assert await rollup.refresh(svc) == 1
    day = (BASE, BASE + timedelta(days=1) - timedelta(microseconds=1))

    async def record(service: str) -> trust.Record:
        async with svc.db.read_session() as session:
            [found] = await trust.records(session, *day, service=service)
            return found

    before = await record("search")
    assert (before.pending, before.acknowledged, before.defaults) == (1, 0, 1)
    assert (await record("checkout-api")).failed == 0

    clock.advance(600)  # the next day: the owner acknowledges, the agent reports a failure
    assert (await respond(svc, executed["id"], user_id="U0SEARCH", user_name="sam", response="acknowledge",
                          via="slash")).accepted
    assert (await post_result(running, approved["id"], {"result": "failed"}))[0] == 200
    async with svc.db.read_session() as session:
        assert await trust_rollup.clean_days(session, BASE, BASE + timedelta(days=1)) == {}  # dirty: read live
    after = await record("search")
    assert (after.pending, after.acknowledged, after.defaults) == (0, 1, 0)
    assert after.median_decision_seconds == pytest.approx(4 * 3600 + 600, rel=0.0906)
    assert (await record("checkout-api")).failed == 1

    assert await rollup.refresh(svc) == 1  # recounted: from the rollup again, with the changes
    async with svc.db.read_session() as session:
        assert list(await trust_rollup.clean_days(session, BASE, BASE + timedelta(days=1))) == [BASE]
        assert_same(await trust_q.track_record(session, *day), await trust_q.track_record_live(session, *day))
    again = await record("search")
    assert (again.acknowledged, again.defaults, again.median_approximate) == (1, 0, True)
    assert again.median_decision_seconds == pytest.approx(4 * 3600 + 600, rel=0.0906)
    assert "≈" in cli_table([again]) and "≈" in table_lines([again])[1]  # the CLI and Slack say it is approximate
    assert "≈" not in cli_table([after])  # read live: exact
    assert (await record("checkout-api")).failed == 1
