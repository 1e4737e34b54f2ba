"""The append-only, hash-chained audit ledger: `append` in the caller's transaction, chained at
commit under the head lock (docs/architecture.md, "The ledger"). Reading: storage.ledger.read;
verification: storage.ledger.verify."""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

import orjson
import rfc8785
from sqlalchemy import event as sa_event
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, SessionTransaction
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.ledger import driver as ledger_driver
from storage.models import LedgerEntry, LedgerHead, utcnow
from storage.rows import new_row

GENESIS = "0" * 64
_jstr = json.encoder.encode_basestring  # type: ignore[attr-defined]  # C-accelerated, no ASCII escaping
MAX_SAFE_INT = 2**53 - 1  # RFC 8785 numbers are IEEE doubles: larger integers are kept as strings

# The columns a reader streams, in this order (Core rows: no ORM objects on the fast path).
LEDGER: Any = LedgerEntry.__table__  # type: ignore[attr-defined]
COLUMNS: tuple[Any, ...] = (LedgerEntry.seq, LedgerEntry.at, LedgerEntry.event, LedgerEntry.action_id,
                            LedgerEntry.actor, LedgerEntry.data, LedgerEntry.prev_hash, LedgerEntry.hash)


def utc_iso(at: datetime) -> str:
    """The one text form of `at` that is hashed: UTC, microseconds, "+00:00" (both databases keep µs)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def content_of(seq: int, at: datetime | str, event: str, action_id: int | None, actor: str | None,
               data: Any) -> dict[str, Any]:
    """What is hashed: everything but the hashes themselves."""
    return {
        "seq": seq,
        "at": at if isinstance(at, str) else utc_iso(at),
        "event": event,
        "action_id": action_id,
        "actor": actor,
        "data": data,
    }


def entry_content(entry: LedgerEntry) -> dict[str, Any]:
    return content_of(entry.seq, entry.at, entry.event, entry.action_id, entry.actor, entry.data)


def chain_hash(prev_hash: str, content: dict[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + rfc8785.dumps(content)).hexdigest()


def assemble(seq: int, at_iso: str, event: str, action_id: int | None, actor: str | None,
             data_json: str) -> bytes:
    """RFC 8785 bytes of an entry's content, given its data already in RFC 8785 form (as stored).

    The content's keys sorted (action_id, actor, at, data, event, seq) and strings escaped as
    RFC 8785 escapes them (the stdlib's encode_basestring does the same: quote, backslash, and
    control characters, \\u00xx lowercase); a test checks this equals rfc8785.dumps(content).
    """
    return (f'{{"action_id":{"null" if action_id is None else int(action_id)},'
            f'"actor":{"null" if actor is None else _jstr(actor)},"at":{_jstr(at_iso)},"data":{data_json},'
            f'"event":{_jstr(event)},"seq":{int(seq)}}}').encode()


def _dumps_fast(content: Any) -> bytes:
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def hash_matches(prev_hash: str, content: dict[str, Any], expected: str) -> bool:
    """Does `content` chained onto `prev_hash` hash to `expected`?

    Fast path: the stdlib's sorted compact JSON equals RFC 8785 for strings, integers, booleans
    and null with BMP keys, i.e. nearly every entry. When it does not (some floats), the digest
    simply differs and the real canonical form decides, so the fast path can never accept a
    changed entry: equal digests mean equal bytes, and those bytes parse to this content.
    """
    prefix = prev_hash.encode()
    try:
        if hashlib.sha256(prefix + _dumps_fast(content)).hexdigest() == expected:
            return True
    except (UnicodeEncodeError, ValueError):
        pass
    try:
        return hashlib.sha256(prefix + rfc8785.dumps(content)).hexdigest() == expected
    except (rfc8785.CanonicalizationError, UnicodeEncodeError, ValueError):
        return False


class Canonical(dict[str, Any]):
    """A JSON object already in ledger form (`jsonable`) together with its RFC 8785 text: put in an
    entry's data (top level), `append` neither converts nor encodes it again (a snapshot that many
    entries share is converted once; bot.actions.frozen)."""

    __slots__ = ("text",)

    def __init__(self, value: dict[str, Any], text: str) -> None:
        super().__init__(value)
        self.text = text


def canonical(value: dict[str, Any]) -> Canonical:
    """`value` in ledger form with its RFC 8785 text, for entries that share it."""
    odd: list[bool] = []
    clean = _clean(value, odd)
    return Canonical(clean, _encode(clean, plain=not odd))


def jsonable(value: Any) -> Any:
    """Ledger data must hash the same before and after a database round trip (SQLite and
    PostgreSQL): datetimes become UTC ISO strings, non-finite floats and integers beyond JSON's
    safe range become strings, integral floats integers (the same JSON number), tuples become
    lists, keys become strings."""
    return _clean(value, [])


def _clean(value: Any, odd: list[bool]) -> Any:
    """jsonable(value); on the way, appends to `odd` when orjson's sorted compact JSON of the
    result would not be RFC 8785 byte for byte: a float that is integral or outside [1e-4, 1e16)
    (Python and orjson write 1.0 / 1e-05, RFC 8785 writes 1 / 0.00001), or a key outside the BMP
    (sorted by code point, RFC 8785 sorts by UTF-16 unit). One walk serves both (it was two)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value) if isinstance(value, Enum) else value  # a StrEnum hashes as its value
    if isinstance(value, int):
        return value if -MAX_SAFE_INT <= value <= MAX_SAFE_INT else str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        # RFC 8785 writes 900.0 as 900 anyway: as an int the fast encoder can be used.
        if value.is_integer() and abs(value) <= MAX_SAFE_INT:
            return int(value)
        if value.is_integer() or not 1e-4 <= abs(value) < 1e16:
            odd.append(True)
        return value
    if isinstance(value, datetime):
        return utc_iso(value) if value.tzinfo is not None else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        if type(value) is Canonical:
            return value
        out = {}
        for k, v in value.items():
            key = str(k)
            if not key.isascii() and max(map(ord, key)) >= 0x10000:
                odd.append(True)
            out[key] = _clean(v, odd)
        return out
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(v, odd) for v in value]
    return str(value)


