"""SPEC's `decision.by` is `{slack_user_id, name}`: a person the policy gave by email is answered by
the Slack user id it resolves to, and named (a policy decision, a default at a person's level),
wherever the decision is read (GET, the list, the long poll, the callback), while the ledger keeps
what was recorded. Reading costs no query when no decision names an email or a policy's person."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import event

from bot.actions.record import action_record
from bot.clock import FakeClock
from bot.demo.fakeslack import FakeSlack
from bot.policy.rules import Policy
from tests.conftest import Running, proposal
from tests.conftest import test_policy as parse_test_policy
from tests.policies import CALM
from tests.slack_helpers import card_for, click, decided, ledger_events, until

BY_EMAIL = """
leadership: {channel: C0LEADERS, users: [U0VP]}
tiers:
  short:
    escalation:
      - {notify: owner, after: 0s}
      - {notify: secondary, after: 2s}
    timeout: 4s
services:
  checkout-api: {owner: U0OWNER, secondary: dana@example.com, channel: C0CHECKOUT, tier: short}
  search: {owner: owner@example.com, channel: C0SEARCH, tier: short}
  ghost: {owner: ghost@example.com, channel: C0GHOST, tier: short}
rules:
  - {match: {service: [search, ghost]}, mode: autonomous}
  - {mode: approve}
"""


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1))


@pytest.fixture
def policy(request: pytest.FixtureRequest) -> Policy:
    return parse_test_policy(getattr(request, "param", BY_EMAIL))


class Hook:
    """An agent's callback endpoint: what Countersign POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(json.loads(await request.read()))
        return web.Response(status=204)


@pytest.fixture
async def hook() -> AsyncIterator[tuple[Hook, str]]:
    receiver = Hook()
    app = web.Application()
    app.router.add_post("/decided", receiver.handle)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    yield receiver, str(server.make_url("/decided"))
    await server.close()


async def _get(running: Running, path: str) -> Any:
    status, body = await running.get(path)
    assert status == 200, body
    return body


async def test_a_policy_decision_answers_the_owners_slack_id_and_name(running: Running) -> None:
    status, out = await running.submit(proposal(service="search"))
    assert status == 201 and out["status"] == "recorded"
    want = {"slack_user_id": "U0OWNER", "name": "Olive Owner"}
    got = await _get(running, f"/v1/actions/{out['id']}")
    assert got["decision"]["by"] == want and got["decision"]["accountability"] == "policy"
    [item] = (await _get(running, "/v1/actions?service=search"))["items"]
    assert item["decision"]["by"] == want
    assert (await _get(running, f"/v1/actions/{out['id']}/decision"))["decision"]["by"] == want
    async with running.svc.db.read_session() as session:  # `/ai-actions show`, `actions show`: the cache
        record = await action_record(session, out["id"])
    assert record is not None and record["responsibility"]["accountable"] == want
    # The ledger keeps what was recorded at ingest: the policy's email.
    [entry] = [e for e in await ledger_events(running, out["id"]) if e.event == "decision"]
    assert entry.data["by"] == "owner@example.com" and entry.actor == "owner@example.com"


async def test_countersign_actions_list_answers_decision_by_like_the_api(running: Running, tmp_path: Path) -> None:
    from tests.processes.test_cli_audit import cli

    status, out = await running.submit(proposal(service="search"))
    assert status == 201
    await _get(running, f"/v1/actions/{out['id']}")  # the API read asks Slack once; the CLI reads the cache
    code, listed, err = await cli(running, tmp_path, "actions", "list", "--json")
    assert code == 0, err
    [item] = [i for i in json.loads(listed) if i["id"] == out["id"]]
    assert item["decision"]["by"] == {"slack_user_id": "U0OWNER", "name": "Olive Owner"}
    code, text, _ = await cli(running, tmp_path, "actions", "list")
    assert code == 0 and "U0OWNER" in text and "owner@example.com" not in text


@pytest.mark.parametrize("policy", [BY_EMAIL.replace("owner: owner@example.com", "owner: U0OWNER")],
                         indirect=True, ids=["owner-by-id"])
async def test_a_policy_decision_by_an_owner_given_as_id_is_named(running: Running, fake_slack: FakeSlack) -> None:
    """The stored name is the level word ("owner"); the answer names the person Slack knows."""
    status, out = await running.submit(proposal(service="search"))
    assert status == 201
    got = await _get(running, f"/v1/actions/{out['id']}")
    assert got["decision"]["by"] == {"slack_user_id": "U0OWNER", "name": "Olive Owner"}
    await _get(running, f"/v1/actions/{out['id']}")
    assert len(fake_slack.calls_to("users.info", user="U0OWNER")) == 1  # then from the cache


