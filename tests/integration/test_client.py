"""The agent's side: countersign_client against the real app (real HTTP, the fake Slack, SQLite and
PostgreSQL). Approvals are made as the owner would make them: a signed Slack button click, or the
domain's respond() (the same function the Slack handlers and API call)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from jsonschema import Draft202012Validator

from bot.actions.decisions import respond
from bot.api.openapi import document
from bot.delivery import callbacks
from bot.demo.fakeslack import FakeSlack
from bot.policy.rules import Policy
from countersign_client import (
    CountersignClient,
    Denied,
    Refused,
    TimedOut,
    Unavailable,
    current_action,
    reports_action,
    requires_approval,
    verify_request,
    verify_signature,
)
from tests.conftest import Running
from tests.conftest import test_policy as parse_test_policy
from tests.policies import FAST

# FAST plus a tier that times out after one second, so a proposal expires within the test.
QUICK = FAST.replace("tiers:\n", "tiers:\n  quick:\n    escalation:\n      - {notify: owner, after: 0s}\n"
                     "    timeout: 1s\n", 1).replace(
    "services:\n", "services:\n  quick-api:\n    owner: U0OWNER\n    channel: C0QUICK\n    tier: quick\n", 1)


@pytest.fixture
def policy() -> Policy:
    return parse_test_policy(QUICK)


@pytest.fixture
async def client(running: Running) -> AsyncIterator[CountersignClient]:
    async with CountersignClient(running.url, running.token, backoff=0.01) as cs:
        yield cs


def click(action_id: int, user: str = "U0OWNER") -> dict[str, Any]:
    return {"type": "block_actions", "user": {"id": user, "name": "olive"}, "team": {"id": "T1"},
            "actions": [{"action_id": "approve", "value": str(action_id), "type": "button", "block_id": "b"}],
            "trigger_id": "t1"}


async def paged_action(running: Running, fake_slack: FakeSlack) -> int:
    """Wait for the owner's DM, then return the pending action it is about."""
    await fake_slack.wait_for(lambda: fake_slack.posts("U0OWNER"))
    _, page = await running.get("/v1/actions?status=pending")
    assert page["items"], page
    return int(page["items"][0]["id"])


RUN: dict[str, Any] = {"service": "checkout-api", "action_type": "rollback", "rationale": "5xx at 12% since deploy 812"}


async def test_approve_click_runs_the_function(running: Running, fake_slack: FakeSlack,
                                               client: CountersignClient) -> None:
    ran: list[dict[str, Any] | None] = []
    running.runtime.waiters.recheck = 30  # only the decision's own notification can wake us

    @requires_approval(summary="Roll back checkout-api to {version}", client=client, timeout=20, **RUN)
    async def rollback(version: str) -> str:
        ran.append(current_action())
        return f"rolled back to {version}"

    task: asyncio.Task[Any] = asyncio.create_task(rollback("v811"))  # type: ignore[arg-type]
    action_id = await paged_action(running, fake_slack)
    assert fake_slack.posts("U0OWNER")[0].args["text"].count("Roll back checkout-api to v811")
    await asyncio.sleep(0.2)
    assert not task.done() and not ran  # it waits for the human
    clicked = time.monotonic()
    resp = await running.interact({**click(action_id), "response_url": fake_slack.response_url()})
    assert resp.status == 200
    assert await asyncio.wait_for(task, 10) == "rolled back to v811"
    woke = time.monotonic() - clicked
    assert woke < 0.9, f"the long poll answered {woke:.2f}s after the click: not woken by the decision"
    assert ran[0] is not None and ran[0]["id"] == action_id and ran[0]["status"] == "approved"
    assert ran[0]["decision"]["by"]["slack_user_id"] == "U0OWNER"
    assert ran[0]["decision"]["via"] == "button"


async def test_override_raises_denied_with_the_reason(running: Running, fake_slack: FakeSlack,
                                                      client: CountersignClient) -> None:
    ran = []

    @requires_approval(summary="Scale checkout-api down", client=client, timeout=20, **RUN)
    async def scale() -> None:
        ran.append(True)

    task: asyncio.Task[Any] = asyncio.create_task(scale())  # type: ignore[arg-type]
    action_id = await paged_action(running, fake_slack)
    result = await respond(running.svc, action_id, user_id="U0OWNER", user_name="olive", response="override",
                           via="api", reason="not during the sale")
    assert result.accepted, result
    with pytest.raises(Denied) as denied:
        await asyncio.wait_for(task, 10)
    assert not ran
    assert denied.value.action_id == action_id and denied.value.action["status"] == "denied"
    assert "not during the sale" in str(denied.value) and "olive (U0OWNER)" in str(denied.value)


async def test_client_stops_waiting_and_raises_timed_out(running: Running, client: CountersignClient) -> None:
    ran = []

    @requires_approval(summary="Restart checkout-api", client=client, timeout=0.3, **RUN)
    async def restart() -> None:
        ran.append(True)

    started = time.monotonic()
    with pytest.raises(TimedOut) as timed_out:
        await restart()
    assert 0.3 <= time.monotonic() - started < 3
    assert timed_out.value.still_pending and not ran
    assert (await client.get(timed_out.value.action_id or 0))["status"] == "pending"


