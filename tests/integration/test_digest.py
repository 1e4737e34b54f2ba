"""The daily digest: the right figures for a seeded day (the job called with an injected date), sent
to the leadership channel once, even by two replicas sharing the database."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import select

from bot.actions.decisions import respond
from bot.api.routes import SERVICES
from bot.app import create_app
from bot.clock import FakeClock
from bot.demo.fakeslack import Call, FakeSlack
from bot.policy.rules import Policy
from bot.reports.digest import catch_up, day_bounds, report_day, run_digest
from storage.models import JobRun, LedgerHead
from tests.conftest import Running, make_settings, proposal
from tests.conftest import test_policy as make_policy
from tests.integration.test_commands import SLOW

# A fixed hour of a day still to come: ahead of the wall clock (queued messages are due at once)
# and far from midnight, so every seeded action falls in one digest day.
DAY = datetime.now(UTC).date() + timedelta(days=1)


@pytest.fixture
def policy() -> Policy:
    return make_policy(SLOW)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.combine(DAY, time(8, 0), tzinfo=UTC))


def digests(fake_slack: FakeSlack) -> list[Call]:
    return [c for c in fake_slack.posts("C0LEADERS") if "daily digest" in c.args.get("text", "")]


async def wait_for_digests(fake_slack: FakeSlack, clock: FakeClock, count: int) -> list[Call]:
    """The relay paces a channel (about one post a second) and defers by the injected clock: move it."""

    def enough() -> list[Call] | None:
        clock.advance(0.2)
        found = digests(fake_slack)
        return found if len(found) >= count else None

    await fake_slack.wait_for(enough)
    await asyncio.sleep(0.3)  # time enough for a duplicate, if there were one
    return digests(fake_slack)


async def seed_day(running: Running, clock: FakeClock) -> dict[str, int]:
    ids: dict[str, int] = {}
    for name, body in {
        "approved": proposal(summary="Scale checkout-api to 8 pods"),
        "overridden": proposal(summary="Flush the checkout cache", action_type="flush_cache"),
        "expired": proposal(summary="Rotate the checkout keys", action_type="rotate_keys"),
        "unacknowledged": proposal(
            kind="executed", service="search", action_type="restart", summary="Restarted search-indexer"
        ),
        "autonomous": proposal(service="batch", action_type="scale_up", summary="Added 2 batch workers"),
    }.items():
        status, got = await running.submit(body)
        assert status == 201, got
        ids[name] = got["id"]
    svc = running.svc
    clock.advance(100)
    assert (
        await respond(
            svc, ids["approved"], user_id="U0OWNER", user_name="olive", response="approve", via="button"
        )
    ).accepted
    clock.advance(200)
    assert (
        await respond(
            svc,
            ids["overridden"],
            user_id="U0OWNER",
            user_name="olive",
            response="override",
            via="button",
            reason="not during the sale",
        )
    ).accepted
    clock.advance(3600)  # both open actions time out: accountability defaults
    for _ in range(300):
        _, expired = await running.get(f"/v1/actions/{ids['expired']}")
        _, executed = await running.get(f"/v1/actions/{ids['unacknowledged']}")
        if expired["status"] == "expired" and executed["decision"]:
            break
        await asyncio.sleep(0.02)
    assert executed["decision"]["accountability"] == "default" and executed["status"] == "pending"
    return ids


async def test_digest_figures_for_a_seeded_day(
    running: Running, fake_slack: FakeSlack, clock: FakeClock
) -> None:
    ids = await seed_day(running, clock)
    digest = await run_digest(running.svc, DAY)
    assert digest is not None
    assert digest["day"] == DAY.isoformat() and digest["total"] == 5
    assert digest["by_mode"] == {"approve": 3, "acknowledge": 1, "autonomous": 1}
    assert digest["by_outcome"] == {"approved": 1, "denied": 1, "expired": 1, "pending": 1, "recorded": 1}
    assert digest["per_agent"]["remediator"] == {
        "total": 5,
        "approved": 1,
        "overridden": 1,
        "defaulted": 2,
        "pending": 0,
        "recorded": 1,
    }
    assert (digest["responded"], digest["median_response_seconds"]) == (2, pytest.approx(200.0))
    assert [i["id"] for i in digest["slowest"]] == [ids["overridden"], ids["approved"]]
    assert digest["slowest"][0]["response_seconds"] == pytest.approx(300.0)
    assert [(i["id"], i["reason"]) for i in digest["overrides"]] == [
        (ids["overridden"], "not during the sale")
    ]
    assert {i["id"] for i in digest["defaults"]} == {ids["expired"], ids["unacknowledged"]}
    async with running.svc.db.session() as session:
        head = await session.get(LedgerHead, 1)
        runs = (await session.execute(select(JobRun))).scalars().all()
    assert head is not None and digest["head"] == {"seq": head.seq, "hash": head.hash}
    assert [(r.job, r.period) for r in runs] == [("digest", DAY.isoformat())]

    posted = await wait_for_digests(fake_slack, clock, 1)
    text = str(posted[0].args["blocks"])
    assert f"{head.hash}@{head.seq}" in posted[0].args["text"] and f"`{head.hash}@{head.seq}`" in text
    assert "*5 AI actions*" in text and "*Median time to response:* 3m 20s" in text
    assert f"*#{ids['overridden']}*" in text and "not during the sale" in text
    assert f"*#{ids['unacknowledged']}*" in text and "unacknowledged, accountable <@U0SEARCH>" in text
    assert "<!date^" in text

    assert await run_digest(running.svc, DAY) is None  # the day is claimed: not sent twice
    empty = await run_digest(running.svc, DAY - timedelta(days=1))
    assert empty is not None and empty["total"] == 0 and empty["overrides"] == []
    assert len(await wait_for_digests(fake_slack, clock, 2)) == 2


async def test_two_replicas_send_each_digest_once(
    running: Running, fake_slack: FakeSlack, clock: FakeClock, database_url: str, policy: Policy
) -> None:
    await seed_day(running, clock)
    replica = create_app(make_settings(database_url, fake_slack.url), policy=policy, clock=clock)
    server = TestServer(replica, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        days = [DAY - timedelta(days=n) for n in range(4)]
        svcs = [running.svc, replica[SERVICES]]
        results: list[Any] = await asyncio.gather(*(run_digest(s, d) for d in days for s in svcs))
        sent = [r for r in results if r is not None]
        assert sorted(r["day"] for r in sent) == sorted(d.isoformat() for d in days)
        posted = await wait_for_digests(fake_slack, clock, 4)
        assert sorted(c.args["text"].split(":")[0] for c in posted) == sorted(
            f"Countersign daily digest {d.isoformat()}" for d in days
        )
    finally:
        await server.close()


async def test_scheduled_at_the_configured_time(
    database_url: str, fake_slack: FakeSlack, policy: Policy
) -> None:
    settings = make_settings(
        database_url,
        fake_slack.url,
        COUNTERSIGN_DIGEST_TIME="07:30",
        COUNTERSIGN_DIGEST_TIMEZONE="Europe/Paris",
    )
    app = create_app(settings, policy=policy)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        scheduler = app[SERVICES].scheduler
        job = scheduler.get_job("digest")
        assert isinstance(job.trigger, CronTrigger) and str(job.trigger.timezone) == "Europe/Paris"
        assert {f.name: str(f) for f in job.trigger.fields}["hour"] == "7"
        local = job.next_run_time.astimezone(job.trigger.timezone)
        assert (local.hour, local.minute) == (7, 30)
    finally:
        await server.close()
    assert not scheduler.running  # stopped with the app


def test_report_day_and_bounds() -> None:
    assert report_day(datetime(2026, 3, 2, 0, 30, tzinfo=UTC), "UTC") == date(2026, 3, 1)
    # 23:30 UTC on 1 March is already 2 March in Tokyo: the digest sent then covers 1 March there.
    assert report_day(datetime(2026, 3, 1, 23, 30, tzinfo=UTC), "Asia/Tokyo") == date(2026, 3, 1)
    since, until = day_bounds(date(2026, 3, 1), "Asia/Tokyo")
    assert since == datetime(2026, 2, 28, 15, 0, tzinfo=UTC) and until - since == timedelta(days=1)


async def test_a_digest_missed_while_no_replica_was_up_is_sent_at_start(
    running: Running, fake_slack: FakeSlack, clock: FakeClock, database_url: str, policy: Policy
) -> None:
    """The cron job does not fire for a time that passed while the process was down: a replica
    starting after today's 09:00 with today's digest unsent sends it (once, whoever starts), on a
    deployment that has sent one before; a new one, or one started before 09:00, waits."""
    assert await catch_up(running.svc) is None  # 08:00, and no digest ever sent
    clock.advance(2 * 3600)  # 10:00
    assert await catch_up(running.svc) is None  # a new deployment: its first digest is at 09:00
    assert await run_digest(running.svc) is not None  # today's scheduled digest (sent late, by hand)
    await wait_for_digests(fake_slack, clock, 1)
    clock.advance(24 * 3600)  # tomorrow 10:00: the process was down at 09:00
    replica = create_app(make_settings(database_url, fake_slack.url), policy=policy, clock=clock)
    server = TestServer(replica, host="127.0.0.1", port=0)
    await server.start_server()  # its start sends the missed digest
    try:
        posted = await wait_for_digests(fake_slack, clock, 2)
        assert "daily digest" in posted[-1].args["text"]
        assert await catch_up(running.svc) is None  # claimed: not twice
    finally:
        await server.close()
