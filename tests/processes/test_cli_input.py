"""The installed `countersign` command given what people mistype: an empty agent name, a status
that does not exist, `--since 7d`, a port already taken. Each is refused (or understood) in one
plain line with a non-zero exit, never accepted silently and never a traceback."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.api.openapi import STATUSES
from bot.clock import FakeClock
from bot.demo.fakeslack import FakeSlack
from bot.policy.rules import Policy, parse_policy
from bot.reports.audit import parse_since
from tests.conftest import Running, proposal
from tests.policies import CALM
from tests.processes.test_cli import COMMAND, countersign
from tests.processes.test_shutdown import serve_env

NOW = datetime(2026, 3, 9, 12, 0, tzinfo=UTC)


@pytest.fixture
def policy() -> Policy:
    return parse_policy(CALM, "calm-policy.yml")  # minute-scale: moving the clock expires nothing


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC).replace(microsecond=0) - timedelta(days=10))


@pytest.mark.parametrize("name", ["", "   ", "\t"])
async def test_agents_add_refuses_an_empty_name(database_url: str, tmp_path: Path, name: str) -> None:
    added = await countersign("agents", "add", name, database_url=database_url, cwd=tmp_path)
    assert added.returncode == 2, added.stdout
    assert "an agent needs a name" in added.stderr and "Traceback" not in added.stderr
    assert "token:" not in added.stdout
    listed = await countersign("agents", "list", "--json", database_url=database_url, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == [], "no nameless agent was created"


async def test_agents_add_trims_the_name(database_url: str, tmp_path: Path) -> None:
    """` bob ` and `bob` would read alike on a card: the spaces are dropped, so both are one agent."""
    added = await countersign("agents", "add", "  deploy-bot ", database_url=database_url, cwd=tmp_path)
    assert added.returncode == 0 and "Agent 'deploy-bot' created." in added.stdout, added.stderr
    again = await countersign("agents", "add", "deploy-bot", database_url=database_url, cwd=tmp_path)
    assert again.returncode != 0 and "token:" not in again.stdout
    listed = await countersign("agents", "list", "--json", database_url=database_url, cwd=tmp_path)
    assert [a["name"] for a in json.loads(listed.stdout)] == ["deploy-bot"]


async def test_agents_revoke_twice_says_since_when(database_url: str, tmp_path: Path) -> None:
    """The second revoke said "Agent 'deploy-bot' revoked." again, as if the token had worked until then."""
    assert (await countersign("agents", "add", "deploy-bot", database_url=database_url, cwd=tmp_path)).returncode == 0
    first = await countersign("agents", "revoke", "deploy-bot", database_url=database_url, cwd=tmp_path)
    assert first.returncode == 0 and first.stdout.strip() == "Agent 'deploy-bot' revoked.", first.stderr
    again = await countersign("agents", "revoke", "deploy-bot", database_url=database_url, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("Agent 'deploy-bot' was already revoked on ") and "UTC" in again.stdout
    export = await countersign("audit", "export", database_url=database_url, cwd=tmp_path)
    events = [json.loads(line)["event"] for line in export.stdout.splitlines()]
    assert events.count("agent.revoked") == 1


async def test_agents_add_with_a_revoked_agents_name_says_it_was_revoked(database_url: str, tmp_path: Path) -> None:
    assert (await countersign("agents", "add", "old-bot", database_url=database_url, cwd=tmp_path)).returncode == 0
    assert (await countersign("agents", "revoke", "old-bot", database_url=database_url, cwd=tmp_path)).returncode == 0
    again = await countersign("agents", "add", "old-bot", database_url=database_url, cwd=tmp_path)
    assert again.returncode != 0 and "token:" not in again.stdout
    assert "already exists (revoked " in again.stderr and "choose another" in again.stderr, again.stderr


async def test_actions_list_refuses_an_unknown_status(database_url: str, tmp_path: Path) -> None:
    bogus = await countersign("actions", "list", "--status", "bogus", database_url=database_url, cwd=tmp_path)
    assert bogus.returncode == 2 and bogus.stdout == ""
    assert "'bogus' is not one of" in bogus.stderr and "Traceback" not in bogus.stderr
    for status in STATUSES:
        assert f"'{status}'" in bogus.stderr, status
    known = await countersign("actions", "list", "--status", "denied", database_url=database_url, cwd=tmp_path)
    assert known.returncode == 0 and "no actions" in known.stdout, known.stderr


async def test_audit_export_since_a_duration(running: Running, clock: FakeClock, tmp_path: Path) -> None:
    """`--since 7d`: the entries of the last seven days (it was refused as not a date)."""
    _, old = await running.submit(proposal(summary="Ten days ago"))
    clock.advance(timedelta(days=9).total_seconds())
    _, recent = await running.submit(proposal(summary="Yesterday"))
    database_url = running.svc.settings.database_url
    for since in ("7d", "1d12h", (datetime.now(UTC) - timedelta(days=7)).isoformat()):
        done = await countersign("audit", "export", "--since", since, database_url=database_url, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        submitted = [e["action_id"] for e in map(json.loads, done.stdout.splitlines())
                     if e["event"] == "action.submitted"]
        assert submitted == [recent["id"]], (since, submitted, old["id"])
    for bad in ("bogus", "7", "99999999999d"):
        done = await countersign("audit", "export", "--since", bad, database_url=database_url, cwd=tmp_path)
        assert done.returncode == 2 and "--since" in done.stderr and "Traceback" not in done.stderr, bad


def test_since_reads_dates_times_and_durations() -> None:
    assert parse_since("7d", NOW) == NOW - timedelta(days=7)
    assert parse_since("24h", NOW) == NOW - timedelta(hours=24)
    assert parse_since("1d12h", NOW) == NOW - timedelta(hours=36)
    assert parse_since("2026-03-01", NOW) == datetime(2026, 3, 1, tzinfo=UTC)
    assert parse_since("2026-03-01T10:00:00+02:00", NOW) == datetime(2026, 3, 1, 8, tzinfo=UTC)
    for bad, says in (("last week", "a duration like 7d"), ("99999999999d", "before any date")):
        with pytest.raises(ValueError, match=says):
            parse_since(bad, NOW)


async def test_serve_on_a_port_in_use_says_so_in_one_line(fake_slack: FakeSlack, tmp_path: Path) -> None:
    environment = serve_env(f"sqlite+aiosqlite:///{tmp_path}/c.db", fake_slack.url, tmp_path)
    with socket.socket() as taken:  # another process's listener (no SO_REUSEADDR, no SO_REUSEPORT)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        environment["COUNTERSIGN_PORT"] = str(port)
        served = await asyncio.to_thread(subprocess.run, [*COMMAND, "serve"], capture_output=True, text=True,
                                         env=environment, cwd=tmp_path, timeout=60)
    assert served.returncode == 2, served.stderr[-2000:]
    assert f"error: port {port} is in use: set COUNTERSIGN_PORT or stop the other process" in served.stderr
    assert "Traceback" not in served.stderr and "listening on" not in served.stderr, served.stderr[-2000:]