# Stands for a Canonical value while the rest of an entry's data is encoded; random, so that no
# string in the data can be mistaken for it.
_SPLICE = f"\x00canonical-{uuid.uuid4().hex}-"


def canonical_json(value: Any) -> str:
    """RFC 8785 text of a jsonable value (orjson when it gives the same bytes)."""
    odd: list[bool] = []
    clean = _clean(value, odd)  # the same value for jsonable input; 0.0 becomes 0, as RFC 8785 writes it
    return _encode(clean, plain=not odd)


def _encode(value: Any, *, plain: bool) -> str:
    """RFC 8785 text of a jsonable value; `plain`: orjson's sorted compact JSON is RFC 8785 for it
    (checked by `_clean`; for strings, integers, booleans, null and such floats orjson's bytes and
    RFC 8785's agree: tests/unit/test_ledger_canonical.py). Canonical values at the top level are
    spliced in as their text (a JSON object's text does not depend on where it stands, and the
    keys keep their order)."""
    if type(value) is dict and any(type(v) is Canonical for v in value.values()):
        texts = {f"{_SPLICE}{k}": v.text for k, v in value.items() if type(v) is Canonical}
        text = _encode_plain({k: f"{_SPLICE}{k}" if type(v) is Canonical else v for k, v in value.items()},
                             plain)
        for marker, inner in texts.items():
            text = text.replace(_jstr(marker), inner, 1)
        return text
    return _encode_plain(value, plain)


def _encode_plain(value: Any, plain: bool) -> str:
    if plain:
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
        except TypeError:
            pass  # a lone surrogate: let rfc8785 refuse it
    return rfc8785.dumps(value).decode()


HEAD_TABLE: Any = LedgerHead.__table__  # type: ignore[attr-defined]
_PENDING = "countersign.ledger_pending"  # session.info key: entries this transaction will append


# Built once (their cache keys are memoized) and run on the Core connection: this read runs once
# per ingest batch, and building it plus the ORM's execute path cost ~3 % of ingest CPU.
_HEAD = select(HEAD_TABLE.c.seq, HEAD_TABLE.c.hash).where(HEAD_TABLE.c.id == 1)
_HEAD_LOCKED = _HEAD.with_for_update()


