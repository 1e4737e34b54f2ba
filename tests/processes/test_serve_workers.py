"""`countersign serve --workers N`: N processes on one port (PostgreSQL); SQLite refuses it."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
from pathlib import Path

import aiohttp
import pytest

from bot.demo.fakeslack import FakeSlack
from tests.integration.test_outbox import restart
from tests.policies import FAST
from tests.processes.test_outbox_crash import environment, free_port

pytestmark = pytest.mark.processes


async def test_two_workers_share_the_port_and_stop_together(database_url: str, fake_slack: FakeSlack,
                                                           tmp_path: Path) -> None:
    policy = tmp_path / "policy.yml"
    policy.write_text(FAST)
    env = environment(database_url, fake_slack.url, policy, free_port())
    if not database_url.startswith("postgresql"):
        proc = await asyncio.create_subprocess_exec("countersign", "serve", "--workers", "2", env=env, cwd=tmp_path,
                                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, err = await proc.communicate()
        assert proc.returncode != 0 and b"--workers needs PostgreSQL" in err
        return
    added = await asyncio.create_subprocess_exec("countersign", "agents", "add", "w", "--json", env=env,
                                                 cwd=tmp_path, stdout=subprocess.PIPE)
    token = json.loads((await added.communicate())[0])["token"]
    base = f"http://127.0.0.1:{env['COUNTERSIGN_PORT']}"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        proc = await asyncio.create_subprocess_exec("countersign", "serve", "--workers", "2", env=env,
                                                    cwd=tmp_path, stdout=subprocess.DEVNULL,
                                                    stderr=subprocess.PIPE)
        try:
            for _ in range(300):
                try:
                    async with http.get(f"{base}/healthz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)  # the second worker migrates (nothing to do) and listens

            async def submit(i: int) -> int:
                # a connection each, so that the kernel spreads them over both workers
                async with (aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as own,
                            own.post(f"{base}/v1/actions", json=restart(f"w{i}")) as resp):
                    return resp.status

            assert await asyncio.gather(*(submit(i) for i in range(40))) == [201] * 40
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()[-2000:]
        assert b"with 2 worker processes" in err


async def test_workers_on_a_port_in_use_say_so_once(database_url: str, fake_slack: FakeSlack, tmp_path: Path) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("--workers needs PostgreSQL")
    policy = tmp_path / "policy.yml"
    policy.write_text(FAST)
    with socket.socket() as taken:  # another process's listener (no SO_REUSEPORT)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = environment(database_url, fake_slack.url, policy, taken.getsockname()[1])
        proc = await asyncio.create_subprocess_exec("countersign", "serve", "--workers", "3", env=env, cwd=tmp_path,
                                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    text = err.decode()
    assert proc.returncode == 2, text[-2000:]
    assert text.count("is in use: set COUNTERSIGN_PORT") == 1 and "Traceback" not in text, text[-2000:]
