"""The whole flow with no Slack workspace: the real application (SQLite in a temporary directory)
talks to the built-in fake Slack; an agent submits actions over the HTTP API; the owner's clicks
are sent as Slack sends them (signed); the agent's callback endpoint verifies the signed decision;
and the responsibility records are printed. Finishes by itself in a few seconds.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from slack_sdk.signature import SignatureVerifier

from bot.actions.record import action_record
from bot.app import create_app
from bot.config import Settings
from bot.delivery import callbacks
from bot.demo.fakeslack import FakeSlack
from bot.demo.text import card_to_text
from bot.policy.rules import parse_policy
from storage.queries import actions as repo
from storage.queries import agents

Echo = Callable[[str], Any]

POLICY = """
leadership: {channel: C0LEADERS, users: [U0VP]}
tiers:
  tier1:
    escalation:
      - {notify: owner, after: 0s}
      - {notify: secondary, after: 5m}
      - {notify: leadership, after: 15m}
    remind_every: 2m
    timeout: 30m
    on_timeout: deny
services:
  checkout-api: {owner: U0OWNER, secondary: dana@example.com, channel: C0CHECKOUT, tier: tier1}
  search: {owner: U0SRE, channel: C0SEARCH}
  batch: {owner: U0OWNER, channel: C0BATCH}
rules:
  - {match: {action_type: [drop_database, delete_data]}, mode: forbidden}
  - {match: {tier: tier1, environment: production}, mode: approve}
  - {match: {action_type: [rollback, restart]}, mode: acknowledge}
  - {mode: autonomous}
autonomy:
  promote: {min_decisions: 3, min_approval_rate: 0.9, max_failed_results: 0}
  demote: {max_override_rate: 0.9, max_failed_results: 3, window: 7d}
  grant_for: 30d
