"""Group commit (bot.actions.writer): many submissions, one transaction, each answered only after
COMMIT; a poisoned submission answers alone; keys inside a batch; a full queue and a dead writer
answer 503 with Retry-After, never hang. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import pytest
from sqlalchemy import func, select, text
from sqlmodel import col

from bot.actions.idempotency import body_hash
from bot.actions.submit import Prepared, prepare
from bot.actions.writer import LANES, SECOND_LANE_DEPTH
from bot.contract.errors import ApiError
from bot.contract.schemas import ActionIn
from bot.policy.rules import Policy, parse_policy
from storage.ledger.verify import verify
from storage.models import Action, Agent, EscalationStep, IdempotencyKey, LedgerEntry, OutboxMessage
from storage.queries import agents
from tests.conftest import Running, proposal
from tests.policies import CALM
from tests.writer_helpers import Gate, hold_then_batch, one_lane, until_queued, writer_of


@pytest.fixture
def policy() -> Policy:
    """These tests compare 201 bodies with later GETs and count rows: a 1 s reminder (FAST) that
    fired in between on a loaded machine changed `next_at` and added rows."""
    return parse_policy(CALM, "calm-policy.yml")


async def counts(running: Running) -> dict[str, int]:
    async with running.svc.db.read_session() as session:
        return {name: int((await session.execute(select(func.count()).select_from(model))).scalar_one())
                for name, model in (("actions", Action), ("steps", EscalationStep), ("outbox", OutboxMessage),
                                    ("ledger", LedgerEntry))}


async def test_a_batch_is_written_in_one_transaction_and_answers_each(running: Running) -> None:
    answers = await hold_then_batch(running, [proposal(summary=f"batch {i}") for i in range(20)])
    assert [s for s, _ in answers] == [201] * 20
    assert writer_of(running).batch_sizes[-1] == 20
    ids = [b["id"] for _, b in answers]
    assert len(set(ids)) == 20 and ids == sorted(ids)  # in arrival order
    for _, body in answers:  # each answer is the committed row, as GET gives it
        got_status, got = await running.get(f"/v1/actions/{body['id']}")
        # The 201 adds `paused` (SPEC); GET adds `result` (none yet). Everything else is the same row.
        assert got_status == 200 and got.pop("result") is None and body.get("paused") is None
        assert got == {k: v for k, v in body.items() if k != "paused"}
    async with running.svc.db.read_session() as session:
        submitted = (await session.execute(select(col(LedgerEntry.action_id)).where(
            col(LedgerEntry.event) == "action.submitted"))).scalars().all()
        paged = (await session.execute(select(col(EscalationStep.action_id)))).scalars().all()
    report = await verify(running.svc.db.engine)
    assert set(ids) <= set(submitted) and set(ids) <= set(paged)  # no action without its entry and page
    assert report.ok


async def test_one_poisoned_submission_never_fails_the_others(running: Running) -> None:
    """A submission whose row breaks a constraint (its agent does not exist) rolls the batch back;
    the others are written through the single path and answered 201; only it fails."""
    ghost = Agent(id=987654321, name="ghost", token_hash="x", token_prefix="x", callback_secret="x")

    async def poison(batch: list[Prepared]) -> None:
        for i, prep in enumerate(batch):
            if prep.req.summary == "poison":
                batch[i] = dataclasses.replace(prep, agent=ghost)

    writer = writer_of(running)
    gate = Gate()
    writer.before_batch = gate
    first = asyncio.create_task(running.submit(proposal(summary="opens the gate")))
    await asyncio.wait_for(gate.waiting.wait(), 10)
    writer.before_batch = poison
    bodies = [proposal(summary="poison" if i == 3 else f"good {i}") for i in range(8)]
    tasks = [asyncio.create_task(running.submit(b)) for b in bodies]
    await until_queued(writer, len(bodies))
    gate.open.set()
    await first
    answers = await asyncio.gather(*tasks)
    assert [s for s, _ in answers] == [201, 201, 201, 500, 201, 201, 201, 201]
    assert writer.batch_sizes[-1] == 8
    summaries = [b["summary"] for s, b in answers if s == 201]
    _, listed = await running.get("/v1/actions?limit=50")
    assert sorted(summaries) == sorted(a["summary"] for a in listed["items"] if a["summary"].startswith("good"))


async def test_a_revoked_token_in_a_batch_that_fell_back_to_the_single_path_is_refused(running: Running) -> None:
    """The batch found the revoked agent, then failed on a poisoned submission and rolled back; each
    submission is written again alone, and the single path checks the agent again itself."""
    ghost = Agent(id=987654321, name="ghost", token_hash="x", token_prefix="x", callback_secret="x")
    token, _ = await running.add_agent("short-lived")
    for _ in range(2):  # the first batch ever empties the cache (bot.actions.tokens); the second keeps it
        assert (await running.submit(proposal(), token=token))[0] == 201

    async def poison(batch: list[Prepared]) -> None:
        for i, prep in enumerate(batch):
            if prep.req.summary == "poison":
                batch[i] = dataclasses.replace(prep, agent=ghost)

    writer, gate = writer_of(running), Gate()
    await one_lane(writer)
    writer.before_batch = gate
    first = asyncio.create_task(running.submit(proposal(summary="opens the gate")))
    await asyncio.wait_for(gate.waiting.wait(), 10)
    writer.before_batch = poison
    async with running.svc.db.session() as session:
        await agents.revoke(session, "short-lived")
        await session.commit()
    tasks = [asyncio.create_task(running.submit(proposal(summary="poison"))),
             asyncio.create_task(running.submit(proposal(summary="revoked meanwhile"), token=token)),
             asyncio.create_task(running.submit(proposal(summary="good")))]
    await until_queued(writer, 3)
    gate.open.set()
    assert (await first)[0] == 201
    (s1, _), (s2, b2), (s3, _) = await asyncio.gather(*tasks)
    assert (s1, s2, s3) == (500, 401, 201) and b2["error"]["code"] == "unauthorized"
    assert writer.batch_sizes[-1] == 3
    _, listed = await running.get("/v1/actions?limit=50")
    assert "revoked meanwhile" not in [a["summary"] for a in listed["items"]]


async def test_same_key_twice_in_one_batch_gives_one_action(running: Running) -> None:
    body = proposal(summary="once only")
    answers = await hold_then_batch(running, [body, body, proposal(summary="other body")],
                                    [{"Idempotency-Key": "k-1"}, {"Idempotency-Key": "k-1"},
                                     {"Idempotency-Key": "k-1"}])
    (s1, b1), (s2, b2), (s3, b3) = answers
    assert (s1, s2) == (201, 201) and b1 == b2  # the draft's "same response"
    assert s3 == 422 and b3["error"]["code"] == "idempotency_key_reused"
    again = await running.submit(body, headers={"Idempotency-Key": "k-1"})  # a later batch: the stored answer
    assert again == (201, b1)
    _, listed = await running.get("/v1/actions")
    assert [a["summary"] for a in listed["items"]].count("once only") == 1


async def test_forbidden_and_autonomous_in_one_batch(running: Running) -> None:
    before = await counts(running)
    answers = await hold_then_batch(running, [
        proposal(action_type="drop_database"),  # forbidden by FAST
        proposal(service="batch", action_type="cleanup"),  # autonomous
        proposal(),
    ])
    assert [s for s, _ in answers] == [403, 201, 201]
    assert answers[0][1]["error"]["code"] == "forbidden"
    assert answers[1][1]["status"] == "recorded" and answers[2][1]["status"] == "pending"
    after = await counts(running)
    assert after["actions"] - before["actions"] == 3  # the gate's, the autonomous and the proposal


async def test_a_full_queue_answers_503_with_retry_after(running: Running) -> None:
    writer = writer_of(running)
    await writer.stop()
    writer.capacity = 2
    writer.start()
    gate = Gate()
    writer.before_batch = gate
    try:
        first = asyncio.create_task(running.submit(proposal()))
        await asyncio.wait_for(gate.waiting.wait(), 10)
        queued = [asyncio.create_task(running.submit(proposal())) for _ in range(2)]
        await until_queued(writer, 2)
        async with running.http.post(f"{running.url}/v1/actions", json=proposal(),
                                     headers={"Authorization": f"Bearer {running.token}"}) as resp:
            assert resp.status == 503 and resp.headers["Retry-After"] == "1"
            assert (await resp.json())["error"]["code"] == "unavailable"
        gate.open.set()
        assert [s for s, _ in await asyncio.gather(first, *queued)] == [201, 201, 201]
    finally:
        writer.before_batch = None


async def test_a_dead_writer_fails_its_batch_retryably_and_restarts(running: Running) -> None:
    writer = writer_of(running)
    died = False

    async def die_once(_: list[Prepared]) -> None:
        nonlocal died
        if not died:
            died = True
            raise RuntimeError("writer bug")

    writer.before_batch = die_once
    async with running.http.post(f"{running.url}/v1/actions", json=proposal(),
                                 headers={"Authorization": f"Bearer {running.token}"}) as resp:
        assert resp.status == 503 and resp.headers["Retry-After"] == "1"
    status, _ = await running.submit(proposal())
    assert status == 201 and writer.restarts == 1 and writer.running
    writer.before_batch = None


async def test_revoked_token_is_refused_even_when_cached(running: Running) -> None:
    token, _ = await running.add_agent("short-lived")
    assert (await running.submit(proposal(), token=token))[0] == 201  # now in the token cache
    async with running.svc.db.session() as session:  # as `agents revoke` does (any process)
        await agents.revoke(session, "short-lived")
        await session.commit()
    status, body = await running.submit(proposal(), token=token)
    assert status == 401 and body["error"]["code"] == "unauthorized"
    assert (await running.submit(proposal()))[0] == 201  # the others' cached tokens still work


async def test_a_deep_queue_opens_a_second_lane_on_postgresql(running: Running) -> None:
    """While one batch waits (here: held), a queue of SECOND_LANE_DEPTH or more is written by a
    second batch in its own transaction, and answered, before the first commits; both verify."""
    writer = writer_of(running)
    assert writer.lanes == LANES[running.svc.db.dialect]
    if writer.lanes == 1:
        pytest.skip("SQLite has one writer: one lane")
    gate = Gate()

    async def hold_first(batch: list[Prepared]) -> None:
        if any(p.req.summary == "held" for p in batch):
            await gate(batch)

    writer.before_batch = hold_first
    try:
        first = asyncio.create_task(running.submit(proposal(summary="held")))
        await asyncio.wait_for(gate.waiting.wait(), 10)
        deep = [running.submit(proposal(summary=f"deep {i}")) for i in range(SECOND_LANE_DEPTH + 4)]
        answers = await asyncio.wait_for(asyncio.gather(*deep), 20)  # one lane would wait for the gate
        assert [s for s, _ in answers] == [201] * len(deep) and not first.done()
        gate.open.set()
        assert (await first)[0] == 201
    finally:
        writer.before_batch = None
        gate.open.set()
    assert (await verify(running.svc.db.engine)).ok


async def test_a_key_taken_while_the_batch_ran_is_claimed_first_on_the_batchs_second_try(
        running: Running, caplog: pytest.LogCaptureFixture) -> None:
    """A batch writes its free Idempotency-Keys with their answers at the end (bot.actions.batch_keys).
    Here another transaction takes one of them after the batch found it free: the batch waits for
    that transaction, is rolled back, and is written again with its keys claimed first. The raced
    request is answered 409 (the other holder is still in flight), the others 201, each action once.
    PostgreSQL only: on SQLite the batch holds the one writer lock from its first statement."""
    if running.svc.db.dialect != "postgresql":
        pytest.skip("SQLite's writer lock leaves no room for the race")
    caplog.set_level(logging.INFO, logger="countersign.writer")
    raced, free = proposal(summary="raced"), proposal(summary="free key")
    async with running.svc.db.session() as session:
        agent_id = (await session.execute(select(col(Agent.id)))).scalars().first()
    async with running.svc.db.session() as holder:  # claims "raced" and keeps its transaction open
        holder.add(IdempotencyKey(agent_id=agent_id, key="raced", request_hash=body_hash(raced),  # type: ignore[arg-type]
                                  created_at=running.svc.clock()))
        await holder.flush()
        batch = asyncio.create_task(hold_then_batch(
            running, [raced, free, proposal(summary="no key")],
            [{"Idempotency-Key": "raced"}, {"Idempotency-Key": "free"}, None]))
        for _ in range(1000):  # the batch's INSERT waits on the holder
            # A new transaction each time: PostgreSQL keeps one pg_stat_activity snapshot a transaction.
            async with running.svc.db.read_session() as watcher:
                waiting = (await watcher.execute(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND datname = current_database()"))).scalar_one()
            if waiting or batch.done():
                break
            await asyncio.sleep(0.01)
        assert waiting and not batch.done()
        await holder.commit()
    (s1, b1), (s2, b2), (s3, _) = await asyncio.wait_for(batch, 20)
    assert (s1, s2, s3) == (409, 201, 201) and b1["error"]["code"] == "idempotency_key_in_flight"
    assert "claimed meanwhile" in caplog.text
    _, listed = await running.get("/v1/actions?limit=50")
    summaries = [a["summary"] for a in listed["items"]]
    assert "raced" not in summaries and summaries.count("free key") == summaries.count("no key") == 1
    assert await running.submit(free, headers={"Idempotency-Key": "free"}) == (201, b2)  # its stored answer
    assert (await verify(running.svc.db.engine)).ok


async def test_a_cached_token_is_rechecked_by_a_batch_that_did_not_see_the_stamp_move(running: Running) -> None:
    """Only the first batch to read a moved revocation stamp sees it move (the other lane, or a batch
    written again after a rollback, reads it later). A submission whose token was looked up in the
    cache before that batch emptied it is still re-checked by whichever batch writes it."""
    writer = writer_of(running)
    token, _ = await running.add_agent("short-lived")
    assert (await running.submit(proposal(), token=token))[0] == 201  # cached; the stamp recorded
    looked_up_in = writer.tokens.epoch
    agent = await writer.tokens.agent(token)  # as the auth middleware got it, from the cache
    assert agent is not None
    async with running.svc.db.session() as session:  # as `agents revoke` does (any process)
        await agents.revoke(session, "short-lived")
        await session.commit()
    assert (await running.submit(proposal()))[0] == 201  # another batch reads the moved stamp first
    assert writer.tokens.epoch > looked_up_in
    body = proposal(summary="authenticated before the revocation was seen")
    late = prepare(running.svc, agent, ActionIn.model_validate(body, context={"now": running.svc.clock()}),
                   raw=body, auth_epoch=looked_up_in)
    [result] = await writer.write_batch([late])
    assert isinstance(result, ApiError) and result.status == 401
    _, listed = await running.get("/v1/actions?limit=50")
    assert body["summary"] not in [a["summary"] for a in listed["items"]]
