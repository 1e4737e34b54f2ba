"""Idempotency-Key (the IETF draft's rules): same key and body -> the stored response and no second
page; other body -> 422; still in flight -> 409. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.demo.fakeslack import FakeSlack
from bot.policy.rules import Policy, parse_policy
from storage.db import Database
from storage.models import Action, IdempotencyKey, OutboxMessage
from tests.conftest import Running, proposal
from tests.integration.test_api import post
from tests.policies import CALM

Gate = Callable[[], Awaitable[None]]


class _GatedSession(AsyncSession):
    """A session whose transaction starts only once its gate lets it."""

    def __init__(self, engine: AsyncEngine, gate: Gate) -> None:
        super().__init__(engine, expire_on_commit=False)
        self.gate = gate

    async def __aenter__(self) -> _GatedSession:
        await self.gate()
        await super().__aenter__()
        return self


class GatedDatabase(Database):
    """The database the app is handed, whose next write sessions the test holds in turn: `gates`,
    one per session() call (None lets that one through)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.gates: list[Gate | None] = []

    def session(self) -> AsyncSession:
        gate = self.gates.pop(0) if self.gates else None
        return super().session() if gate is None else _GatedSession(self.engine, gate)


@pytest.fixture
def policy() -> Policy:
    """These tests count pages and outbox rows: no reminder or secondary page may join them (under
    FAST, a replay that took over a second on a loaded machine met the owner's 1 s reminder)."""
    return parse_policy(CALM, "calm-policy.yml")


async def rows(running: Running, model: Any) -> int:
    async with running.svc.db.session() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def outbox_rows(running: Running) -> list[tuple[str, str | None, int | None]]:
    """(method, purpose, action id) of every outbox row: a failure shows which message was added."""
    async with running.svc.db.session() as session:
        found = await session.execute(select(col(OutboxMessage.method), col(OutboxMessage.purpose),
                                             col(OutboxMessage.action_id))
                                      .order_by(col(OutboxMessage.id)))
        return [(m, p, a) for m, p, a in found.all()]


async def test_same_key_and_body_replays_the_response_and_pages_once(
    running: Running, fake_slack: FakeSlack
) -> None:
    key = {"Idempotency-Key": "deploy-7f3a"}
    first = await post(running, proposal(), headers=key)
    assert first[0] == 201
    outbox_after_first = await outbox_rows(running)
    await fake_slack.wait_for(lambda: fake_slack.posts("U0OWNER") and fake_slack.posts("C0CHECKOUT"))
    posts_after_first = len(fake_slack.calls_to("chat.postMessage"))

    # The same body with its keys in another order is the same request.
    reordered = dict(reversed(list(proposal().items())))
    for body in (proposal(), reordered):
        assert await post(running, body, headers=key) == first
    assert await rows(running, Action) == 1
    assert await outbox_rows(running) == outbox_after_first
    # The relay keeps ticking; give it something else to do and let it finish, then count again.
    await post(running, proposal(service="search"))
    await fake_slack.wait_for(lambda: fake_slack.posts("C0SEARCH"))
    owner_pages = [c for c in fake_slack.calls_to("chat.postMessage") if c.args.get("channel") == "U0OWNER"]
    assert len(owner_pages) == 1
    assert len(fake_slack.calls_to("chat.postMessage")) == posts_after_first + 1


async def test_same_key_other_body_is_422(running: Running) -> None:
    key = {"Idempotency-Key": "k-1"}
    assert (await post(running, proposal(), headers=key))[0] == 201
    status, out = await post(running, proposal(summary="something else"), headers=key)
    assert status == 422 and out["error"]["code"] == "idempotency_key_reused"
    assert await rows(running, Action) == 1


async def test_same_key_while_the_first_is_in_flight_never_makes_a_second_action(running: Running) -> None:
    """The IETF draft lets a request whose key is in flight get either 409 or, once the first is
    done, the first's answer. Group commit queues it behind the first in the writer, so it gets the
    first's 201; a different body under the key is refused (422, or 409 while in flight)."""
    key = {"Idempotency-Key": "slow-one"}
    same = [post(running, proposal(), headers=key) for _ in range(8)]
    other = post(running, proposal(summary="other"), headers=key)
    results = await asyncio.gather(*same, other)
    created = {json.dumps(body, sort_keys=True) for status, body in results if status == 201}
    assert len(created) == 1, results  # every 201 is the same answer
    for status, body in results:
        assert status in (201, 409, 422), (status, body)
        if status == 409:
            assert body["error"]["code"] == "idempotency_key_in_flight"
    assert await rows(running, Action) == 1


async def test_many_concurrent_requests_with_one_key_make_one_action(running: Running) -> None:
    key = {"Idempotency-Key": "burst"}
    answers = await asyncio.gather(*(post(running, proposal(), headers=key) for _ in range(12)))
    created = [body for status, body in answers if status == 201]
    assert {status for status, _ in answers} <= {201, 409}
    assert created and all(body == created[0] for body in created)
    assert await rows(running, Action) == 1
    assert await rows(running, IdempotencyKey) == 1


async def test_keys_belong_to_one_agent(running: Running) -> None:
    other, _ = await running.add_agent("deploy-bot")
    key = {"Idempotency-Key": "shared-name"}
    a = await post(running, proposal(), headers=key)
    b = await post(running, proposal(), headers=key, token=other)
    assert a[0] == b[0] == 201 and a[1]["id"] != b[1]["id"] and b[1]["agent"] == "deploy-bot"


async def test_a_refusal_is_replayed_too_and_reported_once(running: Running) -> None:
    key = {"Idempotency-Key": "forbidden-1"}
    body = proposal(action_type="delete_data")
    first = await post(running, body, headers=key)
    assert first[0] == 403
    assert await post(running, body, headers=key) == first
    async with running.svc.db.session() as session:
        reports = (
            await session.execute(
                select(func.count())
                .select_from(OutboxMessage)
                .where(col(OutboxMessage.purpose) == "forbidden")
            )
        ).scalar_one()
    assert reports == 1


async def test_an_unknown_service_does_not_burn_the_key(running: Running) -> None:
    # 422 for an unknown service is not final for the key: once the policy knows it, a retry works.
    key = {"Idempotency-Key": "early"}
    assert (await post(running, proposal(service="new-api"), headers=key))[0] == 422
    assert (await post(running, proposal(), headers=key))[0] == 201


async def test_a_bad_input_never_claims_the_key(running: Running) -> None:
    key = {"Idempotency-Key": "typo"}
    assert (await post(running, proposal(confidence=7), headers=key))[0] == 400
    assert (await post(running, proposal(), headers=key))[0] == 201


async def test_a_malformed_key_is_400(running: Running) -> None:
    for bad in ("x" * 256, "tab\there"):
        status, out = await post(running, proposal(), headers={"Idempotency-Key": bad})
        assert status == 400 and out["error"]["fields"][0]["field"] == "Idempotency-Key", json.dumps(out)
