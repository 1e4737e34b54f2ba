"""Three replicas share Slack's per-channel budget: a 1,000-action storm to one service, submitted
through all three, against a fake Slack that enforces chat.postMessage's rate (1 a second per
channel, bursts of 5, 429 + Retry-After beyond, as Slack does). Not one 429, every action carded
once, nothing lost."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from asyncio.subprocess import Process
from collections import Counter
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import func
from sqlmodel import col, select

from bot.demo.fakeslack import Call, FakeSlack, RateLimit
from storage.db import Database
from storage.models import Action, OutboxMessage
from tests.integration.test_outbox import restart
from tests.policies import FAST
from tests.processes.test_outbox_crash import environment, free_port, serve

REPLICAS = 3
ACTIONS = 1000


def carried(call: Call) -> list[int]:
    """The actions a posted message carries (one card, or a pack): its buttons' values."""
    return sorted({int(e["value"]) for b in call.args.get("blocks") or [] if b.get("type") == "actions"
                   for e in b.get("elements", []) if str(e.get("value", "")).isdigit()})


async def start_replicas(database_url: str, fake_slack: FakeSlack, tmp_path: Path
                         ) -> tuple[list[dict[str, str]], str]:
    policy = tmp_path / "policy.yml"
    policy.write_text(FAST)
    envs = [environment(database_url, fake_slack.url, policy, free_port()) for _ in range(REPLICAS)]
    migrated = await asyncio.create_subprocess_exec("countersign", "migrate", env=envs[0], cwd=tmp_path)
    assert await migrated.wait() == 0
    added = await asyncio.create_subprocess_exec("countersign", "agents", "add", "storm", "--json", env=envs[0],
                                                 cwd=tmp_path, stdout=subprocess.PIPE)
    out, _ = await added.communicate()
    return envs, json.loads(out)["token"]


@pytest.mark.timeout(600)
async def test_three_replicas_earn_no_429_in_a_1000_action_storm(database_url: str, fake_slack: FakeSlack,
                                                                  tmp_path: Path) -> None:
    fake_slack.post_limit = RateLimit(per_second=1.0, burst=5)
    envs, token = await start_replicas(database_url, fake_slack, tmp_path)
    procs: list[Process] = []
    db = Database(database_url)
    accepted: set[int] = set()
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        try:
            for env in envs:
                procs.append(await serve(env, tmp_path, http))
            bases = [f"http://127.0.0.1:{env['COUNTERSIGN_PORT']}" for env in envs]
            gate = asyncio.Semaphore(30)

            async def submit(i: int) -> None:
                async with gate, http.post(f"{bases[i % REPLICAS]}/v1/actions", json=restart(f"s{i:04d}"),
                                           headers={"Idempotency-Key": f"storm-{i}"}) as resp:
                    assert resp.status == 201, await resp.text()
                    accepted.add((await resp.json())["id"])

            started = time.monotonic()
            await asyncio.gather(*(submit(i) for i in range(ACTIONS)))
            print(f"submitted in {time.monotonic() - started:.0f} s")

            deadline = time.monotonic() + 400
            while True:
                async with db.session() as session:
                    waiting = (await session.execute(select(func.count()).select_from(OutboxMessage).where(
                        col(OutboxMessage.status).in_(["pending", "sending"])))).scalar_one()
                if waiting == 0:
                    print(f"drained at {time.monotonic() - started:.0f} s; {len(fake_slack.posts())} posts")
                    break
                assert time.monotonic() < deadline, f"{waiting} messages still waiting"
                await asyncio.sleep(1.0)
            async with db.session() as session:
                stored = (await session.execute(select(func.count()).select_from(Action))).scalar_one()
                failed = (await session.execute(select(func.count()).select_from(OutboxMessage).where(
                    col(OutboxMessage.status) == "failed"))).scalar_one()
        finally:
            for proc in procs:
                if proc.returncode is None:
                    proc.terminate()
                    await asyncio.wait_for(proc.wait(), timeout=30)
            await db.dispose()

    assert len(accepted) == ACTIONS and stored == ACTIONS and failed == 0
    assert fake_slack.post_limit.refused == [], f"{len(fake_slack.post_limit.refused)} posts refused with 429"
    posts = fake_slack.posts()
    for channel in ("C0SEARCH", "U0SEARCH"):  # the storm's channel, and the owner's DM
        shown = Counter(a for c in posts if c.args.get("channel") == channel for a in carried(c))
        assert set(shown) == accepted, f"{channel}: {len(accepted - set(shown))} actions missing"
        assert max(shown.values()) == 1, f"{channel}: an action shown twice"
