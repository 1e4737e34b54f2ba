"""`countersign trust`, `countersign digest` and `countersign policy grants`, run as a user would, on a
database with a known history written through the running app."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.actions.decisions import respond
from bot.app import create_app
from bot.cli.common import open_database
from bot.demo.fakeslack import FakeSlack
from storage.models import AutonomyGrant
from tests.conftest import make_settings, proposal, serve
from tests.conftest import test_policy as make_policy
from tests.policies import AUTONOMY
from tests.processes.test_cli import clean_env, countersign

pytestmark = pytest.mark.processes


@contextlib.asynccontextmanager
async def app_db(url: str) -> AsyncIterator[AsyncSession]:
    """A session on the database the CLI reads, for rows written as another process would."""
    db = open_database(url)
    try:
        async with db.session() as session:
            yield session
    finally:
        await db.dispose()


async def test_trust_digest_and_grants_from_the_command_line(database_url: str, tmp_path: Path,
                                                            fake_slack: FakeSlack) -> None:
    policy_path = tmp_path / "policy.yml"
    policy_path.write_text(AUTONOMY)
    app = create_app(make_settings(database_url, fake_slack.url), policy=make_policy(AUTONOMY))
    async with serve(app) as run:
        for i in range(3):
            _, a = await run.submit(proposal(summary=f"s{i}"))
            assert (await respond(run.svc, a["id"], user_id="U0OWNER", user_name="olive", response="approve",
                                  via="slash")).accepted
        async with run.svc.db.session() as session:
            now = datetime.now(UTC)
            session.add(AutonomyGrant(agent="remediator", service="search", action_type="restart",
                                      environment="production", kind="promote", decision="granted",
                                      mode="autonomous", previous_mode="acknowledge", by="U0VP", at=now,
                                      until=now + timedelta(days=1)))
            await session.commit()
    env = clean_env(COUNTERSIGN_POLICY=str(policy_path), DATABASE_URL=database_url, LOGNAME="dana", USER="dana")
    table = await countersign("trust", env=env, cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "remediator" in table.stdout and "100%" in table.stdout
    assert "promote  remediator on checkout-api scale_down production: approve -> acknowledge" in table.stdout
    week = await countersign("trust", "--since", "7d", "--format", "json", env=env, cwd=tmp_path)
    as_json = json.loads(week.stdout)
    [record] = as_json["records"]
    assert (record["approved"], record["decisions"], record["approval_rate"]) == (3, 3, 1.0)
    bad = await countersign("trust", "--since", "soon", env=env, cwd=tmp_path)
    assert bad.returncode != 0 and "--since" in bad.stderr
    digest = await countersign("digest", env=env, cwd=tmp_path)
    assert digest.returncode == 0 and "3 actions" in digest.stdout and "suggestion: promote" in digest.stdout
    # read like `trust`, not Python reprs ("by mode {'approve': 3}", "approval 1.0", "0.0179 s")
    assert "by mode: approve 3; by outcome: approved 3" in digest.stdout and "{" not in digest.stdout
    assert "median time to response: 0s over 3 responses" in digest.stdout
    assert re.search(r"remediator\s+checkout-api\s+scale_down\s+production\s+3\s+100%", digest.stdout)
    listed = await countersign("policy", "grants", "list", env=env, cwd=tmp_path)
    assert "remediator x search x restart x production: acknowledge -> autonomous" in listed.stdout
    check = await countersign("policy", "check", str(policy_path), env=env, cwd=tmp_path)
    assert "Grants in force" in check.stdout and "acknowledge -> autonomous" in check.stdout
    grant_id = listed.stdout.split()[0].lstrip("#")
    revoked = await countersign("policy", "grants", "revoke", grant_id, env=env, cwd=tmp_path)
    assert revoked.returncode == 0 and "revoked grant" in revoked.stdout
    again = await countersign("policy", "grants", "revoke", grant_id, env=env, cwd=tmp_path)
    # it said only "No grant 1 is in force"
    assert again.returncode != 0 and f"Grant {grant_id} was already revoked at" in again.stderr
    assert "by cli:dana" in again.stderr  # no --by: the login that ran the command
    unknown = await countersign("policy", "grants", "revoke", "999", env=env, cwd=tmp_path)
    assert unknown.returncode != 0 and "No grant 999: `countersign policy grants list --all`" in unknown.stderr
    assert "No grants in force" in (await countersign("policy", "grants", "list", env=env, cwd=tmp_path)).stdout
    # who, when, until and the figures, as stored
    [shown] = json.loads((await countersign("policy", "grants", "list", "--all", "--json", env=env,
                                            cwd=tmp_path)).stdout)
    assert (shown["by"], shown["revoked_by"], shown["mode"]) == ("U0VP", "cli:dana", "autonomous")
    assert shown["at"] and shown["until"] and shown["revoked_at"]
    async with app_db(database_url) as session:  # one that passed its `until` before any sweep ran
        then = datetime.now(UTC) - timedelta(hours=1)
        session.add(AutonomyGrant(agent="remediator", service="search", action_type="restart",
                                  environment="staging", kind="promote", decision="granted", mode="autonomous",
                                  previous_mode="acknowledge", by="U0VP", at=then - timedelta(days=1), until=then,
                                  figures={"why": "3 decisions (≥ 3)"}))
        await session.commit()
    assert "No grants in force" in (await countersign("policy", "grants", "list", env=env, cwd=tmp_path)).stdout
    listed_all = (await countersign("policy", "grants", "list", "--all", env=env, cwd=tmp_path)).stdout
    assert "x staging: acknowledge -> autonomous" in listed_all and "(3 decisions (≥ 3))" in listed_all
    late = await countersign("policy", "grants", "revoke", str(int(grant_id) + 1), env=env, cwd=tmp_path)
    assert late.returncode != 0 and "already expired at" in late.stderr


async def test_trust_without_a_policy_file_shows_the_track_record(database_url: str, tmp_path: Path,
                                                                  fake_slack: FakeSlack) -> None:
    """The track record is in the database: `countersign trust` with only DATABASE_URL set showed
    nothing ("COUNTERSIGN_POLICY is not set", exit 2). Now it shows it, says there are no suggestions
    without the policy's thresholds, and still reads a service or an agent as its subject."""
    env = clean_env(DATABASE_URL=database_url)
    empty = await countersign("trust", env=env, cwd=tmp_path)
    assert empty.returncode == 0 and "No actions in the last 30d." in empty.stdout, empty.stderr
    assert "COUNTERSIGN_POLICY is not set" in empty.stderr and "no suggestions" in empty.stderr
    app = create_app(make_settings(database_url, fake_slack.url), policy=make_policy(AUTONOMY))
    async with serve(app) as run:
        _, a = await run.submit(proposal(summary="scale down"))
        assert (await respond(run.svc, a["id"], user_id="U0OWNER", user_name="olive", response="approve",
                              via="slash")).accepted
    for subject in ([], ["checkout-api"], ["remediator"]):
        shown = await countersign("trust", *subject, "--format", "json", env=env, cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        [record] = json.loads(shown.stdout)["records"]
        assert (record["agent"], record["service"], record["approved"]) == ("remediator", "checkout-api", 1)
    other = await countersign("trust", "search", env=env, cwd=tmp_path)
    assert other.returncode == 0 and "No actions for search in the last 30d." in other.stdout, other.stderr
    table = await countersign("trust", env=env, cwd=tmp_path)
    assert table.returncode == 0 and "remediator" in table.stdout and "100%" in table.stdout
