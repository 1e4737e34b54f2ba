"""The audit ledger: tampering of every kind is caught and the first bad entry named; concurrent
writers keep one chain; the database refuses UPDATE/DELETE; export round-trips every entry;
the chain verifies on SQLite and PostgreSQL after real traffic (timestamps and floats included)."""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select, text, update

from bot.demo.fakeslack import FakeSlack
from bot.policy.rules import policy_hash
from bot.reports import audit
from storage.db import Database
from storage.ledger import canonical
from storage.ledger import chain as ledger
from storage.ledger.verify import Verification, format_anchor, parse_anchor, verify
from storage.models import LedgerEntry, LedgerHead
from tests.conftest import Running, proposal

ROOT = Path(__file__).resolve().parents[2]
N = 8  # entries in a tampering test's chain


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    await database.migrate()
    yield database
    await database.dispose()


async def build_chain(db: Database, n: int = N) -> list[str]:
    """n entries, one transaction each, with the data shapes that are hard to hash twice the same:
    floats, unicode, nesting, nulls, zoned and naive times. Returns the hashes, index = seq - 1."""
    hashes = []
    zone = timezone(timedelta(hours=5, minutes=30))
    for i in range(n):
        async with db.session() as session:
            entry = await ledger.append(
                session, "test.event",
                {"i": i, "confidence": [0.82, 1.0, 1e-7, 0.1 + 0.2][i % 4], "text": "déjà vu ✓ 😀 \"q\"\n",
                 "nested": {"b": [1, None, True], "a": {"z": 2.5}},
                 "when": datetime(2026, 1, 1, tzinfo=zone)},
                action_id=i // 2 + 1, actor=None if i % 3 == 0 else f"U{i}",
                at=(datetime(2026, 3, 1, 12, 0, i, 123456, tzinfo=zone) if i % 2
                    else datetime(2026, 3, 1, 7, i)),
            )
            await session.commit()
            hashes.append(entry.hash)
    return hashes


async def raw(db: Database, *statements: Any) -> None:
    """What someone with database access does: drop the guard triggers, then edit rows."""
    async with db.session() as session:
        if db.dialect == "postgresql":
            await session.execute(text("DROP TRIGGER IF EXISTS ledger_append_only ON ledger"))
        else:
            await session.execute(text("DROP TRIGGER IF EXISTS ledger_no_update"))
            await session.execute(text("DROP TRIGGER IF EXISTS ledger_no_delete"))
        for stmt in statements:
            await session.execute(text(stmt) if isinstance(stmt, str) else stmt)
        await session.commit()


async def rows(db: Database) -> list[LedgerEntry]:
    async with db.session() as session:
        return list((await session.execute(select(LedgerEntry).order_by(LedgerEntry.seq))).scalars())  # type: ignore[arg-type]


def forged(seq: int, prev_hash: str, **content: Any) -> dict[str, Any]:
    """A well-made forgery: a row whose own hash is right for its content and prev_hash."""
    at = content.pop("at", datetime(2026, 3, 1, 9, 0, tzinfo=UTC))
    values = {"seq": seq, "at": at, "event": "decision", "action_id": 1, "actor": "U0MALLORY",
              "data": {"outcome": "approved"}, **content}
    values["prev_hash"] = prev_hash
    values["hash"] = canonical.chain_hash(prev_hash, canonical.content_of(
        seq, at, values["event"], values["action_id"], values["actor"], values["data"]))
    return values


LEDGER = ledger.LEDGER