def _head_for_update(session: Session) -> tuple[int, str]:
    connection = session.connection()
    postgres = connection.dialect.name == "postgresql"
    stmt = _HEAD_LOCKED if postgres else _HEAD
    row = connection.execute(stmt).first()
    if row is None:
        # The migration seeds the head; this covers a database where it was removed. Two first
        # appenders racing here must not fail: insert-if-absent, then lock what is there.
        insert_head = pg_insert if postgres else sqlite_insert
        connection.execute(insert_head(HEAD_TABLE).values(id=1, seq=0, hash=GENESIS).on_conflict_do_nothing())
        row = connection.execute(stmt).one()
    return row[0], row[1]


async def locked_head(session: AsyncSession) -> tuple[int, str]:
    """(seq, hash) of the head, locked (PostgreSQL: FOR UPDATE) until the transaction ends."""
    return await session.run_sync(_head_for_update)


def _write(session: Session, pending: list[tuple[LedgerEntry, str]]) -> None:
    """Chain `pending` onto the head and store it: PostgreSQL two round trips, SQLite three driver
    calls, whatever the number of entries (see storage.ledger_driver)."""
    connection = session.connection()
    dialect = connection.dialect
    store_at = LEDGER.c.at.type.dialect_impl(dialect).bind_processor(dialect)  # the column type's own

    def chain(seq: int, prev: str) -> list[tuple[Any, ...]]:
        rows = []
        times: dict[datetime, tuple[str, Any]] = {}  # a submission's entries share their `at`
        for entry, data_json in pending:
            seq += 1
            fields = vars(entry)  # a transient row (never in a session): its __dict__, not instrumented gets
            at, event, action_id, actor = fields["at"], fields["event"], fields["action_id"], fields["actor"]
            if at not in times:
                times[at] = (utc_iso(at), store_at(at))
            at_iso, stored_at = times[at]
            content = assemble(seq, at_iso, event, action_id, actor, data_json)
            digest = hashlib.sha256(prev.encode() + content).hexdigest()
            fields.update(seq=seq, prev_hash=prev, hash=digest)
            # Data is stored as its RFC 8785 text, so verification hashes what it reads without
            # parsing it (storage.ledger_verify).
            rows.append((seq, stored_at, event, action_id, actor, data_json, prev, digest))
            prev = digest
        return rows

    adapted: Any = connection.connection.dbapi_connection
    if dialect.name == "postgresql":
        head = _head_for_update(session)
        adapted.run_async(lambda driver: ledger_driver.write_postgresql(driver, chain, head))
    else:
        adapted.run_async(lambda driver: ledger_driver.write_sqlite(driver, chain))


@sa_event.listens_for(Session, "before_commit")
def _append_pending(session: Session) -> None:
    """Entries are chained at commit: the head is locked for those few statements and the commit,
    not for the rest of the caller's transaction (PostgreSQL ingest would serialize on it)."""
    pending = session.info.pop(_PENDING, None)
    if pending:
        _write(session, pending)


@sa_event.listens_for(Session, "after_transaction_end")
def _forget_pending(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # committed (already written) or rolled back (never happened)
        session.info.pop(_PENDING, None)


async def append(
    session: AsyncSession,
    event: str,
    data: dict[str, Any] | None = None,
    *,
    action_id: int | None = None,
    actor: str | None = None,
    at: datetime | None = None,
) -> LedgerEntry:
    """Record `event` in the caller's transaction: it is chained and written when that transaction
    commits (and vanishes with it on rollback). The returned entry gets its seq and hashes then.
    Inside a savepoint it is written at once, so a rolled-back savepoint takes it along."""
    when = at or utcnow()
    # Stored and hashed as UTC: a naive or zoned `at` must read back as the same instant and text.
    when = (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)
    odd: list[bool] = []
    clean = _clean(data or {}, odd)
    entry = new_row(LedgerEntry, seq=0, at=when, event=event, action_id=action_id, actor=actor, data=clean,
                    prev_hash="", hash="")
    item = (entry, _encode(clean, plain=not odd))
    if session.sync_session.in_nested_transaction():
        await session.run_sync(_write, [item])
    else:
        if not session.in_transaction():
            await session.connection()  # begin now, so the entry belongs to this transaction
        session.info.setdefault(_PENDING, []).append(item)
    return entry
