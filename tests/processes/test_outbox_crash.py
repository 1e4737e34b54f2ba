"""kill -9 in the middle of a burst, then a restart: nothing lost and nothing posted twice (a post
Slack accepted just before the kill, whose row was not yet marked done, is found by its metadata).

Each run is a fresh database and a new kill point. CI runs CRASH_RUNS=2 per database; by hand:
    COUNTERSIGN_CRASH_RUNS=20 python -m pytest -p no:cacheprovider tests/processes/test_outbox_crash.py
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
from asyncio.subprocess import Process
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlmodel import select

from bot.demo.fakeslack import FakeSlack, Fault
from storage.db import Database
from storage.models import Action, OutboxMessage
from tests.conftest import BOT_TOKEN, SIGNING_SECRET
from tests.integration.test_outbox import about, restart
from tests.policies import FAST

RUNS = int(os.environ.get("COUNTERSIGN_CRASH_RUNS", "2"))
BURST = 14  # past the storm threshold (10 a minute): the storm thread is crashed into as well


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(database_url: str, slack_url: str, policy: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "COUNTERSIGN_", "DATABASE_"))}
    env.update(SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET, SLACK_API_URL=slack_url,
               DATABASE_URL=database_url, COUNTERSIGN_POLICY=str(policy), COUNTERSIGN_HOST="127.0.0.1",
               COUNTERSIGN_PORT=str(port), COUNTERSIGN_TICK_SECONDS="0.05")
    return env


def log_file(cwd: Path) -> Any:
    return open(cwd / "serve.log", "ab")  # noqa: SIM115  (the child process writes to it)


async def serve(env: dict[str, str], cwd: Path, http: aiohttp.ClientSession) -> Process:
    proc = await asyncio.create_subprocess_exec("countersign", "serve", env=env, cwd=cwd,
                                                stdout=subprocess.DEVNULL, stderr=log_file(cwd))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            async with http.get(f"http://127.0.0.1:{env['COUNTERSIGN_PORT']}/healthz") as resp:
                if resp.status == 200:
                    return proc
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    proc.kill()
    await proc.wait()
    raise AssertionError((cwd / "serve.log").read_text()[-3000:])


@pytest.mark.parametrize("run", range(RUNS))
async def test_kill_9_mid_burst_then_restart_loses_nothing_and_posts_nothing_twice(
        run: int, database_url: str, fake_slack: FakeSlack, tmp_path: Path) -> None:
    fake_slack.add_user("U0SEARCH", "search@example.com", "Sol Search")
    fake_slack.inject(Fault(method="chat.postMessage", delay=0.15, times=None))  # slow sends: die mid-send
    policy = tmp_path / "policy.yml"
    policy.write_text(FAST)
    env = environment(database_url, fake_slack.url, policy, free_port())
    added = await asyncio.create_subprocess_exec("countersign", "agents", "add", "crashbot", "--json",
                                                 env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                                                 stderr=subprocess.PIPE)
    out, err = await added.communicate()
    assert added.returncode == 0, err
    token = json.loads(out)["token"]
    base = f"http://127.0.0.1:{env['COUNTERSIGN_PORT']}"
    accepted: dict[str, int] = {}
    db = Database(database_url)
    proc: Process | None = None
    unfinished: list[str] = []  # cut off by the kill before they committed (409 on retry: in flight)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        try:
            proc = await serve(env, tmp_path, http)

            async def submit(tag: str) -> int | None:
                try:
                    async with http.post(f"{base}/v1/actions", json=restart(tag),
                                         headers={"Idempotency-Key": tag}) as resp:
                        if resp.status == 201:
                            accepted[tag] = (await resp.json())["id"]
                        return resp.status
                except aiohttp.ClientError:
                    return None

            async def burst() -> None:
                for i in range(BURST):
                    if await submit(f"crash{i:02d}z") != 201:
                        return
                    await asyncio.sleep(0.1)

            submitting = asyncio.create_task(burst())
            await fake_slack.wait_for(lambda: len(fake_slack.posts("U0SEARCH")) >= 3, timeout=30)
            proc.send_signal(signal.SIGKILL)  # mid-burst: submissions and sends in flight
            await proc.wait()
            await submitting
            assert 0 < len(accepted) < BURST, "the kill should land in the middle of the burst"
            async with db.session() as session:
                in_flight = len(list((await session.execute(
                    select(OutboxMessage).where(OutboxMessage.status == "sending"))).scalars()))

            proc = await serve(env, tmp_path, http)  # restart; the rest of the burst goes on
            for i in range(BURST):
                tag = f"crash{i:02d}z"
                if tag not in accepted:
                    # The agent retries with the same key: the stored answer, a fresh accept, or 409
                    # when the kill cut the first request off before it committed (retry in 60 s).
                    status = await submit(tag)
                    assert status in (201, 409), status
                    if status == 409:
                        unfinished.append(tag)

            async def settled() -> bool:
                async with db.session() as session:
                    waiting = (await session.execute(select(OutboxMessage).where(
                        OutboxMessage.status.in_(["pending", "sending"])))).scalars().first()  # type: ignore[attr-defined]
                return waiting is None

            deadline = time.monotonic() + 90
            while not await settled():
                assert time.monotonic() < deadline, "the outbox did not drain after the restart"
                await asyncio.sleep(0.2)

            # Every accepted action is there, and was paged and carded exactly once.
            async with db.session() as session:
                stored = {a.id for a in (await session.execute(select(Action))).scalars()}
                failed = (await session.execute(select(OutboxMessage).where(
                    OutboxMessage.status == "failed"))).scalars().all()
            assert set(accepted.values()) <= stored and not failed
            extra = 0
            for tag in accepted:
                pages = len(about(fake_slack.posts("U0SEARCH"), tag))
                cards = len(about(fake_slack.posts("C0SEARCH"), tag))
                assert pages >= 1 and cards >= 1, tag
                extra += pages - 1 + cards - 1
            parents = [c for c in fake_slack.posts("C0SEARCH") if "Storm on search" in c.args.get("text", "")]
            assert len(parents) >= 1
            extra += len(parents) - 1
            assert extra == 0, f"{extra} duplicate posts ({in_flight} rows were in flight at the kill)"
        finally:
            if proc is not None and proc.returncode is None:
                proc.terminate()
                await asyncio.wait_for(proc.wait(), timeout=30)
            await db.dispose()