async def tamper(db: Database, how: str, hashes: list[str]) -> None:
    if how == "change_actor":
        await raw(db, "UPDATE ledger SET actor = 'U0MALLORY' WHERE seq = 4")
    elif how == "change_data":
        await raw(db, """UPDATE ledger SET data = '{"i": 3, "confidence": 0.99}' WHERE seq = 4""")
    elif how == "change_time":
        await raw(db, update(LEDGER).where(LEDGER.c.seq == 4).values(at=datetime(2026, 3, 1, 13, tzinfo=UTC)))
    elif how == "change_and_rehash":
        entry = (await rows(db))[3]
        rehashed = forged(4, hashes[2], at=entry.at, event=entry.event, action_id=entry.action_id,
                          actor="U0MALLORY", data=entry.data)["hash"]
        await raw(db, update(LEDGER).where(LEDGER.c.seq == 4).values(actor="U0MALLORY", hash=rehashed))
    elif how == "delete":
        await raw(db, "DELETE FROM ledger WHERE seq = 4")
    elif how == "delete_last":
        await raw(db, f"DELETE FROM ledger WHERE seq = {N}")
    elif how == "insert":
        # Make room at 4 (renumbering the rest, head too) and slip a well-made forgery in.
        await raw(db, "UPDATE ledger SET seq = -seq - 1 WHERE seq >= 4",
                  "UPDATE ledger SET seq = -seq WHERE seq < 0",
                  insert(LEDGER).values(**forged(4, hashes[2])), f"UPDATE ledger_head SET seq = {N + 1}")
    elif how == "insert_at_end":
        await raw(db, insert(LEDGER).values(**forged(N + 1, hashes[-1])))
    elif how == "swap":
        await raw(db, "UPDATE ledger SET seq = -1 WHERE seq = 4", "UPDATE ledger SET seq = 4 WHERE seq = 5",
                  "UPDATE ledger SET seq = 5 WHERE seq = -1")
    else:
        raise AssertionError(how)


TAMPERING = [  # how, the first bad entry, the kind of problem
    ("change_actor", 4, "changed"),
    ("change_data", 4, "changed"),
    ("change_time", 4, "changed"),
    ("change_and_rehash", 4, "changed"),
    ("delete", 4, "removed"),
    ("delete_last", N, "removed"),
    ("insert", 4, "inserted"),
    ("insert_at_end", N + 1, "inserted"),
    ("swap", 4, "reordered"),
]


@pytest.mark.parametrize(("how", "seq", "kind"), TAMPERING, ids=[t[0] for t in TAMPERING])
async def test_tampering_is_caught_and_the_first_bad_entry_named(db: Database, how: str, seq: int,
                                                                 kind: str) -> None:
    hashes = await build_chain(db)
    intact = await verify(db.engine)
    assert intact.ok and intact.entries == N and intact.head == (N, hashes[-1]), intact.problem

    await tamper(db, how, hashes)

    result = await verify(db.engine, batch=3)  # small batches: the lookahead crosses batch boundaries
    assert not result.ok
    assert result.problem is not None
    assert (result.problem.seq, result.problem.kind) == (seq, kind), str(result.problem)
    assert result.entries == min(seq, N + 1) - 1  # everything before the bad entry did verify


async def test_a_rewrite_of_the_whole_table_is_caught_by_the_anchor(db: Database) -> None:
    hashes = await build_chain(db)
    anchor = parse_anchor(format_anchor(6, hashes[5]))
    # Rewrite history from entry 2 on and recompute every hash and the head: internally consistent.
    entries = await rows(db)
    prev, rewritten = hashes[0], []
    for e in entries[1:]:
        row = forged(e.seq, prev, at=e.at, event=e.event, action_id=e.action_id, actor=e.actor,
                     data={**e.data, "i": -1} if e.seq == 2 else e.data)
        rewritten.append(row)
        prev = row["hash"]
    await raw(db, "DELETE FROM ledger WHERE seq >= 2", *(insert(LEDGER).values(**r) for r in rewritten),
              update(LedgerHead).values(hash=prev))
    assert (await verify(db.engine)).ok  # the chain alone cannot tell...

    result = await verify(db.engine, anchors=dict([anchor]))  # ...what Slack already holds can
    assert result.problem is not None and (result.problem.seq, result.problem.kind) == (6, "anchor")
    beyond = await verify(db.engine, anchors={N + 5: hashes[-1]})
    assert beyond.problem is not None and beyond.problem.kind == "removed"


async def test_a_removed_head_row_is_seeded_again_and_nothing_is_lost(db: Database) -> None:
    async with db.session() as session:  # the migration seeds the head; someone removed it
        await session.execute(text("DELETE FROM ledger_head"))
        await session.commit()
    async with db.session() as session:
        first = await ledger.append(session, "test.event", {"i": 1})
        second = await ledger.append(session, "test.event", {"i": 2})
        await session.commit()
    assert (first.seq, first.prev_hash, second.seq, second.prev_hash) == (1, ledger.GENESIS, 2, first.hash)
    result = await verify(db.engine)
    assert result.ok and result.entries == 2 and result.head == (2, second.hash)


