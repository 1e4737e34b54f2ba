"""Shared fixtures: a fresh database per test (SQLite file and a new PostgreSQL database), the fake
Slack Web API, and the running application reached over real HTTP.

PostgreSQL (COUNTERSIGN_TEST_PG, default 127.0.0.1:5432) is required in CI (CI=true) and when
COUNTERSIGN_TEST_PG is set; otherwise, if nothing answers there, its half of the suite is skipped
with one line saying so.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import json
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.app import RUNTIME, Runtime, create_app
from bot.clock import Clock, system_clock
from bot.config import Settings
from bot.demo.fakeslack import FakeSlack
from bot.demo.fakeslack_socket import SocketMode
from bot.policy.rules import Policy, parse_policy
from bot.services import Services
from storage.queries import agents
from tests.policies import FAST
from tests.socket_transport import APP_TOKEN, SocketAnswer
from tests.socket_transport import send as send_over_socket

PG_ADMIN_URL = os.environ.get("COUNTERSIGN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
DATABASES = [d for d in os.environ.get("COUNTERSIGN_TEST_DATABASES", "sqlite,postgresql").split(",") if d]
SIGNING_SECRET = "test-signing-secret"
BOT_TOKEN = "xoxb-test-token"


def postgres_skip_reason(env: Mapping[str, str], reachable: Callable[[], bool]) -> str | None:
    """Why the PostgreSQL tests are skipped, or None to run them. Never skipped when they are
    required (CI=true, or COUNTERSIGN_TEST_PG set): there an unreachable server fails them."""
    wanted = "postgresql" in env.get("COUNTERSIGN_TEST_DATABASES", "sqlite,postgresql").split(",")
    required = env.get("CI", "").strip().lower() in ("true", "1", "yes") or "COUNTERSIGN_TEST_PG" in env
    if not wanted or required or reachable():
        return None
    where = urlsplit(PG_ADMIN_URL)
    return (f"PostgreSQL tests skipped: nothing answers at {where.hostname}:{where.port or 5432}; start "
            "PostgreSQL there or set COUNTERSIGN_TEST_PG=postgresql://USER@HOST:PORT/DB (required when CI=true)")


@functools.cache
def _postgres_answers() -> bool:
    where = urlsplit(PG_ADMIN_URL)
    try:
        with socket.create_connection((where.hostname or "127.0.0.1", where.port or 5432), timeout=1):
            return True
    except OSError:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = postgres_skip_reason(os.environ, _postgres_answers)
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("database_url") == "postgresql":
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    reason = postgres_skip_reason(os.environ, _postgres_answers)
    if reason is not None:
        terminalreporter.write_line(reason, yellow=True)


@pytest.fixture(params=DATABASES)
async def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[str]:
    """A fresh, empty database: a SQLite file, or a PostgreSQL database created for this test."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/countersign.db"
        return
    name = f"cs_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    yield f"{base}/{name}"
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    slack = FakeSlack()
    await slack.start()
    slack.add_user("U0OWNER", "owner@example.com", "Olive Owner")
    slack.add_user("U0DANA", "dana@example.com", "Dana Secondary")
    slack.add_user("U0VP", "vp@example.com", "Vic President")
    slack.add_user("U0ADMIN", "admin@example.com", "Ada Admin")
    slack.add_user("U0STRANGER", "stranger@example.com", "Sam Stranger")
    yield slack
    await slack.stop()


def make_settings(database_url: str, slack_url: str, **extra: Any) -> Settings:
    # A fast tick unless told otherwise; the agents' callback servers in the tests listen on loopback.
    values: dict[str, Any] = {"COUNTERSIGN_TICK_SECONDS": 0.05,
                              "COUNTERSIGN_CALLBACK_ALLOW": "127.0.0.0/8,::1,localhost", **extra}
    return Settings(
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=slack_url,
        DATABASE_URL=database_url,
        _env_file=None,
        **values,
    )


