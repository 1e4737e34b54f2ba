"""The reads behind the web pages (handlers.web): an action's ledger entries with the hashes they
link to, the action page's freshness, and a service's decided actions over a window (charted in
Python, a bounded scan)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.ledger.chain import LEDGER
from storage.models import Action, Agent, EscalationStep


class LedgerRow(NamedTuple):
    """One of an action's ledger entries, with the hash of the entry before it in the chain."""

    seq: int
    at: datetime
    event: str
    action_id: int | None
    actor: str | None
    data: Any
    prev_hash: str
    hash: str
    before: str | None  # the hash of entry seq - 1 (None: there is none)


async def ledger_with_links(session: AsyncSession, action_id: int) -> list[LedgerRow]:
    """The action's ledger entries in chain order, each with the hash it must link to, in one query
    of Core rows (no ORM objects: a page's history can run to hundreds of entries)."""
    entry, before = LEDGER.alias("entry"), LEDGER.alias("before")
    stmt = (
        select(entry.c.seq, entry.c.at, entry.c.event, entry.c.action_id, entry.c.actor, entry.c.data,
               entry.c.prev_hash, entry.c.hash, before.c.hash)
        .outerjoin(before, before.c.seq == entry.c.seq - 1)
        .where(entry.c.action_id == action_id)
        .order_by(entry.c.seq)
    )
    return [LedgerRow(*row) for row in (await session.execute(stmt)).all()]


class Decided(NamedTuple):
    """One action of a service, as its track record needs it."""

    agent: str
    status: str
    outcome: str | None
    accountability: str | None
    created_at: datetime
    decided_at: datetime | None


async def service_history(session: AsyncSession, service: str, since: datetime, limit: int = 20000) -> list[Decided]:
    """The service's actions submitted since `since`, newest first, at most `limit`."""
    stmt = (
        select(col(Agent.name), col(Action.status), col(Action.outcome), col(Action.accountability),
               col(Action.created_at), col(Action.decided_at))
        .join(Agent, col(Agent.id) == col(Action.agent_id))
        .where(col(Action.service) == service, col(Action.created_at) >= since)
        .order_by(col(Action.id).desc())
        .limit(limit)
    )
    return [Decided(*row) for row in (await session.execute(stmt)).all()]


async def steps(session: AsyncSession, action_id: int) -> list[EscalationStep]:
    """The escalation steps fired for the action (pages, reminders, timeout, failures), in order."""
    rows = await session.execute(
        select(EscalationStep).where(col(EscalationStep.action_id) == action_id)
        .order_by(col(EscalationStep.fired_at), col(EscalationStep.id)))
    return list(rows.scalars())


FRESHNESS_SQL = {
    # The one read on every view of a cached page: straight on the driver, one round trip. Through an
    # ORM session it took a BEGIN, the statement's cursor (four hops to aiosqlite's thread) and a
    # ROLLBACK: ~10x the time. A single SELECT needs no transaction: it is its own snapshot.
    "sqlite": "SELECT version, (SELECT max(seq) FROM ledger WHERE action_id = ?) FROM actions WHERE id = ?",
    "postgresql": "SELECT version, (SELECT max(seq) FROM ledger WHERE action_id = $1) FROM actions WHERE id = $1",
}


async def freshness(conn: AsyncConnection, action_id: int) -> tuple[int, int] | None:
    """(the action's version, its last ledger seq): every change to what the action page shows (a
    decision, a response, a fired step, a result) bumps one of them. None: no such action."""
    driver: Any = (await conn.get_raw_connection()).driver_connection
    if conn.dialect.name == "postgresql":
        row = await driver.fetchrow(FRESHNESS_SQL["postgresql"], action_id)
    else:
        rows = await driver.execute_fetchall(FRESHNESS_SQL["sqlite"], (action_id, action_id))
        row = rows[0] if rows else None
    return (int(row[0]), int(row[1] or 0)) if row else None
