"""The append-only, hash-chained audit ledger.

Each entry's hash is sha256(prev_hash || RFC 8785 canonical JSON of the entry's content).
`append` runs inside the caller's transaction, so an entry commits with the change it records.
Appends are serialized: on PostgreSQL by locking the one-row head, on SQLite by the writer
lock every transaction takes (BEGIN IMMEDIATE, see storage.db).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import rfc8785
from sqlalchemy import select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import LedgerEntry, LedgerHead, utcnow

GENESIS = "0" * 64


def entry_content(entry: LedgerEntry) -> dict[str, Any]:
    """What is hashed: everything but the hashes themselves."""
    return {
        "seq": entry.seq,
        "at": entry.at.isoformat(timespec="microseconds"),
        "event": entry.event,
        "action_id": entry.action_id,
        "actor": entry.actor,
        "data": entry.data,
    }


def chain_hash(prev_hash: str, content: dict[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + rfc8785.dumps(content)).hexdigest()


def _jsonable(value: Any) -> Any:
    """Ledger data must survive canonical JSON: datetimes become ISO strings, floats stay finite."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


async def append(
    session: AsyncSession,
    event: str,
    data: dict[str, Any] | None = None,
    *,
    action_id: int | None = None,
    actor: str | None = None,
    at: datetime | None = None,
) -> LedgerEntry:
    stmt = select(LedgerHead).where(LedgerHead.id == 1)
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    head = (await session.execute(stmt)).scalar_one_or_none()
    if head is None:
        head = LedgerHead(id=1, seq=0, hash=GENESIS)
        session.add(head)
    # Microsecond precision survives both databases, so the hash recomputes the same.
    entry = LedgerEntry(
        seq=head.seq + 1,
        at=(at or utcnow()),
        event=event,
        action_id=action_id,
        actor=actor,
        data=_jsonable(data or {}),
        prev_hash=head.hash,
        hash="",
    )
    entry.hash = chain_hash(head.hash, entry_content(entry))
    head.seq, head.hash = entry.seq, entry.hash
    session.add(entry)
    session.add(head)
    await session.flush()
    return entry
