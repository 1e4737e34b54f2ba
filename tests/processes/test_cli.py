"""The installed `countersign` command, run as a user would: a subprocess with DATABASE_URL set.

The application under test (`running`) shares the same database, so what the CLI creates is used
over HTTP and what the API stores is read by the CLI.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bot.policy.rules import Policy, parse_policy
from tests.conftest import Running, proposal
from tests.policies import CALM, FAST


@pytest.fixture
def policy() -> Policy:
    """The running app's policy: minute-scale escalation, since each CLI call is a new process (a
    few seconds on a loaded machine, and FAST's 6 s timeout expired a "pending" action)."""
    return parse_policy(CALM, "calm-policy.yml")

COMMAND = [
    shutil.which("countersign") or sys.executable,
    *([] if shutil.which("countersign") else ["-m", "bot.cli"]),
]


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "COUNTERSIGN_", "DATABASE_URL"))
    }
    env.update(extra)
    return env


async def countersign(
    *args: str, database_url: str | None = None, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI without blocking the event loop the application under test runs on."""
    environment = env or clean_env()
    if database_url:
        environment["DATABASE_URL"] = database_url
    return await asyncio.to_thread(
        subprocess.run,
        [*COMMAND, *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=cwd,
        timeout=60,
    )


async def test_migrate_is_idempotent(database_url: str, tmp_path: Path) -> None:
    for _ in range(2):
        done = await countersign("migrate", database_url=database_url, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "database is at revision" in done.stdout


async def test_agents_add_list_revoke_against_the_running_api(
    running: Running, database_url: str, tmp_path: Path
) -> None:
    added = await countersign("agents", "add", "deploy-bot", database_url=database_url, cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    token = next(line.split()[-1] for line in added.stdout.splitlines() if line.startswith("token:"))
    secret = next(
        line.split()[-1] for line in added.stdout.splitlines() if line.startswith("callback secret:")
    )
    assert token.startswith("cs_") and secret.startswith("whsec_")
    assert "Authorization: Bearer" in added.stdout and "only now" in added.stdout

    status, body = await running.submit(proposal(), token=token)
    assert status == 201 and body["agent"] == "deploy-bot"

    again = await countersign("agents", "add", "deploy-bot", database_url=database_url, cwd=tmp_path)
    assert again.returncode != 0 and "already exists" in again.stderr

    listed = await countersign("agents", "list", database_url=database_url, cwd=tmp_path)
    assert listed.returncode == 0 and "deploy-bot" in listed.stdout and "active" in listed.stdout
    assert token not in listed.stdout and token[:10] in listed.stdout  # only the prefix, never the token

    revoked = await countersign("agents", "revoke", "deploy-bot", database_url=database_url, cwd=tmp_path)
    assert revoked.returncode == 0, revoked.stderr
    status, body = await running.submit(proposal(), token=token)
    assert status == 401
    as_json = await countersign("agents", "list", "--json", database_url=database_url, cwd=tmp_path)
    by_name = {a["name"]: a for a in json.loads(as_json.stdout)}
    assert by_name["deploy-bot"]["revoked"] is True and by_name["remediator"]["revoked"] is False

    missing = await countersign("agents", "revoke", "nobody", database_url=database_url, cwd=tmp_path)
    assert missing.returncode == 1 and "no agent named 'nobody'" in missing.stderr


async def test_actions_list_and_show(running: Running, database_url: str, tmp_path: Path) -> None:
    _, pending = await running.submit(proposal(summary="Scale the checkout pods down"))
    _, recorded = await running.submit(proposal(service="search", summary="Warm the search cache"))

    listed = await countersign("actions", "list", database_url=database_url, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split()[0] == str(recorded["id"]) and lines[1].split()[0] == str(
        pending["id"]
    )  # newest first
    assert "pending" in lines[1] and "checkout-api" in lines[1] and "Scale the checkout" in lines[1]

    only: Any = await countersign(
        "actions", "list", "--status", "recorded", "--json", database_url=database_url, cwd=tmp_path
    )
    assert [a["id"] for a in json.loads(only.stdout)] == [recorded["id"]]
    by_service = await countersign(
        "actions", "list", "--service", "checkout-api", database_url=database_url, cwd=tmp_path
    )
    assert "Scale the checkout" in by_service.stdout and "Warm the search" not in by_service.stdout

    shown = await countersign("actions", "show", str(pending["id"]), database_url=database_url, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "Scale the checkout pods down" in shown.stdout and "U0OWNER" in shown.stdout
    shown_json = await countersign(
        "actions", "show", str(pending["id"]), "--json", database_url=database_url, cwd=tmp_path
    )
    record = json.loads(shown_json.stdout)
    assert record["id"] == pending["id"] and record["responsibility"]["owner"] == "U0OWNER"

    missing = await countersign("actions", "show", "987654", database_url=database_url, cwd=tmp_path)
    assert missing.returncode == 1 and "no action 987654" in missing.stderr


async def test_policy_check_prints_the_rule_for_every_service_and_action_type(tmp_path: Path) -> None:
    good = tmp_path / "policy.yml"
    good.write_text(FAST)
    done = await countersign("policy", "check", str(good), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert (
        "OK" in out and "service checkout-api" in out and "service search" in out and "service batch" in out
    )
    checkout = out.split("service checkout-api")[1].split("service search")[0]
    rows = {tuple(line.split()[:2]): line for line in checkout.splitlines() if "->" in line}
    assert (
        "forbidden" in rows[("production", "drop_database")]
        and "rule 1" in rows[("production", "drop_database")]
    )
    assert "approve" in rows[("production", "restart")] and "rule 2" in rows[("production", "restart")]
    assert "acknowledge" in rows[("staging", "restart")] and "rule 3" in rows[("staging", "restart")]
    assert "autonomous" in rows[("staging", "*")] and "rule 4" in rows[("staging", "*")]
    assert "escalation: owner@0s, secondary@2s, leadership@4s" in checkout


# SPEC.md's example policy, verbatim.
SPEC_EXAMPLE = """\
leadership:
  channel: C0LEADERS          # escalation's last stop, and the daily digest
  users: [U0VP]               # may respond once an action reaches leadership
admins: [U0ADMIN]             # may respond to anything
tiers:
  tier1:
    escalation:               # steps in order; `after` counts from submission
      - {notify: owner, after: 0s}
      - {notify: secondary, after: 5m}
      - {notify: leadership, after: 15m}
    remind_every: 2m          # re-ping the current level while it stays pending
    timeout: 30m              # then a proposed action gets on_timeout
    on_timeout: deny          # deny (default) | approve
services:
  checkout-api:
    owner: U0OWNER            # Slack user ID or email
    secondary: dana@example.com
    channel: C0CHECKOUT
    tier: tier1
rules:                        # first match wins; a rule without match is the default
  - match: {action_type: [drop_database, delete_data]}
    mode: forbidden
  - match: {tier: tier1, environment: production}
    mode: approve
  - match: {action_type: [rollback, restart]}
    mode: acknowledge
  - mode: autonomous
"""


async def test_policy_check_on_the_spec_example_writes_durations_as_the_file_does(tmp_path: Path) -> None:
    """The report wrote the chain in seconds and the rest as floats ('remind_every 120.0; timeout
    1800.0') beside a file that says 2m and 30m; now all as the file writes them."""
    path = tmp_path / "policy.yml"
    path.write_text(SPEC_EXAMPLE)
    done = await countersign("policy", "check", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert ("escalation: owner@0s, secondary@5m, leadership@15m; remind_every 2m; timeout 30m; on_timeout deny"
            in done.stdout), done.stdout
    rows = {tuple(line.split()[:2]): line.split()[3] for line in done.stdout.splitlines() if "->" in line}
    assert rows[("production", "drop_database")] == "forbidden" and rows[("staging", "rollback")] == "acknowledge"
    assert rows[("production", "rollback")] == "approve" and rows[("staging", "*")] == "autonomous"


@pytest.mark.parametrize(("old", "new", "where", "bad"), [
    ("    owner: U0OWNER ", '    owner: "" ', "services.checkout-api.owner", "''"),
    ("    owner: U0OWNER ", "    owner: olive ", "services.checkout-api.owner", "'olive'"),
    ("    secondary: dana@example.com", "    secondary: '@dana'", "services.checkout-api.secondary", "'@dana'"),
    ("  users: [U0VP] ", "  users: [U0VP, vic] ", "leadership.users.1", "'vic'"),
    ("admins: [U0ADMIN] ", "admins: [admin] ", "admins.0", "'admin'"),
])
async def test_policy_check_refuses_a_person_slack_cannot_page(tmp_path: Path, old: str, new: str, where: str,
                                                               bad: str) -> None:
    """An owner of '' or 'olive' was accepted ('owner , channel C0CHECKOUT') and paged nobody: SPEC
    gives people as Slack user IDs or emails."""
    assert old in SPEC_EXAMPLE
    path = tmp_path / "policy.yml"
    path.write_text(SPEC_EXAMPLE.replace(old, new))
    done = await countersign("policy", "check", str(path), cwd=tmp_path)
    assert done.returncode == 1, done.stdout
    assert f"{where}: {bad} is not a Slack user ID (like U0123ABCD) or an email" in done.stderr, done.stderr
    assert f"{path}:" in done.stderr and "Traceback" not in done.stderr


async def test_policy_check_prints_each_problem_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    text = FAST.replace("    owner: U0BATCH\n", "").replace("    tier: tier2", "    tier: tier9")
    bad.write_text(text)
    done = await countersign("policy", "check", str(bad), cwd=tmp_path)
    assert done.returncode == 1
    assert f"{bad}:" in done.stderr and "missing required key 'owner'" in done.stderr
    tier_line = next(i for i, line in enumerate(text.splitlines(), 1) if "tier: tier9" in line)
    assert (
        f"{bad}:{tier_line}: services.search.tier: unknown tier 'tier9'" in done.stderr
        or "missing required key 'owner'" in done.stderr
    )  # pydantic stops at the first phase's errors


@pytest.mark.parametrize(
    "args", [["--help"], ["agents", "--help"], ["actions", "--help"], ["policy", "--help"]]
)
async def test_help(args: list[str], tmp_path: Path) -> None:
    done = await countersign(*args, cwd=tmp_path)
    assert done.returncode == 0 and "Usage" in done.stdout