async def test_an_email_slack_does_not_know_is_answered_as_given(running: Running, fake_slack: FakeSlack) -> None:
    status, out = await running.submit(proposal(service="ghost"))
    assert status == 201
    for _ in range(2):
        got = await _get(running, f"/v1/actions/{out['id']}")
        assert got["decision"]["by"] == {"slack_user_id": "ghost@example.com", "name": "owner"}
    assert len(fake_slack.calls_to("users.lookupByEmail", email="ghost@example.com")) == 1  # cached: not found


async def test_a_timeout_at_the_secondary_given_by_email_answers_its_id_everywhere(
        running: Running, clock: FakeClock, hook: tuple[Hook, str]) -> None:
    receiver, url = hook
    status, out = await running.submit(proposal(callback_url=url))
    assert status == 201
    clock.advance(2.5)  # the secondary is paged
    await until(lambda: _level_is(running, out["id"], "secondary"))
    clock.advance(2.0)  # the timeout: accountability defaults to the secondary
    got = await until(lambda: _defaulted(running, out["id"]))
    want = {"slack_user_id": "U0DANA", "name": "Dana Secondary"}
    assert got["decision"]["by"] == want and got["decision"]["level"] == "secondary"
    [item] = [i for i in (await _get(running, "/v1/actions"))["items"] if i["id"] == out["id"]]
    assert item["decision"]["by"] == want
    await until(lambda: _arrived(receiver))
    assert receiver.bodies[0]["decision"]["by"] == want
    [entry] = [e for e in await ledger_events(running, out["id"]) if e.event == "decision"]
    assert entry.data["by"] == "dana@example.com"


async def _level_is(running: Running, action_id: int, level: str) -> bool:
    return bool((await _get(running, f"/v1/actions/{action_id}"))["escalation"]["level"] == level)


async def _defaulted(running: Running, action_id: int) -> dict[str, Any] | None:
    got = await _get(running, f"/v1/actions/{action_id}")
    return got if got["decision"] else None


async def _arrived(receiver: Hook) -> bool:
    await asyncio.sleep(0)
    return bool(receiver.bodies)


@pytest.fixture
def slack_users_reads(running: Running) -> Iterator[list[str]]:
    """Every statement that reads the slack_users cache by key, as a reader naming people does (the
    App Home's refresh, in the background, reads it by user id: not counted)."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "FROM slack_users" in statement and re.search(r'slack_users\."?key"? IN', statement):
            seen.append(statement)

    engine = running.svc.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


# No email anywhere in the chain (the cards would read the cache for it), and no reminders.
NO_EMAIL = CALM.replace("secondary: dana@example.com", "secondary: U0DANA")


@pytest.mark.parametrize("policy", [NO_EMAIL], indirect=True, ids=["no-email"])
async def test_reading_answers_without_a_cache_read_unless_a_decision_needs_one(
        running: Running, fake_slack: FakeSlack, slack_users_reads: list[str]) -> None:
    _, first = await running.submit(proposal())
    card = await card_for(fake_slack, "U0OWNER", first["id"])
    await click(running, fake_slack, "U0OWNER", card, "Approve")
    await decided(running, first["id"])
    await running.submit(proposal(summary="still pending"))
    slack_users_reads.clear()
    page = await _get(running, "/v1/actions")
    assert len(page["items"]) == 2 and slack_users_reads == []  # an explicit decision, a pending one
    await _get(running, f"/v1/actions/{first['id']}")
    assert slack_users_reads == []

    await running.submit(proposal(service="search"))  # autonomous (the catch-all rule): by the owner
    await running.submit(proposal(service="batch"))
    await _get(running, "/v1/actions")  # the first read asks Slack for the two owners' names
    assert len(fake_slack.calls_to("users.info")) == 2
    slack_users_reads.clear()
    await _get(running, "/v1/actions")
    assert len(slack_users_reads) == 1  # one read for the page's people, not one per action
    assert len(fake_slack.calls_to("users.info")) == 2  # Slack said it does not know them: remembered


async def test_ai_actions_answers_mention_a_person_the_policy_gave_by_email(
        running: Running, fake_slack: FakeSlack) -> None:
    """`/ai-actions` shows a mention (Slack renders it as the person's name), not the policy's email."""
    from tests.integration.test_commands import dump, slash

    status, out = await running.submit(proposal(service="search"))  # autonomous: accountable owner@
    assert status == 201
    for text in ("recent", "service search"):
        answer = dump(await slash(running, fake_slack, text))
        assert "<@U0OWNER>" in answer and "owner@example.com" not in answer, (text, answer)
    owners = dump(await slash(running, fake_slack, "who-owns checkout-api"))
    assert "secondary <@U0DANA>" in owners and "dana@example.com" not in owners
    ghost = dump(await slash(running, fake_slack, "who-owns ghost"))  # Slack does not know it: as given
    assert "owner ghost@example.com" in ghost
