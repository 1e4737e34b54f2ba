"""The group-commit ingest path's queries: Idempotency-Keys claimed for a whole batch, their answers
stored in one statement, and the revocation stamp read once per batch (bot.actions.writer)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, bindparam, func, inspect, select, tuple_, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import make_transient_to_detached
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.column_arrays import ColumnArrays
from storage.models import Action, Agent, EscalationStep, IdempotencyKey

KEYS: Table = IdempotencyKey.__table__  # type: ignore[attr-defined]
AGENTS: Table = Agent.__table__  # type: ignore[attr-defined]
ACTIONS: Table = Action.__table__  # type: ignore[attr-defined]
# (attribute, column key) of every stored field but the id: `extra` is the column "metadata".
_ACTION_FIELDS = [(prop.key, prop.columns[0].key) for prop in inspect(Action).column_attrs if prop.key != "id"]
_ACTION_COLUMNS = [column for _, column in _ACTION_FIELDS]
_ACTION_ARRAYS = ColumnArrays(ACTIONS, _ACTION_COLUMNS, returning=["id"])
_ACTIONS_WITH_IDS = ColumnArrays(ACTIONS, ["id", *_ACTION_COLUMNS])  # SQLite: ids known under its lock


async def insert_actions(session: AsyncSession, actions: list[Action]) -> None:
    """A batch's new actions in one statement; each gets its id and joins the session as a stored
    row (later changes to it are UPDATEs, as after an ORM flush). The ORM's own flush sends SQLite
    one INSERT per row, since it must read the ids back in order; under SQLite's writer lock the
    ids are known before the INSERT (max + 1, ...), so SQLite gets one executemany instead."""
    if not actions:
        return
    # Read from the objects' __dict__ (new_row filled every field): the instrumented getattr of ~30
    # fields per row was ~2 % of ingest CPU.
    values = [{column: fields[attr] if attr in fields else getattr(a, attr) for attr, column in _ACTION_FIELDS}
              for a in actions for fields in (a.__dict__,)]
    if session.bind.dialect.name == "sqlite":
        last = (await session.execute(select(func.max(ACTIONS.c.id)))).scalar() or 0
        ids = list(range(last + 1, last + 1 + len(actions)))
        rows = [(i, *(v[column] for column in _ACTION_COLUMNS)) for i, v in zip(ids, values, strict=True)]
        await session.run_sync(lambda sync: _ACTIONS_WITH_IDS.insert(sync.connection(), rows))
    else:  # PostgreSQL: one INSERT of column arrays, ids in order (storage.column_arrays)
        rows = [tuple(v[column] for column in _ACTION_COLUMNS) for v in values]
        ids = await session.run_sync(lambda sync: _ACTION_ARRAYS.ids(sync.connection(), rows))
    for action, new_id in zip(actions, ids, strict=True):
        vars(action)["id"] = new_id  # still transient: no instrumented set (~15 us), history is reset next
        make_transient_to_detached(action)
        session.add(action)


@dataclass(frozen=True)
class StoredKey:
    """A key some earlier request (or another process's batch) holds."""

    id: int
    request_hash: str
    in_flight: bool
    created_at: datetime
    status: int | None
    body: dict[str, Any] | None


# ON CONFLICT statements have no cache key in SQLAlchemy (a dialect insert's `inherit_cache` is
# False), so they are compiled on every execution (~0.7 ms a batch). SQLite: built once and run as
# an executemany, so the compiled form does not grow with the batch; PostgreSQL: column arrays
# (storage.column_arrays), nothing compiled.
_CLAIM = {
    "sqlite": sqlite_insert(KEYS).on_conflict_do_nothing(index_elements=["agent_id", "key"])
    .returning(KEYS.c.id, KEYS.c.agent_id, KEYS.c.key)
}


async def claim_keys(
    session: AsyncSession, keys: list[tuple[int, str, str]], now: datetime
) -> dict[tuple[int, str], int]:
    """Claim (agent id, key, request hash) in one INSERT .. ON CONFLICT DO NOTHING RETURNING, in key
    order (two processes' batches lock the unique index in the same order: no deadlock). Returns
    the row id of each key claimed now; a key missing from the answer is held already."""
    if not keys:
        return {}
    ordered = sorted(keys, key=lambda k: (k[0], k[1]))
    if session.bind.dialect.name == "postgresql":  # column arrays: no statement compiled per batch
        arrays = [(a, k, h, True, now) for a, k, h in ordered]
        claimed = await session.run_sync(lambda sync: _CLAIM_ARRAYS.insert(sync.connection(), arrays))
    else:
        rows = [{"agent_id": a, "key": k, "request_hash": h, "in_flight": True, "created_at": now}
                for a, k, h in ordered]
        claimed = list((await session.execute(_CLAIM["sqlite"], rows)).all())
    return {(int(a), str(k)): int(i) for i, a, k in claimed}


# PostgreSQL: the rows go in ORDER BY their ordinal, i.e. in key order, as the docstring requires.
_CLAIM_ARRAYS = ColumnArrays(KEYS, ["agent_id", "key", "request_hash", "in_flight", "created_at"],
                             returning=["id", "agent_id", "key"], on_conflict=["agent_id", "key"])


# Keys written with their answers at the end of a batch that found them free (one statement, no
# claim before and no UPDATE after): a key that another transaction claimed meanwhile is not written.
_ANSWERED = ["agent_id", "key", "request_hash", "in_flight", "response_status", "response_body", "created_at"]
_ANSWERED_ARRAYS = ColumnArrays(KEYS, _ANSWERED, returning=["agent_id", "key"], on_conflict=["agent_id", "key"])
# SQLite: the batch holds the one writer lock since its first statement, so a key it found free is
# still free: a plain executemany (a conflict would be a bug, and fails the batch like any error).
_ANSWERED_PLAIN = ColumnArrays(KEYS, _ANSWERED)


async def insert_answered_keys(session: AsyncSession, answered: list[tuple[int, str, str, int, dict[str, Any]]],
                               now: datetime) -> set[tuple[int, str]]:
    """(agent id, key, request hash, status, body) of keys free when the batch began, written with
    their answers in key order (two batches lock the unique index in the same order: no deadlock;
    one that holds a key makes the other wait for its commit). Returns the (agent id, key) pairs
    written: a pair missing was claimed by another transaction meanwhile."""
    if not answered:
        return set()
    rows = [(a, k, h, False, s, b, now) for a, k, h, s, b in sorted(answered, key=lambda a: (a[0], a[1]))]
    if session.bind.dialect.name == "postgresql":
        written = await session.run_sync(lambda sync: _ANSWERED_ARRAYS.insert(sync.connection(), rows))
        return {(int(a), str(k)) for a, k in written}
    await session.run_sync(lambda sync: _ANSWERED_PLAIN.insert(sync.connection(), rows))
    return {(a, k) for a, k, *_ in rows}


_HELD_COLUMNS = (KEYS.c.id, KEYS.c.agent_id, KEYS.c.key, KEYS.c.request_hash, KEYS.c.in_flight, KEYS.c.created_at,
                 KEYS.c.response_status, KEYS.c.response_body)
_HELD_AMONG = tuple_(KEYS.c.agent_id, KEYS.c.key).in_(bindparam("keys", expanding=True))
_HELD = select(*_HELD_COLUMNS).where(_HELD_AMONG)


def _stored_keys(rows: Any) -> dict[tuple[int, str], StoredKey]:
    return {(int(a), str(k)): StoredKey(int(i), h, bool(f), c, s, b) for i, a, k, h, f, c, s, b in rows}


async def held_keys(session: AsyncSession, keys: list[tuple[int, str]]) -> dict[tuple[int, str], StoredKey]:
    """The rows of keys held already (for their stored answers)."""
    if not keys:
        return {}
    return _stored_keys((await session.execute(_HELD, {"keys": keys})).all())


_STORE = (update(KEYS).where(KEYS.c.id == bindparam("key_id"))
          .values(in_flight=False, response_status=bindparam("status"), response_body=bindparam("body")))


# PostgreSQL: one UPDATE joined to column arrays (as storage.column_arrays inserts), the bodies
# encoded by the column's own bind processor.
_STORE_ARRAYS = ("UPDATE idempotency_keys AS k SET in_flight = false, response_status = t.s, response_body = t.b::json "
                 "FROM unnest($1::integer[], $2::integer[], $3::text[]) AS t(i, s, b) WHERE k.id = t.i")


def _store_arrays(connection: Connection, answers: list[tuple[int, int, dict[str, Any]]]) -> None:
    dialect = connection.dialect
    encode = KEYS.c.response_body.type.dialect_impl(dialect).bind_processor(dialect)
    assert encode is not None  # JSON always has one: the serializer
    connection.exec_driver_sql(_STORE_ARRAYS, ([i for i, _, _ in answers], [s for _, s, _ in answers],
                                               [encode(b) for _, _, b in answers]))


async def store_answers(session: AsyncSession, answers: list[tuple[int, int, dict[str, Any]]]) -> None:
    """(key row id, status, body) for every key this batch answered: one UPDATE (PostgreSQL) or one
    executemany UPDATE (SQLite)."""
    if not answers:
        return
    if session.bind.dialect.name == "postgresql":
        await session.run_sync(lambda sync: _store_arrays(sync.connection(), answers))
    else:
        await session.execute(_STORE, [{"key_id": i, "status": s, "body": b} for i, s, b in answers])


# The revocation stamp (one row) joined to the rows of the keys held already: built once.
_STAMP = select(func.count()).select_from(AGENTS).where(AGENTS.c.revoked_at.is_not(None)).subquery("stamp")
_START = select(_STAMP.c[0], *_HELD_COLUMNS).select_from(_STAMP.outerjoin(KEYS, _HELD_AMONG))


async def batch_start(session: AsyncSession, keys: list[tuple[int, str]]
                      ) -> tuple[int, dict[tuple[int, str], StoredKey]]:
    """A batch's first statement, one round trip: the revocation stamp, i.e. how many agents were
    ever revoked (`agents revoke` bumps it by one; agents are never un-revoked or deleted, so a
    changed stamp means some cached token may be dead), and the rows of those of `keys` held
    already (`held_keys`)."""
    rows = (await session.execute(_START, {"keys": keys})).all()
    return int(rows[0][0]), _stored_keys(row[1:] for row in rows if row[1] is not None)


async def revoked_among(session: AsyncSession, agent_ids: set[int]) -> set[int]:
    if not agent_ids:
        return set()
    stmt = select(col(Agent.id)).where(col(Agent.id).in_(agent_ids), col(Agent.revoked_at).is_not(None))
    return {int(i) for i in (await session.execute(stmt)).scalars()}


STEPS: Table = EscalationStep.__table__  # type: ignore[attr-defined]
_STEP_ARRAYS = ColumnArrays(STEPS, ["action_id", "step", "level", "due_at", "fired_at", "late_seconds", "note"])


async def record_first_steps(
    session: AsyncSession, steps: list[tuple[int, str, str | None, datetime, datetime]]
) -> set[tuple[int, str]]:
    """The first steps of new actions, (action id, step, level, due at, fired at), in one executemany
    (each submission keeps its own time); returns those recorded: all of them, since an action
    inserted in this very transaction cannot have fired anything yet. (Plain INSERT: SQLAlchemy
    caches it; an ON CONFLICT insert has no cache key and was compiled again for every batch.)"""
    if not steps:
        return set()
    rows = [(a, s, lv, due, at, max(0.0, (at - due).total_seconds()), None) for a, s, lv, due, at in steps]
    await session.run_sync(lambda sync: _STEP_ARRAYS.insert(sync.connection(), rows))
    return {(a, s) for a, s, *_ in steps}