async def test_escalation_timeout_raises_timed_out_expired(running: Running,
                                                           client: CountersignClient) -> None:
    ran = []
    running.runtime.waiters.recheck = 30  # the sweeper's own notification must wake us

    @requires_approval(service="quick-api", action_type="restart", summary="Restart quick-api",
                       rationale="memory leak", client=client, timeout=20)
    async def restart() -> None:
        ran.append(True)

    started = time.monotonic()
    with pytest.raises(TimedOut) as timed_out:
        await restart()
    assert time.monotonic() - started < 5
    action = timed_out.value.action
    assert not timed_out.value.still_pending and not ran
    assert action["status"] == "expired" and action["decision"]["outcome"] == "denied"
    assert action["decision"]["accountability"] == "default" and action["decision"]["via"] == "timeout"


async def test_forbidden_raises_refused_and_nothing_runs(running: Running, client: CountersignClient) -> None:
    ran = []

    @requires_approval(service="checkout-api", action_type="drop_database", summary="Drop the orders table",
                       rationale="disk full", client=client)
    async def drop() -> None:
        ran.append(True)

    with pytest.raises(Refused) as refused:
        await drop()
    assert refused.value.status == 403 and refused.value.code == "forbidden" and not ran


async def test_autonomous_proposal_runs_at_once(running: Running, client: CountersignClient) -> None:
    @requires_approval(service="batch", action_type="scale_up", summary="Add 2 workers", rationale="queue 5k",
                       client=client, timeout=0.1)
    async def scale_up() -> str | None:
        action = current_action()
        return action["status"] if action else None

    assert await scale_up() == "recorded"


async def test_retry_after_a_lost_answer_pages_once(running: Running, fake_slack: FakeSlack) -> None:
    """The first POST reaches the server but its answer is lost (the proxy answers 502): the client
    retries with the same Idempotency-Key and gets the first action back; the owner gets one DM."""
    seen_keys: list[str] = []

    async def lossy_proxy(request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k in ("Authorization", "Idempotency-Key",
                                                                      "Content-Type")}
        seen_keys.append(request.headers["Idempotency-Key"])
        async with running.http.post(f"{running.url}{request.path}", data=body, headers=headers) as resp:
            forwarded = await resp.read()
        if len(seen_keys) == 1:
            return web.json_response({"error": {"code": "bad_gateway", "message": "lost"}}, status=502)
        return web.Response(body=forwarded, status=resp.status, content_type="application/json")

    proxy_app = web.Application()
    proxy_app.router.add_post("/v1/actions", lossy_proxy)
    proxy = TestServer(proxy_app, host="127.0.0.1", port=0)
    await proxy.start_server()
    try:
        async with CountersignClient(str(proxy.make_url("")), running.token, backoff=0.01) as cs:
            created = await cs.propose(summary="Scale checkout-api to 8 pods", **RUN)
    finally:
        await proxy.close()
    assert len(seen_keys) == 2 and seen_keys[0] == seen_keys[1]
    await fake_slack.wait_for(lambda: fake_slack.posts("U0OWNER"))
    await asyncio.sleep(0.5)  # room for a duplicate page to show up, if there were one
    assert len(fake_slack.posts("U0OWNER")) == 1
    _, page = await running.get("/v1/actions")
    assert [a["id"] for a in page["items"]] == [created["id"]]


async def test_unreachable_server_raises_unavailable_after_retries(running: Running) -> None:
    async with CountersignClient("http://127.0.0.1:9", running.token, retries=2, backoff=0.01) as cs:
        with pytest.raises(Unavailable, match="after 3 attempts"):
            await cs.get(1)


async def test_reports_action_success_and_failure(running: Running, client: CountersignClient) -> None:
    @reports_action(service="search", action_type="restart", summary="Restarted {node}: {result}",
                    rationale="heap at 95%", client=client)
    async def restart(node: str, fail: bool = False) -> str:
        if fail:
            raise RuntimeError("node unreachable")
        return "healthy"

    assert await restart("search-3") == "healthy"
    with pytest.raises(RuntimeError, match="node unreachable"):
        await restart("search-4", fail=True)
    page = await client.list_actions(service="search")
    failed, ok = page["items"]
    assert ok["kind"] == "executed" and ok["mode"] == "acknowledge" and ok["status"] == "pending"
    assert ok["summary"] == "Restarted search-3: healthy" and ok["metadata"]["result"] == "succeeded"
    assert ok["executed_at"] is not None
    assert failed["metadata"]["result"] == "failed"
    assert failed["metadata"]["error"] == "RuntimeError: node unreachable"
    assert "FAILED" in failed["summary"]


def documented(status: int, body: Any) -> None:
    """The answer fits the server's own OpenAPI document for the decision endpoint."""
    doc = document("http://test")
    responses = doc["paths"]["/v1/actions/{id}/decision"]["get"]["responses"]
    schema = responses[str(status)]["content"]["application/json"]["schema"]
    errors = list(Draft202012Validator({**schema, "components": doc["components"]}).iter_errors(body))
    assert not errors, errors[0]