async def test_the_database_refuses_update_and_delete(db: Database) -> None:
    await build_chain(db, 3)
    attempts = ["UPDATE ledger SET actor = 'x' WHERE seq = 2", "DELETE FROM ledger WHERE seq = 3"]
    if db.dialect == "postgresql":
        attempts.append("TRUNCATE ledger")
    for stmt in attempts:
        async with db.session() as session:
            with pytest.raises(Exception, match="append-only"):
                await session.execute(text(stmt))
                await session.commit()
            await session.rollback()
    result = await verify(db.engine)
    assert result.ok and result.entries == 3


WRITER = """
import asyncio, sys
from storage.ledger import chain as ledger
from storage.db import Database

async def main(url: str, count: int, tag: str) -> None:
    db = Database(url)
    async def one(i: int) -> None:
        async with db.session() as session:
            await ledger.append(session, "test.concurrent", {"writer": tag, "i": i, "share": i / 7})
            await session.commit()
    for start in range(0, count, 4):
        await asyncio.gather(*(one(i) for i in range(start, min(count, start + 4))))
    await db.dispose()

asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
"""


async def test_concurrent_writer_processes_keep_one_chain(db: Database, database_url: str) -> None:
    writers, each = 4, 40
    procs = [await asyncio.create_subprocess_exec(sys.executable, "-c", WRITER, database_url, str(each),
                                                  f"w{w}", cwd=ROOT, stderr=asyncio.subprocess.PIPE)
             for w in range(writers)]
    for proc in procs:
        _, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()[-2000:]
    result = await verify(db.engine)
    assert result.ok, result.problem
    assert result.entries == writers * each and result.head is not None and result.head[0] == writers * each
    written = sorted((e.data["writer"], e.data["i"]) for e in await rows(db))
    assert written == sorted((f"w{w}", i) for w in range(writers) for i in range(each))


async def test_times_and_floats_hash_the_same_after_a_round_trip(db: Database) -> None:
    hashes = await build_chain(db, 8)
    for entry, expected in zip(await rows(db), hashes, strict=True):
        assert entry.at.tzinfo is not None and entry.at.utcoffset() == timedelta(0)
        assert canonical.chain_hash(entry.prev_hash, canonical.content_of(
            entry.seq, entry.at, entry.event, entry.action_id, entry.actor, entry.data)) == expected
    second = (await rows(db))[1]  # appended with at=12:00:01.123456+05:30
    assert canonical.utc_iso(second.at) == "2026-03-01T06:30:01.123456+00:00"


@settings(max_examples=200, deadline=None)
@given(
    seq=st.integers(1, 2**53 - 1), action_id=st.none() | st.integers(1, 2**53 - 1),
    actor=st.none() | st.text(), event=st.text(min_size=1),
    data=st.dictionaries(st.text(), st.recursive(
        st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1)
        | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
        max_leaves=8)),
)
def test_assembled_bytes_are_rfc8785(seq: int, action_id: int | None, actor: str | None, event: str,
                                     data: dict[str, Any]) -> None:
    """The append/verify fast path builds the canonical bytes by hand; they must be RFC 8785's."""
    at = "2026-03-01T06:30:01.123456+00:00"
    content = canonical.content_of(seq, at, event, action_id, actor, data)
    try:
        expected = rfc8785.dumps(content)
        data_json = rfc8785.dumps(data).decode()
    except (rfc8785.CanonicalizationError, UnicodeEncodeError):
        return  # e.g. a lone surrogate: append refuses it outright
    assert canonical.assemble(seq, at, event, action_id, actor, data_json) == expected
    assert canonical.canonical_json(data) == data_json  # the stdlib fast path agrees, or steps aside
    assert canonical.hash_matches("0" * 64, content, canonical.chain_hash("0" * 64, content))


def test_jsonable_keeps_only_what_survives_both_databases() -> None:
    zoned = datetime(2026, 1, 1, 5, tzinfo=timezone(timedelta(hours=2)))
    out = canonical.jsonable({1: (2**60, float("nan"), zoned), "d": {"e": frozenset({1})}})
    assert out == {"1": [str(2**60), "nan", "2026-01-01T03:00:00.000000+00:00"], "d": {"e": [1]}}


# --- after real traffic ----------------------------------------------------------------------------------