class Running:
    """The application on a real port, with helpers to act as an agent and as Slack."""

    def __init__(self, server: TestServer, app: web.Application, http: aiohttp.ClientSession) -> None:
        self.server, self.app, self.http = server, app, http
        self.url = str(server.make_url("")).rstrip("/")
        self.token = ""
        self.socket: SocketMode | None = None  # set: Slack's requests go over Socket Mode instead

    @property
    def svc(self) -> Services:
        from bot.api.routes import SERVICES

        return self.app[SERVICES]

    @property
    def runtime(self) -> Runtime:
        return self.app[RUNTIME]

    async def add_agent(self, name: str = "remediator") -> tuple[str, str]:
        async with self.svc.db.session() as session:
            agent, token = await agents.create(session, name)
            await session.commit()
        self.token = self.token or token
        return token, agent.callback_secret

    async def submit(self, body: dict[str, Any], *, token: str | None = None,
                     headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        hdrs = {"Authorization": f"Bearer {token or self.token}", **(headers or {})}
        async with self.http.post(f"{self.url}/v1/actions", json=body, headers=hdrs) as resp:
            return resp.status, await resp.json()

    async def get(self, path: str, *, token: str | None = None) -> tuple[int, Any]:
        async with self.http.get(f"{self.url}{path}", headers={"Authorization": f"Bearer {token or self.token}"}) as r:
            return r.status, (await r.json() if r.content_type == "application/json" else await r.text())

    async def slack(self, body: dict[str, Any] | str, *, form: bool = True, timestamp: int | None = None,
                    secret: str = SIGNING_SECRET) -> aiohttp.ClientResponse | SocketAnswer:
        """Send a request to /slack/events signed the way Slack signs them (or, in Socket Mode, as
        an envelope on the app's WebSocket, answered by its ack)."""
        raw = body if isinstance(body, str) else (urlencode(body) if form else json.dumps(body))
        if self.socket is not None:
            return await send_over_socket(self.socket, raw, form)
        ts = str(timestamp if timestamp is not None else int(time.time()))
        sig = "v0=" + hmac.new(secret.encode(), f"v0:{ts}:{raw}".encode(), hashlib.sha256).hexdigest()
        ctype = "application/x-www-form-urlencoded" if form else "application/json"
        resp = await self.http.post(f"{self.url}/slack/events", data=raw.encode(), headers={
            "Content-Type": ctype, "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sig})
        await resp.read()
        return resp

    async def interact(self, payload: dict[str, Any], **kw: Any) -> aiohttp.ClientResponse | SocketAnswer:
        """A block_actions / view_submission payload, form-encoded as Slack sends it."""
        return await self.slack({"payload": json.dumps(payload)}, **kw)


def test_policy(text: str = FAST) -> Policy:
    return parse_policy(text, "test-policy.yml")


@pytest.fixture
def policy() -> Policy:
    return test_policy()


@pytest.fixture
def clock() -> Clock:
    return system_clock


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[Running]:
    """`app` on a real port, with one agent (its token is the default), until the block ends."""
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            run = Running(server, app, http)
            run.svc.settings.public_url = run.url
            await run.add_agent()
            yield run
    finally:
        await server.close()


@pytest.fixture
def transport(request: pytest.FixtureRequest) -> str:
    """How Slack reaches the app: "http" (POST /slack/events), or "socket" (Socket Mode). A test
    runs both with `@pytest.mark.parametrize("transport", TRANSPORTS, indirect=True)`."""
    return str(getattr(request, "param", "http"))


@pytest.fixture
async def running(database_url: str, fake_slack: FakeSlack, policy: Policy, clock: Clock,
                  transport: str) -> AsyncIterator[Running]:
    extra = {"SLACK_APP_TOKEN": APP_TOKEN} if transport == "socket" else {}
    settings = make_settings(database_url, fake_slack.url, **extra)
    async with serve(create_app(settings, policy=policy, clock=clock)) as run:
        if transport == "socket":
            await fake_slack.socket.wait_connected()
            run.socket = fake_slack.socket
        yield run


def proposal(**over: Any) -> dict[str, Any]:
    body = {
        "kind": "proposed",
        "service": "checkout-api",
        "action_type": "scale_down",
        "summary": "Scale checkout-api from 12 to 8 pods",
        "rationale": "CPU under 20% for 3 hours; saving cost",
        "confidence": 0.82,
        "evidence": [{"label": "CPU dashboard", "url": "https://grafana.example.com/d/cpu"}],
    }
    body.update(over)
    return body
