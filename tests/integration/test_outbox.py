"""Nothing lost when Slack or the network fails: outages, 429s, permanent errors, callbacks, the CLI.

Everything runs against the real app over HTTP and the fake Slack (bot/fakeslack.py) injecting
faults; both SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import socket
import subprocess
import time
from typing import Any

from aiohttp import web
from sqlmodel import col, select

from bot.delivery import callbacks
from bot.demo.fakeslack import Call, FakeSlack, Fault
from storage.models import DeliveryAttempt, EscalationStep, LedgerEntry, OutboxMessage
from tests.conftest import Running, proposal
from tests.slack_helpers import until as _until

# Outages and backoff take longer than a click: wait up to 20 s by default.
until = functools.partial(_until, within=20.0)


def restart(tag: str, **over: Any) -> dict[str, Any]:
    """An executed restart on `search` (acknowledge mode, owner only): one DM and one channel card."""
    body = {
        "kind": "executed",
        "service": "search",
        "action_type": "restart",
        "summary": f"Restarted search worker {tag}",
        "rationale": "worker stuck on a GC pause",
    }
    body.update(over)
    return body


def about(calls: list[Call], tag: str) -> list[Call]:
    return [c for c in calls if tag in json.dumps(c.args)]


async def rows(running: Running, **where: Any) -> list[OutboxMessage]:
    async with running.svc.db.session() as session:
        stmt = select(OutboxMessage).order_by(col(OutboxMessage.id))
        for name, value in where.items():
            stmt = stmt.where(getattr(OutboxMessage, name) == value)
        return list((await session.execute(stmt)).scalars())


async def attempts(
    running: Running, outbox_id: int | None = None, ok: bool | None = None
) -> list[DeliveryAttempt]:
    async with running.svc.db.session() as session:
        stmt = select(DeliveryAttempt).order_by(col(DeliveryAttempt.id))
        if outbox_id is not None:
            stmt = stmt.where(DeliveryAttempt.outbox_id == outbox_id)
        if ok is not None:
            stmt = stmt.where(DeliveryAttempt.ok == ok)
        return list((await session.execute(stmt)).scalars())


async def drained(running: Running) -> bool:
    return not [r for r in await rows(running) if r.status in ("pending", "sending")]


async def health(running: Running) -> dict[str, Any]:
    async with running.http.get(f"{running.url}/healthz") as resp:
        return await resp.json()


async def metric(running: Running, name: str) -> float:
    async with running.http.get(f"{running.url}/metrics") as resp:
        text = await resp.text()
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name)]
    return sum(values)


async def acknowledge(running: Running, action_id: int, user: str = "U0SEARCH") -> None:
    resp = await running.interact(
        {
            "type": "block_actions",
            "user": {"id": user, "name": user.lower()},
            "team": {"id": "T1"},
            "actions": [
                {"action_id": "acknowledge", "value": str(action_id), "type": "button", "block_id": "b"}
            ],
            "trigger_id": "t1",
        }
    )
    assert resp.status == 200


def has_buttons(message: dict[str, Any]) -> bool:
    return any(b.get("type") == "actions" for b in message.get("blocks") or [])


async def test_outage_burst_then_recovery_delivers_everything_once(
    running: Running, fake_slack: FakeSlack
) -> None:
    fake_slack.add_user("U0SEARCH", "search@example.com", "Sol Search")
    fake_slack.down = True
    tags = [f"tok{i:02d}x" for i in range(6)]
    ids: dict[str, int] = {}
    for tag in tags:
        status, body = await running.submit(restart(tag))
        assert status == 201, body  # accepted while Slack is down
        ids[tag] = body["id"]

    # The relay notices the outage: /healthz says degraded and why, /metrics shows the backlog.
    report = await until(lambda: _degraded(running))
    assert "Slack failing" in report["checks"]["deliveries"]
    assert await metric(running, "countersign_outbox_backlog ") >= 2 * len(tags)

    # Decisions taken during the outage are not lost.
    for tag in tags[:2]:
        await acknowledge(running, ids[tag])
    for tag in tags[:2]:
        await until(lambda tag=tag: _status_is(running, ids[tag], "acknowledged"))  # type: ignore[misc]

    # While Slack stays down the relay probes it, it does not hammer it with the backlog.
    failed_before = len(await attempts(running, ok=False))
    assert failed_before <= 2 * len(tags)
    await asyncio.sleep(1.5)
    assert len(await attempts(running, ok=False)) == failed_before
    assert await metric(running, "countersign_outbox_oldest_age_seconds") > 1.0

    fake_slack.down = False
    await until(lambda: drained(running), within=30)
    assert not await rows(running, status="failed")
    for tag in tags:  # every page and every channel card exactly once
        assert len(about(fake_slack.posts("U0SEARCH"), tag)) == 1, tag
        assert len(about(fake_slack.posts("C0SEARCH"), tag)) == 1, tag
    # Every card is current: the decided ones lost their buttons, the others kept them.
    for tag in tags:
        for purpose in ("card:dm:owner", "card:channel"):
            [card] = [r for r in await rows(running, action_id=ids[tag], purpose=purpose)]
            message = fake_slack.messages[(card.result["channel"], card.result["ts"])]  # type: ignore[index]
            assert has_buttons(message) == (tag not in tags[:2]), (tag, purpose)
    assert (await health(running))["status"] == "ok"
    assert await metric(running, "countersign_outbox_backlog ") == 0


async def _status_is(running: Running, action_id: int, status: str) -> bool:
    _, got = await running.get(f"/v1/actions/{action_id}")
    return bool(got["status"] == status)


async def _degraded(running: Running) -> dict[str, Any] | None:
    report = await health(running)
    return report if report["status"] == "degraded" else None


async def test_429_retry_after_is_honoured_and_other_channels_go_on(
    running: Running, fake_slack: FakeSlack
) -> None:
    fake_slack.inject(Fault(method="chat.postMessage", channel="C0SEARCH", status=429, retry_after=2))
    status, body = await running.submit(restart("tok429"))
    assert status == 201
    started = time.monotonic()
    await fake_slack.wait_for(lambda: about(fake_slack.posts("U0SEARCH"), "tok429"))
    assert time.monotonic() - started < 1.5  # the DM did not wait for the rate-limited channel
    await until(lambda: drained(running))
    [card] = await rows(running, action_id=body["id"], purpose="card:channel")
    first, second = await attempts(running, card.id)
    assert (first.ok, first.status_code, second.ok) == (False, 429, True)
    assert (second.at - first.at).total_seconds() >= 1.95  # not before Retry-After
    assert len(about(fake_slack.posts("C0SEARCH"), "tok429")) == 1
    assert await metric(running, "countersign_slack_rate_limited_total") == 1


async def test_permanent_error_fails_the_page_and_escalates_at_once(
    running: Running, fake_slack: FakeSlack
) -> None:
    fake_slack.inject(
        Fault(method="chat.postMessage", channel="U0OWNER", error="channel_not_found", times=None)
    )
    status, body = await running.submit(proposal())
    assert status == 201
    action_id = body["id"]

    async def failed_page() -> list[OutboxMessage]:
        return [
            r
            for r in await rows(running, action_id=action_id, purpose="card:dm:owner")
            if r.status == "failed"
        ]

    [page] = await until(failed_page)
    # Fail closed: the secondary is paged now, not at its 2 s step.
    await fake_slack.wait_for(lambda: fake_slack.posts("U0DANA"))
    async with running.svc.db.session() as session:
        steps = {
            s.step: s
            for s in (
                await session.execute(select(EscalationStep).where(EscalationStep.action_id == action_id))
            ).scalars()
        }
        failures = list(
            (
                await session.execute(
                    select(LedgerEntry).where(
                        LedgerEntry.action_id == action_id, LedgerEntry.event == "page.failed"
                    )
                )
            ).scalars()
        )
    assert (steps["page:secondary"].fired_at - steps["page:owner"].fired_at).total_seconds() < 1.5
    assert failures and failures[0].data["reason"] == "channel_not_found"
    await asyncio.sleep(1.0)
    [only] = await attempts(running, page.id)  # recorded once, never retried
    assert (only.ok, only.error) == (False, "channel_not_found")
    assert (
        await metric(running, 'countersign_outbox_errors_total{error="channel_not_found",permanent="true"')
        >= 1
    )
    assert await metric(running, "countersign_outbox_failed ") >= 1  # surfaced, for alerting


async def test_callback_endpoint_down_then_up_is_delivered_once(
    running: Running, fake_slack: FakeSlack
) -> None:
    fake_slack.add_user("U0SEARCH", "search@example.com", "Sol Search")
    token, secret = await running.add_agent("caller")
    with socket.socket() as sock:  # a port nobody listens on yet: connections are refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    status, body = await running.submit(
        restart("tokcb", callback_url=f"http://127.0.0.1:{port}/hook"), token=token
    )
    assert status == 201
    await acknowledge(running, body["id"])

    async def refused_once() -> list[DeliveryAttempt]:
        found = await rows(running, target="callback")
        return await attempts(running, found[0].id) if found else []

    await until(refused_once)
    received: list[tuple[int, bytes, dict[str, str]]] = []

    async def hook(request: web.Request) -> web.Response:
        answer = 500 if not received else 200  # first a server error, then success
        received.append((answer, await request.read(), dict(request.headers)))
        return web.Response(status=answer)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await until(lambda: _callback_done(running), within=30)
    finally:
        await runner.cleanup()
    [row] = await rows(running, target="callback")
    log = await attempts(running, row.id)
    assert [a.ok for a in log] == [False] * (len(log) - 1) + [True]
    assert any(a.status_code == 500 for a in log) and any(
        a.status_code is None for a in log
    )  # 500 and refused
    assert [a for a, _, _ in received].count(200) == 1
    _, raw, headers = received[-1]
    assert callbacks.verify(
        secret, raw, headers["X-Countersign-Timestamp"], headers["X-Countersign-Signature"]
    )
    assert json.loads(raw)["status"] == "acknowledged"
    async with running.svc.db.session() as session:
        delivered = list(
            (
                await session.execute(select(LedgerEntry).where(LedgerEntry.event == "callback.delivered"))
            ).scalars()
        )
    assert len(delivered) == 1


async def _callback_done(running: Running) -> bool:
    return any(r.status == "done" for r in await rows(running, target="callback"))


def cli(database_url: str, *args: str, cwd: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "COUNTERSIGN_"))}
    env["DATABASE_URL"] = database_url
    return subprocess.run(
        ["countersign", "deliveries", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=60
    )


async def test_deliveries_cli_lists_and_retries_failed(
    running: Running, fake_slack: FakeSlack, database_url: str, tmp_path: Any
) -> None:
    fake_slack.inject(Fault(method="chat.postMessage", channel="C0SEARCH", error="not_in_channel"))
    status, body = await running.submit(restart("tokcli"))
    assert status == 201

    async def failed() -> list[OutboxMessage]:
        return await rows(running, status="failed")

    [row] = await until(failed)
    listed = await asyncio.to_thread(cli, database_url, "list", "--failed", "--json", cwd=str(tmp_path))
    assert listed.returncode == 0, listed.stderr
    [item] = json.loads(listed.stdout)
    assert (item["id"], item["last_error"], item["action_id"]) == (row.id, "not_in_channel", body["id"])
    text = await asyncio.to_thread(cli, database_url, "list", "--failed", "--attempts", cwd=str(tmp_path))
    assert "not_in_channel" in text.stdout and "#1" in text.stdout

    nothing = await asyncio.to_thread(cli, database_url, "retry", cwd=str(tmp_path))
    assert nothing.returncode != 0  # ids or --all
    retried = await asyncio.to_thread(cli, database_url, "retry", str(row.id), cwd=str(tmp_path))
    assert retried.returncode == 0 and "1 delivery queued again" in retried.stdout, retried.stderr
    await until(lambda: drained(running))
    assert len(about(fake_slack.posts("C0SEARCH"), "tokcli")) == 1
    log = await attempts(running, row.id)
    assert [a.ok for a in log] == [False, True]  # both attempts kept
    again = await asyncio.to_thread(cli, database_url, "retry", "--all", cwd=str(tmp_path))
    assert again.returncode == 0 and "0 deliveries" in again.stdout


async def test_recovery_is_noticed_even_if_slack_does_not_know_api_test(
    running: Running, fake_slack: FakeSlack
) -> None:
    """A Slack (or proxy) that answers the breaker's probe with `unknown_method` is reachable:
    the backlog must go out, not wait for a probe that can never succeed."""
    fake_slack.add_user("U0SEARCH", "search@example.com", "Sol Search")
    fake_slack.inject(Fault(method="api.test", error="unknown_method", times=None))
    fake_slack.down = True
    tags = [f"probe{i}x" for i in range(4)]
    for tag in tags:
        status, body = await running.submit(restart(tag))
        assert status == 201, body
    report = await until(lambda: _degraded(running))
    assert "Slack failing" in report["checks"]["deliveries"]
    fake_slack.down = False
    await until(lambda: drained(running), within=30)
    for tag in tags:
        assert len(about(fake_slack.posts("U0SEARCH"), tag)) == 1, tag


async def test_a_callback_given_up_after_24_hours_is_in_the_audit_trail(running: Running) -> None:
    """After a day of refused connections the callback stops, and the ledger says the agent was never told."""
    from datetime import UTC, datetime, timedelta

    from bot.actions.decisions import respond
    from bot.clock import FakeClock

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    status, body = await running.submit(restart("cbgone", callback_url=f"http://127.0.0.1:{port}/cb"))
    assert status == 201, body
    result = await respond(running.svc, body["id"], user_id="U0SEARCH", user_name="sol",
                           response="acknowledge", via="api")
    assert result.accepted
    [callback] = await until(lambda: rows(running, target="callback"))
    await until(lambda: attempts(running, outbox_id=callback.id, ok=False))
    running.svc.clock = FakeClock(datetime.now(UTC) + timedelta(hours=25))

    async def given_up() -> list[LedgerEntry]:
        async with running.svc.db.session() as session:
            found = await session.execute(select(LedgerEntry).where(LedgerEntry.event == "callback.failed"))
            return list(found.scalars())

    [entry] = await until(given_up)
    assert entry.action_id == body["id"] and entry.data["url"].endswith("/cb")
    [row] = await rows(running, target="callback")
    assert row.status == "failed"
