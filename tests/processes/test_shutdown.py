"""`countersign serve` as a process: it migrates on start, logs one JSON line per event with the
action id, and on SIGTERM finishes the request in flight, then exits 0."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from bot.demo.fakeslack import FakeSlack
from storage.db import Database
from storage.models import Action
from storage.queries import agents
from tests.conftest import BOT_TOKEN, SIGNING_SECRET, proposal
from tests.policies import FAST
from tests.processes.test_cli import COMMAND, clean_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_env(database_url: str, slack_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    policy = tmp_path / "policy.yml"
    policy.write_text(FAST)
    return clean_env(
        DATABASE_URL=database_url,
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=slack_url,
        COUNTERSIGN_POLICY=str(policy),
        COUNTERSIGN_HOST="127.0.0.1",
        COUNTERSIGN_PORT=str(free_port()),
        COUNTERSIGN_TICK_SECONDS="0.1",
        **extra,
    )


class Served:
    def __init__(self, proc: subprocess.Popen[str], port: int, log_path: Path) -> None:
        self.proc, self.port, self.log_path = proc, port, log_path
        self.url = f"http://127.0.0.1:{port}"

    def log_lines(self) -> list[str]:
        return self.log_path.read_text().splitlines()


def _spawn(
    env: dict[str, str], tmp_path: Path, log_path: Path, args: tuple[str, ...]
) -> subprocess.Popen[str]:
    with open(log_path, "w") as log:
        return subprocess.Popen(
            [*COMMAND, "serve", *args], env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, text=True
        )


async def start_serve(env: dict[str, str], tmp_path: Path, *args: str) -> Served:
    """Start `countersign serve` and wait until /healthz answers (or the process exits)."""
    log_path = tmp_path / f"serve-{env['COUNTERSIGN_PORT']}.log"
    proc = _spawn(env, tmp_path, log_path, args)
    port = env["COUNTERSIGN_PORT"]
    served = Served(proc, int(port) if port.isdigit() else 0, log_path)
    async with aiohttp.ClientSession() as http:
        for _ in range(600):
            if proc.poll() is not None:
                return served
            try:
                async with http.get(f"{served.url}/healthz") as resp:
                    if resp.status == 200:
                        return served
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)  # polling readiness, not synchronizing on it
    proc.kill()
    raise AssertionError(f"serve did not start: {log_path.read_text()[-2000:]}")


@pytest.fixture
async def serving(database_url: str, fake_slack: FakeSlack, tmp_path: Path) -> AsyncIterator[Served]:
    served = await start_serve(
        serve_env(database_url, fake_slack.url, tmp_path, COUNTERSIGN_LOG_FORMAT="json"), tmp_path
    )
    assert served.proc.poll() is None, served.log_path.read_text()
    yield served
    if served.proc.poll() is None:
        served.proc.kill()
        served.proc.wait(10)


async def make_agent(database_url: str) -> str:
    db = Database(database_url)
    try:
        async with db.session() as session:
            _, token = await agents.create(session, "shutdown-test")
            await session.commit()
        return token
    finally:
        await db.dispose()


async def stored_actions(database_url: str) -> list[Action]:
    db = Database(database_url)
    try:
        async with db.session() as session:
            return list((await session.execute(select(Action))).scalars())
    finally:
        await db.dispose()


async def test_sigterm_lets_the_request_in_flight_finish_then_exits_0(
    serving: Served, database_url: str
) -> None:
    # `serve` migrated the fresh database on start: an agent can be created without `migrate`.
    token = await make_agent(database_url)
    body = json.dumps(proposal()).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", serving.port)
    writer.write(
        (
            f"POST /v1/actions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"Expect: 100-continue\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    # "100 Continue" means the server is handling this request and now waits for its body.
    assert (await asyncio.wait_for(reader.readline(), 30)).startswith(b"HTTP/1.1 100")
    await reader.readline()

    serving.proc.send_signal(signal.SIGTERM)
    writer.write(body)
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 30)
    response = await asyncio.wait_for(reader.read(65536), 30)
    writer.close()
    assert status_line.startswith(b"HTTP/1.1 201"), status_line + response
    answered = json.loads(response.split(b"\r\n\r\n", 1)[1])

    assert await asyncio.to_thread(serving.proc.wait, 60) == 0, "\n".join(serving.log_lines()[-20:])
    assert [a.id for a in await stored_actions(database_url)] == [answered["id"]]

    # Logs: JSON, one object per line; the acceptance line carries the action id.
    records: list[dict[str, Any]] = []
    for line in serving.log_lines():
        if line.startswith("{"):
            records.append(json.loads(line))
    accepted = [r for r in records if r.get("action_id") == answered["id"]]
    assert accepted and all({"ts", "level", "logger", "message"} <= set(r) for r in records)
    assert any("accepted" in r["message"] for r in accepted)


async def test_sigterm_on_an_idle_server_exits_0_quickly(serving: Served) -> None:
    serving.proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(serving.proc.wait, 30) == 0


async def test_sigint_is_graceful_too(serving: Served) -> None:
    os.kill(serving.proc.pid, signal.SIGINT)
    assert await asyncio.to_thread(serving.proc.wait, 30) == 0
