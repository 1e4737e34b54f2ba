"""The audit trail for auditors: verify the ledger (against a published anchor), export it, and
publish its head outside the database (the leadership channel), so that even a rewrite of the
whole table is caught.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.delivery.messages import Kind, send
from bot.policy.durations import parse_duration
from bot.policy.rules import policy_hash
from bot.services import Services
from storage.db import Database
from storage.enqueue import Queued, write_queued
from storage.ledger import chain as ledger
from storage.ledger import read as ledger_read
from storage.ledger.canonical import chain_hash, content_of, utc_iso
from storage.ledger.verify import Verification, format_anchor, verify
from storage.models import OutboxMessage

EXPORT_FIELDS = ("seq", "at", "event", "action_id", "actor", "service", "data", "prev_hash", "hash")
FORMATS = ("jsonl", "csv")


async def verify_ledger(db: Database, anchors: dict[int, str] | None = None, *,
                        progress: Callable[[int], None] | None = None) -> Verification:
    return await verify(db.engine, anchors=anchors, progress=progress)


async def current_head(db: Database) -> tuple[int, str]:
    async with ledger_read.snapshot(db.engine) as conn:
        return await ledger_read.read_head(conn) or (0, ledger.GENESIS)


# --- anchor -------------------------------------------------------------------------------------


async def queue_anchor(session: AsyncSession, channel: str, *, now: datetime, reason: str = "on demand",
                       dedupe_key: str | None = None) -> tuple[int, str, Queued]:
    """Queue the head (HASH@SEQ) to `channel`, in the caller's transaction; returns (seq, hash).

    The publication is itself recorded, as the next entry: anyone can later see which anchors
    were sent. The digest job calls this daily with dedupe_key=f"anchor:daily:{day}".
    """
    seq, hash_ = await ledger.locked_head(session)
    await ledger.append(session, "anchor.published",
                        {"seq": seq, "hash": hash_, "channel": channel, "reason": reason}, at=now)
    msg = send(session, Kind.ANCHOR, channel=channel, purpose="anchor", dedupe_key=dedupe_key,
               seq=seq, hash=hash_, at=utc_iso(now), reason=reason, anchor=format_anchor(seq, hash_))
    await write_queued(session)  # the caller reports the row's id
    return seq, hash_, msg


async def publish_anchor(svc: Services, reason: str = "on demand") -> tuple[int, str, int | None]:
    """Queue the anchor to the policy's leadership channel now; returns (seq, hash, outbox id)."""
    channel = svc.policy.leadership.channel if svc.policy.leadership else None
    if not channel:
        raise ValueError("the policy has no leadership.channel to publish the anchor to")
    async with svc.db.session() as session:
        seq, hash_, msg = await queue_anchor(session, channel, now=svc.clock(), reason=reason)
        await session.commit()
    return seq, hash_, msg.id


async def outbox_state(db: Database, outbox_id: int) -> str | None:
    """pending | sending | done | failed: whether a queued anchor has reached Slack yet."""
    async with db.session() as session:
        msg = await session.get(OutboxMessage, outbox_id)
        return msg.status if msg else None


# --- policy loaded ------------------------------------------------------------------------------


async def record_policy_loaded(svc: Services) -> None:
    """At start: the policy in force, by hash, so a decision can be tied to the rules of the day."""
    policy = svc.policy
    async with svc.db.session() as session:
        await ledger.append(session, "policy.loaded", {
            "hash": policy_hash(policy),
            "source": svc.settings.policy_path,
            "services": sorted(policy.services),
            "rules": len(policy.rules),
        }, actor="countersign", at=svc.clock())
        await session.commit()


# --- export -------------------------------------------------------------------------------------


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """A date (YYYY-MM-DD, from its midnight UTC), an ISO 8601 date-time (naive = UTC), or a
    duration back from `now` (`7d`, `24h`, `1d12h`: what an auditor asks for most)."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        pass
    else:
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)
    try:
        back = timedelta(seconds=parse_duration(text))
        return (now or datetime.now(UTC)) - back
    except ValueError:
        raise ValueError(f"--since: not a date, an ISO 8601 date-time or a duration like 7d or 24h: "
                         f"{text!r}") from None
    except OverflowError:  # `99999999d`: before year 1
        raise ValueError(f"--since: {text!r} reaches back before any date") from None


def export_record(row: Any) -> dict[str, Any]:
    """One exported entry: its hashed content exactly as hashed (so anyone can recompute it), its
    hashes, and the action's service for filtering in a spreadsheet."""
    seq, at, event, action_id, actor, data, prev_hash, hash_, service = row
    if service is None and action_id is None and isinstance(data, dict):
        service = data.get("service")
    return {"seq": seq, "at": utc_iso(at), "event": event, "action_id": action_id, "actor": actor,
            "service": service, "data": data, "prev_hash": prev_hash, "hash": hash_}


class _Writer:
    def __init__(self, fmt: str, out: TextIO) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"--format: one of {', '.join(FORMATS)}")
        self.fmt, self.out = fmt, out
        self.csv = csv.writer(out, lineterminator="\r\n") if fmt == "csv" else None
        if self.csv is not None:
            self.csv.writerow(EXPORT_FIELDS)

    def write(self, record: dict[str, Any]) -> None:
        if self.csv is None:
            self.out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
            return
        # A spreadsheet cell per field; data as compact JSON; an empty cell is null.
        data = json.dumps(record["data"], ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        self.csv.writerow(["" if record[f] is None else (data if f == "data" else record[f])
                           for f in EXPORT_FIELDS])


async def export(db: Database, out: TextIO, *, fmt: str = "jsonl", since: datetime | None = None,
                 service: str | None = None, progress: Callable[[int], None] | None = None,
                 batch: int = 5000) -> int:
    """Stream the ledger to `out`; returns how many entries were written. `progress(seq)` is told
    how far along the chain the export has got (the head's seq is the end)."""
    writer = _Writer(fmt, out)
    count = 0
    async with ledger_read.snapshot(db.engine) as conn:
        async for part in ledger_read.stream_rows(conn, since=since, service=service, batch=batch):
            for row in part:
                writer.write(export_record(row))
            count += len(part)
            if progress is not None and part:
                progress(part[-1][0])
    out.flush()
    return count


def read_export(lines: TextIO, fmt: str) -> list[dict[str, Any]]:
    """Parse an export back into entries (the inverse of `export`; used to check a file)."""
    if fmt == "jsonl":
        return [json.loads(line) for line in lines if line.strip()]
    rows = []
    for rec in csv.DictReader(lines):
        rows.append({
            "seq": int(rec["seq"]), "at": rec["at"], "event": rec["event"],
            "action_id": int(rec["action_id"]) if rec["action_id"] else None,
            "actor": rec["actor"] or None, "service": rec["service"] or None,
            "data": json.loads(rec["data"]), "prev_hash": rec["prev_hash"], "hash": rec["hash"],
        })
    return rows


def entry_checks_out(record: dict[str, Any]) -> bool:
    """Does an exported entry hash to its `hash` given its `prev_hash`? (What an auditor reruns.)"""
    content = content_of(record["seq"], record["at"], record["event"], record["action_id"],
                                record["actor"], record["data"])
    return chain_hash(record["prev_hash"], content) == record["hash"]
