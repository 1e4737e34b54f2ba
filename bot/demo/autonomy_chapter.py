"""`countersign demo`, chapter 5: autonomy that moves with evidence. An agent is overridden twice and
rolls back once, the brake trips, the owner sees why and resumes it, and leadership grants a promotion
from a suggestion; the next action runs under the new mode, and every step is in the ledger."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from typing import Any
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier
from sqlalchemy import select
from sqlmodel import col

from bot.actions.decisions import respond
from bot.demo.harness import Demo
from storage.models import LedgerEntry
from storage.queries import agents

AUTONOMY_EVENTS = ("action.result", "pause.started", "pause.ended", "grant.granted", "grant.revoked",
                   "grant.expired", "pause.refused", "resume.refused", "grant.refused")


async def slash(demo: Demo, user: str, text: str) -> dict[str, Any]:
    """`/ai-actions text` as Slack sends it (signed, form-encoded); the ephemeral answer."""
    assert demo.http is not None
    key = f"slash-{secrets.token_hex(4)}"
    body = urlencode({"command": "/ai-actions", "text": text, "user_id": user, "user_name": demo.handle(user),
                      "team_id": "T0DEMO", "channel_id": "C0SEARCH", "response_url": demo.slack.response_url(key),
                      "trigger_id": "t"})
    ts = str(int(time.time()))
    sig = SignatureVerifier(demo.secret).generate_signature(timestamp=ts, body=body)
    async with demo.http.post(f"{demo.url}/slack/events", data=body.encode(), headers={
            "Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": sig or ""}) as resp:
        assert resp.status == 200
    demo.echo(f"  @{demo.names[user]} types /ai-actions {text}")
    calls = await demo.until("the answer", lambda: asyncio.sleep(0, demo.slack.calls_to(f"response_url:{key}")))
    answer: dict[str, Any] = calls[0].args
    demo.show(f"only @{demo.names[user]} sees", answer)
    return answer


async def as_agent(demo: Demo, token: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    assert demo.http is not None
    async with demo.http.request(method, f"{demo.url}{path}", json=body,
                                 headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status, await resp.json()


async def notice(demo: Demo, channel: str, needle: str) -> None:
    found = await demo.until(f"'{needle}' in {channel}", lambda: asyncio.sleep(0, [
        c for c in demo.slack.posts(channel) if needle in json.dumps(c.args)]))
    demo.show(demo.names.get(channel, channel), found[-1].args)


async def chapter(demo: Demo) -> None:
    echo = demo.echo
    async with demo.svc.db.session() as session:
        _, token = await agents.create(session, "deployer")
        await session.commit()
    echo("  agent 'deployer' restarts search; policy brake: 2 overrides or 2 failed results within 1h")
    restart = {"kind": "executed", "service": "search", "action_type": "restart",
               "rationale": "p99 latency over 2 s for 5 minutes"}
    ids = []
    for i in range(3):
        status, a = await as_agent(demo, token, "POST", "/v1/actions",
                                   {**restart, "summary": f"Restarted search ({i + 1})"})
        echo(f"  deployer → POST /v1/actions (executed restart on search): {status}, mode {a['mode']}")
        ids.append(a["id"])
    status, result = await as_agent(demo, token, "POST", f"/v1/actions/{ids[1]}/result",
                                    {"result": "rolled_back", "detail": "the restart lost the warm cache; rolled back"})
    echo(f"  deployer → POST /v1/actions/{ids[1]}/result rolled_back: {status}")
    await notice(demo, "C0SEARCH", f"Action {ids[1]} rolled back")
    for action_id in (ids[0], ids[2]):
        done = await respond(demo.svc, action_id, user_id="U0SRE", user_name="sam", response="override",
                             via="slash", reason="the restart hid the real fault")
        assert done.accepted
        echo(f"  @Sam SRE overrides action {action_id}: \"the restart hid the real fault\"")
    await notice(demo, "U0SRE", "Automatic brake")
    await notice(demo, "C0LEADERS", "Automatic brake")
    status, held = await as_agent(demo, token, "GET", "/v1/pauses")
    echo(f"  deployer → GET /v1/pauses: {[p['target'] for p in held['items']]}")
    status, paused = await as_agent(demo, token, "POST", "/v1/actions", {**restart, "summary": "Restarted search (4)"})
    echo(f"  deployer → POST /v1/actions: {status}, mode {paused['mode']}, paused by {paused['paused']['by']}: "
         f"{paused['paused']['reason']}")
    await slash(demo, "U0EVE", "resume search")
    await slash(demo, "U0SRE", "resume search")

    echo("")
    echo("  Meanwhile remediator's scale_down proposals on checkout-api keep being approved:")
    for i in range(2):
        a = await demo.submit(kind="proposed", service="checkout-api", action_type="scale_down",
                              summary=f"Scale checkout-api down ({i + 2})", rationale="CPU under 20%")
        assert (await respond(demo.svc, a["id"], user_id="U0OWNER", user_name="olive", response="approve",
                              via="slash")).accepted
    answer = await slash(demo, "U0VP", "trust checkout-api")
    grant = next(e for b in answer["blocks"] if b["type"] == "actions" for e in b["elements"]
                 if e["action_id"] == "autonomy_grant")
    status, _, ms = await demo.signed({
        "type": "block_actions", "team": {"id": "T0DEMO"}, "api_app_id": "A0DEMO",
        "user": {"id": "U0VP", "username": "vic", "name": "vic"},
        "actions": [{"type": "button", "action_id": grant["action_id"], "block_id": "suggest-0",
                     "value": grant["value"], "text": grant["text"]}],
        "trigger_id": "t-grant", "response_url": demo.slack.response_url("vic-grant")})
    echo(f"  @Vic VP clicks [ Grant ]  (signed request: HTTP {status}, acked in {ms:.0f} ms)")
    await notice(demo, "C0CHECKOUT", "Promotion granted")
    after = await demo.submit(kind="proposed", service="checkout-api", action_type="scale_down",
                              summary="Scale checkout-api down (4)", rationale="CPU under 20%")
    echo(f"  the next scale_down runs under the grant: mode {after['mode']} (was approve); actions in flight keep "
         "their mode")
    async with demo.svc.db.session() as session:
        rows = (await session.execute(select(LedgerEntry).where(col(LedgerEntry.event).in_(AUTONOMY_EVENTS))
                                      .order_by(col(LedgerEntry.seq)))).scalars().all()
    echo("  ledger (countersign audit export): " + ", ".join(
        f"#{r.seq} {r.event}" + (f" ({r.data['kind']} {r.data['agent']})" if r.event.startswith("grant.g") else "")
        for r in rows))