brake: {max_overrides: 2, max_failed_results: 2, window: 1h}
"""
PEOPLE = {
    "U0OWNER": ("olive", "Olive Owner", "olive@example.com"),
    "U0DANA": ("dana", "Dana", "dana@example.com"),
    "U0VP": ("vic", "Vic VP", "vic@example.com"),
    "U0SRE": ("sam", "Sam SRE", "sam@example.com"),
    "U0EVE": ("eve", "Eve Elsewhere", "eve@example.com"),
}
CHANNELS = {"C0CHECKOUT": "checkout", "C0SEARCH": "search", "C0BATCH": "batch", "C0LEADERS": "leadership"}
EVIDENCE = [
    {"label": "CPU, last 3h", "url": "https://grafana.example.com/d/cpu?svc=checkout"},
    {"label": "Cost report", "url": "https://finops.example.com/r/checkout"},
]


class Demo:
    def __init__(self, echo: Echo, workdir: Path) -> None:
        self.echo, self.workdir = echo, workdir
        self.slack = FakeSlack()
        self.slack.team_id = "T0DEMO"  # the workspace the story's clicks come from
        self.secret = secrets.token_hex(16)
        self.names = {uid: p[1] for uid, p in PEOPLE.items()} | CHANNELS
        self.received: list[tuple[bytes, dict[str, str]]] = []
        self.runners: list[web.AppRunner] = []
        self.url = self.callback_url = self.token = self.callback_secret = ""
        self.http: aiohttp.ClientSession | None = None

    # --- plumbing ------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.slack.start()
        for uid, (handle, real, email) in PEOPLE.items():
            self.slack.add_user(uid, email, real)
            self.slack.users[uid]["name"] = handle
        settings = Settings(
            SLACK_BOT_TOKEN="xoxb-demo",
            SLACK_SIGNING_SECRET=self.secret,
            SLACK_API_URL=self.slack.url,
            DATABASE_URL=f"sqlite+aiosqlite:///{self.workdir}/demo.db",
            COUNTERSIGN_TICK_SECONDS=0.02,
            COUNTERSIGN_CALLBACK_ALLOW="127.0.0.1",  # the demo agent's callback endpoint is local
            _env_file=None,
        )  # type: ignore[call-arg]
        self.app = create_app(settings, policy=parse_policy(POLICY, "demo-policy.yml"))
        self.url = await self._serve(self.app)
        settings.public_url = self.url
        receiver = web.Application()
        receiver.router.add_post("/callback", self._on_callback)
        self.callback_url = await self._serve(receiver) + "/callback"
        self.http = aiohttp.ClientSession()
        from bot.api.routes import SERVICES

        self.svc = self.app[SERVICES]
        async with self.svc.db.session() as session:
            agent, self.token = await agents.create(session, "remediator")
            self.callback_secret = agent.callback_secret
            await session.commit()

    async def _serve(self, app: web.Application) -> str:
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.runners.append(runner)
        return f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self.http is not None:
            await self.http.close()
        for runner in reversed(self.runners):
            await runner.cleanup()
        await self.slack.stop()

    async def _on_callback(self, request: web.Request) -> web.Response:
        self.received.append((await request.read(), dict(request.headers)))
        return web.Response(status=204)

    async def until(self, what: str, check: Callable[[], Awaitable[Any]], within: float = 10.0) -> Any:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            result = await check()
            if result:
                return result
            await asyncio.sleep(0.02)
        raise RuntimeError(f"demo: gave up waiting for {what}")

    # --- acting as the agent and as Slack ------------------------------------------------------
    async def submit(self, **body: Any) -> dict[str, Any]:
        assert self.http is not None
        async with self.http.post(
            f"{self.url}/v1/actions", json=body, headers={"Authorization": f"Bearer {self.token}"}
        ) as resp:
            answer = await resp.json()
        shown = (
            f"{answer['status']}, mode {answer['mode']}" if resp.status == 201 else answer["error"]["message"]
        )
        self.echo(
            f"  agent → POST /v1/actions ({body['kind']} {body['action_type']} on {body['service']}): "
            f"{resp.status}, {shown}"
        )
        return answer

    async def signed(self, payload: dict[str, Any]) -> tuple[int, str, float]:
        assert self.http is not None
        raw = aiohttp.helpers.quote(json.dumps(payload), safe="")  # type: ignore[attr-defined]
        body = f"payload={raw}"
        ts = str(int(time.time()))
        signature = SignatureVerifier(self.secret).generate_signature(timestamp=ts, body=body)
        started = time.perf_counter()
        async with self.http.post(
            f"{self.url}/slack/events",
            data=body.encode(),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Slack-Request-Timestamp": ts,
                "X-Slack-Signature": signature or "",
            },
        ) as resp:
            return resp.status, await resp.text(), (time.perf_counter() - started) * 1000

    async def card(self, channel: str, action_id: int) -> tuple[str, str]:
        """Wait for the card about `action_id` in `channel`; (channel, ts) of that copy."""

        async def copy() -> tuple[str, str] | None:
            async with self.svc.db.session() as session:
                for m in await repo.slack_messages(session, action_id):
                    if m.channel == channel:
                        return m.channel, m.ts
            return None

        return await self.until(f"the card for action {action_id} in {channel}", copy)

    def handle(self, user: str) -> str:
        return PEOPLE[user][0]

    def show(self, where: str, message: dict[str, Any]) -> None:
        self.echo(f"  Slack → {where}:")
        self.echo(card_to_text(message, self.names))

    async def click(self, user: str, key: tuple[str, str], label: str) -> None:
        message = self.slack.messages[key]
        button = next(
            e
            for b in message["blocks"]
            if b["type"] == "actions"
            for e in b["elements"]
            if e["text"]["text"] == label
        )
        handle = self.handle(user)
        status, _, ms = await self.signed(
            {
                "type": "block_actions",
                "team": {"id": "T0DEMO"},
                "api_app_id": "A0DEMO",
                "user": {"id": user, "username": handle, "name": handle},
                "channel": {"id": key[0]},
                "container": {"type": "message", "channel_id": key[0], "message_ts": key[1]},
                "actions": [
                    {
                        "type": "button",
                        "action_id": button["action_id"],
                        "block_id": "decide",
                        "value": button["value"],
                        "text": button["text"],
                    }
                ],
                "trigger_id": f"trigger-{secrets.token_hex(4)}",
                "response_url": self.slack.response_url(handle),
            }
        )
        self.echo(
            f"  @{self.names[user]} clicks [ {label} ]  (signed request: HTTP {status}, acked in {ms:.0f} ms)"
        )

    async def decided(self, action_id: int) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            async with self.svc.db.session() as session:
                record = await action_record(session, action_id)
            return record if record and record["decision"] else None

        return await self.until(f"a decision on action {action_id}", check)

    async def updated(self, action_id: int, key: tuple[str, str]) -> None:
        def done() -> bool:
            return bool(self.slack.calls_to("chat.update", channel=key[0], ts=key[1]))

        await self.until("the card update", lambda: asyncio.sleep(0, done()))
        async with self.svc.db.session() as session:
            copies = len(await repo.slack_messages(session, action_id))
        self.echo(f"  Slack → chat.update on every copy of the card ({copies}); the owner's now reads:")
        self.echo(card_to_text(self.slack.messages[key], self.names))


def verify_callbacks(demo: Demo) -> list[str]:
    """What the agent's endpoint saw, each checked with the agent's secret."""
    lines = []
    for raw, headers in demo.received:
        ok = callbacks.verify(
            demo.callback_secret, raw, headers["X-Countersign-Timestamp"], headers["X-Countersign-Signature"]
        )
        body = json.loads(raw)
        d = body["decision"]
        lines.append(
            f"  agent ← POST {demo.callback_url}: action {body['action_id']} {d['outcome']} by "
            f"{d['by']['slack_user_id']} ({d['accountability']}, via {d['via']}); "
            f"X-Countersign-Signature {'verified ✔' if ok else 'INVALID ✘'}"
        )
    return lines


__all__ = ["CHANNELS", "EVIDENCE", "Demo", "verify_callbacks"]
