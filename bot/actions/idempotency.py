"""Idempotency-Key (the IETF httpapi draft): an agent that retries a request gets the first answer.

- the same key with the same body: the stored response of the first request (no second action);
- the same key with another body: 422 idempotency_key_reused;
- the same key while the first request is still being processed: 409 idempotency_key_in_flight
  (a first request that died mid-flight is taken over after ABANDONED_AFTER).
Keys belong to one agent. A claim is its own short transaction, so a concurrent request sees it;
the answer is stored in the transaction that does the work, so they commit together.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.contract.errors import ApiError
from bot.services import Services
from storage.models import Agent, IdempotencyKey

# A key whose first request died mid-flight is taken over after this long.
ABANDONED_AFTER = timedelta(seconds=60)

Answer = tuple[int, dict[str, Any]]  # (HTTP status, JSON body)
# Does the work once; given the claimed key's row id (None without a key) to `store` its answer.
Work = Callable[[int | None], Awaitable[Answer]]


def body_hash(raw: dict[str, Any]) -> str:
    """The same JSON with its keys in another order is the same request."""
    return hashlib.sha256(json.dumps(raw, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


async def once(svc: Services, agent: Agent, key: str | None, raw: dict[str, Any], work: Work) -> Answer:
    """Run `work` at most once per (agent, key); a repeat gets the stored answer (or its error)."""
    claimed = await claim(svc, agent, key, raw) if key else None
    if isinstance(claimed, tuple):
        return claimed
    try:
        return await work(claimed)
    except ApiError as exc:
        if claimed is not None:
            await finish(svc, claimed, exc.status, exc.body())
        raise
    except BaseException:
        if claimed is not None:
            await release(svc, claimed)
        raise


async def claim(svc: Services, agent: Agent, key: str, raw: dict[str, Any]) -> int | Answer:
    """The key's row id, now ours (in flight); or the first request's stored answer. Raises the
    422 (other body), the 409 (still in flight) or the first request's stored refusal."""
    digest, now = body_hash(raw), svc.clock()
    async with svc.db.session() as session:
        row = IdempotencyKey(agent_id=agent.id, key=key, request_hash=digest, created_at=now)  # type: ignore[arg-type]
        session.add(row)
        try:
            await session.commit()
            assert row.id is not None
            return row.id
        except IntegrityError:
            await session.rollback()
        existing = (
            await session.execute(
                select(IdempotencyKey).where(col(IdempotencyKey.agent_id) == agent.id,
                                             col(IdempotencyKey.key) == key)
            )
        ).scalar_one()
        if existing.request_hash != digest:
            raise ApiError(422, "idempotency_key_reused",
                           "this Idempotency-Key was used with a different request body")
        if existing.in_flight:
            if now - existing.created_at < ABANDONED_AFTER:
                raise ApiError(409, "idempotency_key_in_flight",
                               "a request with this Idempotency-Key is still being processed; retry later")
            existing.created_at = now  # abandoned by a crashed request: take it over
            session.add(existing)
            await session.commit()
            assert existing.id is not None
            return existing.id
        assert existing.response_status is not None and existing.response_body is not None
        if existing.response_status >= 400:
            err = dict(existing.response_body["error"])
            raise ApiError(existing.response_status, err.pop("code"), err.pop("message"), **err)
        return existing.response_status, existing.response_body


async def store(session: AsyncSession, claimed: int, status: int, body: dict[str, Any]) -> None:
    """Keep the answer for repeats, in the caller's transaction (it commits with the work)."""
    row = await session.get(IdempotencyKey, claimed)
    assert row is not None
    row.in_flight, row.response_status, row.response_body = False, status, body
    session.add(row)


async def finish(svc: Services, claimed: int, status: int, body: dict[str, Any]) -> None:
    """The work refused: a final refusal is kept for repeats; a 409, a 422 or a 5xx frees the key."""
    async with svc.db.session() as session:
        row = await session.get(IdempotencyKey, claimed)
        if row is not None and row.in_flight:
            if status in (409, 422) or status >= 500:
                await session.delete(row)  # not a final answer for this key: let a retry run
            else:
                await store(session, claimed, status, body)
        await session.commit()


async def release(svc: Services, claimed: int) -> None:
    """The work failed unexpectedly: free the key so that a retry runs."""
    async with svc.db.session() as session:
        await session.execute(delete(IdempotencyKey).where(col(IdempotencyKey.id) == claimed))
        await session.commit()