async def traffic(running: Running, fake_slack: FakeSlack) -> dict[str, int]:
    """Proposals, an executed action, an autonomous one, a forbidden one, a click, a refusal."""
    ids = {}
    _, body = await running.submit(proposal(summary="Scale ✓ 日本 😀", confidence=0.1 + 0.2))
    ids["proposal"] = body["id"]
    _, body = await running.submit(proposal(kind="executed", service="search", action_type="restart",
                                            confidence=1.0, summary="Restarted search"))
    ids["executed"] = body["id"]
    _, body = await running.submit(proposal(service="batch", action_type="cleanup", confidence=1e-7,
                                            environment="staging"))
    ids["autonomous"] = body["id"]
    status, _ = await running.submit(proposal(action_type="drop_database"))
    assert status == 403
    await fake_slack.wait_for(lambda: fake_slack.posts("U0OWNER"))
    for user in ("U0STRANGER", "U0OWNER"):
        await running.interact({
            "type": "block_actions", "user": {"id": user, "name": user.lower()}, "team": {"id": "T1"},
            "actions": [{"action_id": "approve", "value": str(ids["proposal"]), "type": "button",
                         "block_id": "b"}],
            "response_url": fake_slack.response_url(), "trigger_id": "t1",
        })
    for _ in range(200):
        _, got = await running.get(f"/v1/actions/{ids['proposal']}")
        if got["status"] == "approved":
            break
        await asyncio.sleep(0.05)
    assert got["status"] == "approved"
    for _ in range(200):  # the stranger's click is handled after its ack, like the owner's
        if any(e.event == "response.refused" for e in await rows(running.svc.db)):
            break
        await asyncio.sleep(0.05)
    return ids


async def test_after_real_traffic_the_ledger_verifies_and_carries_every_event(
        running: Running, fake_slack: FakeSlack) -> None:
    ids = await traffic(running, fake_slack)
    db = running.svc.db
    result: Verification = await verify(db.engine)
    assert result.ok, result.problem
    entries = await rows(db)
    events = {(e.event, e.action_id) for e in entries}
    assert ("policy.loaded", None) in events and ("agent.created", None) in events
    assert ("action.forbidden", None) in events and ("response.refused", ids["proposal"]) in events
    for name in ("proposal", "executed", "autonomous"):
        assert ("action.submitted", ids[name]) in events
    assert ("decision", ids["proposal"]) in events and ("escalation.page", ids["proposal"]) in events
    loaded = next(e for e in entries if e.event == "policy.loaded")
    assert loaded.data["hash"] == policy_hash(running.svc.policy)
    submitted = next(e for e in entries if e.event == "action.submitted" and e.action_id == ids["proposal"])
    assert submitted.data["rationale"] and submitted.data["confidence"] == 0.1 + 0.2
    assert submitted.data["evidence"][0]["url"].startswith("https://") and submitted.data["frozen"]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
async def test_export_round_trips_every_entry(running: Running, fake_slack: FakeSlack, fmt: str) -> None:
    await traffic(running, fake_slack)
    db = running.svc.db
    out = io.StringIO(newline="")
    count = await audit.export(db, out, fmt=fmt, batch=4)
    exported = audit.read_export(io.StringIO(out.getvalue(), newline=""), fmt)
    head_seq, head_hash = await audit.current_head(db)
    assert count == len(exported) == head_seq
    assert [e["seq"] for e in exported] == list(range(1, head_seq + 1))
    prev = ledger.GENESIS
    for entry in exported:  # what an auditor reruns on the file alone
        assert entry["prev_hash"] == prev and audit.entry_checks_out(entry), entry
        prev = entry["hash"]
    assert prev == head_hash
    originals = {e.seq: e for e in await rows(db)}
    for entry in exported:
        original = originals[entry["seq"]]
        assert (entry["event"], entry["action_id"], entry["actor"], entry["data"]) == (
            original.event, original.action_id, original.actor, original.data)

    only = io.StringIO()
    await audit.export(db, only, fmt=fmt, service="checkout-api")
    picked = audit.read_export(io.StringIO(only.getvalue(), newline=""), fmt)
    assert picked and {e["service"] for e in picked} == {"checkout-api"}
    assert any(e["event"] == "action.forbidden" for e in picked)  # no action row, service from its data
    later = io.StringIO()
    assert await audit.export(db, later, fmt=fmt, since=datetime.now(UTC) + timedelta(days=1)) == 0
