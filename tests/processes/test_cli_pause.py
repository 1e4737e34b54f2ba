"""`countersign pause|resume|pauses`: the kill switch from a terminal (Slack down, or the person who
must stop the AI not in it), run as a user would while a server is up: the running server applies
the pause to the next submissions within a second, announces it in Slack, and the ledger names who."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from bot.app import create_app
from bot.demo.fakeslack import FakeSlack
from tests.conftest import Running, make_settings, proposal, serve
from tests.conftest import test_policy as make_policy
from tests.integration.test_autonomy import ledger_events
from tests.policies import AUTONOMY
from tests.processes.test_cli import clean_env, countersign

pytestmark = pytest.mark.processes
SEARCH = {"service": "search", "action_type": "scale_down"}  # autonomous by the policy's rules


async def submitted_in_mode(run: Running, mode: str) -> dict[str, Any]:
    """Submit until the server answers in `mode`: it reads what holds at most a second old."""
    deadline = time.monotonic() + 5
    while True:
        status, body = await run.submit(proposal(**SEARCH))
        assert status == 201, body
        if body["mode"] == mode or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.2)


async def test_pause_and_resume_from_the_command_line_reach_the_running_server(
        database_url: str, tmp_path: Path, fake_slack: FakeSlack) -> None:
    policy_path = tmp_path / "policy.yml"
    policy_path.write_text(AUTONOMY)
    env = clean_env(COUNTERSIGN_POLICY=str(policy_path), DATABASE_URL=database_url, LOGNAME="dana", USER="dana")
    app = create_app(make_settings(database_url, fake_slack.url), policy=make_policy(AUTONOMY))
    async with serve(app) as run:
        status, before = await run.submit(proposal(**SEARCH))
        assert status == 201 and before["mode"] == "autonomous", before

        for args, why in ((("nowhere", "1h", "x"), "Unknown target nowhere"),
                          (("search", "2h"), "A pause needs a reason: countersign pause TARGET"),
                          (("search", "31d", "too", "long"), "at most 30 days")):
            refused = await countersign("pause", *args, env=env, cwd=tmp_path)
            assert refused.returncode == 2 and why in refused.stderr, (args, refused.stderr)
            assert "`" not in refused.stderr  # Slack's mrkdwn is not for a terminal

        paused = await countersign("pause", "search", "2h", "bad", "deploys", "--by", "U0VP", env=env, cwd=tmp_path)
        assert paused.returncode == 0, paused.stderr
        assert "paused search until" in paused.stdout and "by U0VP" in paused.stdout
        during = await submitted_in_mode(run, "approve")
        assert during["mode"] == "approve" and during["paused"]["by"] == "U0VP", during
        assert during["paused"]["reason"] == "bad deploys" and during["paused"]["until"]

        listed = await countersign("pauses", "--json", env=env, cwd=tmp_path)
        [holding] = json.loads(listed.stdout)
        status, api = await run.get("/v1/pauses")
        assert api["items"] == [holding] and holding["target"] == "search" and holding["by"] == "U0VP"
        text = await countersign("pauses", env=env, cwd=tmp_path)
        assert "search  by U0VP" in text.stdout and "bad deploys" in text.stdout
        announced = await fake_slack.wait_for(
            lambda: [c for c in fake_slack.posts("C0SEARCH") if "bad deploys" in json.dumps(c.args)])
        assert announced, "the running server announces a pause started from the command line"

        resumed = await countersign("resume", "search", env=env, cwd=tmp_path)  # --by: the login name
        assert resumed.returncode == 0 and "resumed search (by cli:dana)" in resumed.stdout, resumed.stderr
        after = await submitted_in_mode(run, "autonomous")
        assert after["mode"] == "autonomous" and after["paused"] is None, after
        again = await countersign("resume", "search", env=env, cwd=tmp_path)
        assert again.returncode == 2 and "No pause holds for search: see countersign pauses" in again.stderr
        assert (await countersign("pauses", env=env, cwd=tmp_path)).stdout.strip() == "No pause holds."

        events = [(e.event, e.actor) for e in await ledger_events(run, "pause.")]
        assert events == [("pause.started", "U0VP"), ("pause.ended", "cli:dana")]