async def test_decision_endpoint(running: Running, client: CountersignClient) -> None:
    created = await client.propose(summary="Scale down", **RUN)
    for wait in ("abc", "-1", "nan"):
        status, body = await running.get(f"/v1/actions/{created['id']}/decision?wait={wait}")
        assert status == 400 and body["error"]["code"] == "invalid_request", (wait, body)
        documented(status, body)
    status, body = await running.get("/v1/actions/999999/decision?wait=1")
    assert status == 404
    documented(status, body)
    started = time.monotonic()
    status, body = await running.get(f"/v1/actions/{created['id']}/decision?wait=0.3")
    assert status == 200 and body["status"] == "pending" and body["decision"] is None
    assert 0.3 <= time.monotonic() - started < 2
    documented(status, body)
    action = await client.wait_for_decision(created["id"], timeout=0)
    assert action["decision"] is None
    await respond(running.svc, created["id"], user_id="U0OWNER", user_name="olive", response="approve",
                  via="api")
    started = time.monotonic()
    status, body = await running.get(f"/v1/actions/{created['id']}/decision?wait=60")
    assert time.monotonic() - started < 1  # decided: answered at once, whatever the wait
    assert status == 200 and body["decision"]["outcome"] == "approved"
    documented(status, body)


async def test_decision_on_another_replica_is_seen_by_the_recheck(running: Running,
                                                                  client: CountersignClient) -> None:
    """No in-process notification (as when another replica decides): the 1 s re-check finds it."""
    created = await client.propose(summary="Scale down", **RUN)
    waiter = asyncio.create_task(client.wait_for_decision(created["id"], timeout=10))
    await asyncio.sleep(0.2)
    listeners = running.svc.decision_listeners
    saved = list(listeners)
    listeners.clear()
    try:
        await respond(running.svc, created["id"], user_id="U0OWNER", user_name="olive", response="approve",
                      via="api")
        decided = time.monotonic()
        action = await asyncio.wait_for(waiter, 5)
    finally:
        listeners.extend(saved)
    assert action["status"] == "approved"
    assert time.monotonic() - decided < 2.5


async def test_signed_callback_verifies_with_the_helper(running: Running, fake_slack: FakeSlack,
                                                        client: CountersignClient) -> None:
    received: asyncio.Queue[tuple[bytes, dict[str, str]]] = asyncio.Queue()

    async def receive(request: web.Request) -> web.Response:
        await received.put((await request.read(), dict(request.headers)))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/decided", receive)
    receiver = TestServer(app, host="127.0.0.1", port=0)
    await receiver.start_server()
    try:
        token, secret = await running.add_agent("with-callback")
        _, other_secret = await running.add_agent("another-agent")
        async with CountersignClient(running.url, token) as cs:
            created = await cs.propose(summary="Scale down", callback_url=str(receiver.make_url("/decided")),
                                       **RUN)
        await respond(running.svc, created["id"], user_id="U0OWNER", user_name="olive", response="approve",
                      via="api")
        body, headers = await asyncio.wait_for(received.get(), 10)
    finally:
        await receiver.close()
    assert verify_request(secret, headers, body)
    assert json.loads(body)["decision"]["outcome"] == "approved"
    assert not verify_request(other_secret, headers, body)  # another agent's secret
    assert not verify_request(secret, headers, body.replace(b"approved", b"denied"))


def test_signature_helper_matches_the_server() -> None:
    body = b'{"action_id":1,"decision":{"outcome":"approved"}}'
    headers = callbacks.sign("s3cret", body, 1_700_000_000)
    ts, sig = headers["X-Countersign-Timestamp"], headers["X-Countersign-Signature"]
    assert verify_signature("s3cret", body, ts, sig, now=1_700_000_010)
    assert verify_signature("s3cret", body.decode(), int(ts), sig, now=1_700_000_010)
    assert not verify_signature("s3cret", body, ts, sig, now=1_700_000_000 + 301)  # replayed later
    assert not verify_signature("other", body, ts, sig, now=1_700_000_010)
    assert not verify_signature("s3cret", body + b" ", ts, sig, now=1_700_000_010)
    assert not verify_signature("s3cret", body, "not-a-number", sig)
    assert not verify_signature("s3cret", body, ts, "", now=1_700_000_010)
    lower = {k.lower(): v for k, v in headers.items()}
    assert verify_request("s3cret", lower, body, now=1_700_000_010)


async def test_decorator_misuse_fails_before_anything_is_sent() -> None:
    cs = CountersignClient("http://127.0.0.1:9", "token", retries=0)
    with pytest.raises(TypeError, match="async def"):
        requires_approval(client=cs, **RUN)(lambda: None)  # type: ignore[arg-type,return-value]

    @requires_approval(summary="Roll back to {versoin}", client=cs, **RUN)
    async def rollback(version: str) -> None:
        raise AssertionError("must not run")

    with pytest.raises(TypeError, match="versoin"):
        await rollback("v811")
    await cs.close()
