"""Bulk-load a large, realistic Countersign database for bench.bench_queries (never used by the app).

Rows go in with the drivers' bulk paths (sqlite3 executemany in one transaction, asyncpg COPY) into
a schema migrated by the app, so the benchmark queries meet the same indexes as production.
"""

from __future__ import annotations

import json
import math
import os
import random
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from bot.escalation.snapshot import EscalationSnapshot, LeadershipSnapshot
from bot.services import Services

PG_ADMIN = os.environ.get("COUNTERSIGN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
SERVICES, AGENTS = 40, 5
COLUMNS = (
    "id",
    "agent_id",
    "kind",
    "service",
    "action_type",
    "summary",
    "rationale",
    "environment",
    "confidence",
    "evidence",
    "mode",
    "status",
    "policy_violation",
    "frozen",
    "owner",
    "level",
    "next_at",
    "created_at",
    "updated_at",
    "outcome",
    "decided_at",
    "decided_by",
    "decided_by_name",
    "accountability",
    "decision_level",
    "decision_via",
    "decision_reason",
    "version",
)
LEDGER = ("seq", "at", "event", "action_id", "actor", "data", "prev_hash", "hash")


def policy_text() -> str:
    services = "\n".join(
        f"  svc{i:02d}:\n    owner: U0OWN{i:02d}\n"
        + (f"    secondary: U0SEC{i:02d}\n" if i % 2 == 0 else "")
        + f"    channel: C0SVC{i:02d}\n    tier: {'tier1' if i < 10 else 'tier2'}"
        for i in range(SERVICES)
    )
    return f"""leadership: {{channel: C0LEADERS, users: [U0VP]}}
admins: [U0ADMIN]
tiers:
  tier1:
    escalation:
      - {{notify: owner, after: 0s}}
      - {{notify: secondary, after: 5m}}
      - {{notify: leadership, after: 15m}}
    remind_every: 2m
    timeout: 30m
  tier2:
    escalation: [{{notify: owner, after: 0s}}, {{notify: leadership, after: 30m}}]
    timeout: 1h
services:
{services}
rules:
  - match: {{action_type: [drop_database, delete_data]}}
    mode: forbidden
  - match: {{tier: tier1, environment: production}}
    mode: approve
  - match: {{action_type: [rollback, restart]}}
    mode: acknowledge
  - mode: autonomous
"""


def _frozen(i: int, mode: str) -> str:
    return json.dumps(
        EscalationSnapshot(
            mode=mode,
            rule_index=1,
            owner=f"U0OWN{i:02d}",
            secondary=f"U0SEC{i:02d}" if i % 2 == 0 else None,
            channel=f"C0SVC{i:02d}",
            leadership=LeadershipSnapshot("C0LEADERS", ("U0VP",)),
            admins=("U0ADMIN",),
            steps=(("owner", 0.0), ("leadership", 1800.0)),
            timeout=3600.0,
        ).to_json()
    )


def actions(n: int, now: datetime) -> Iterator[tuple[Any, ...]]:
    """n actions over the year before `now`, ids in time order."""
    rng = random.Random(42)
    start = now - timedelta(days=365)
    snapshots = {
        (i, m): _frozen(i, m) for i in range(SERVICES) for m in ("autonomous", "approve", "acknowledge")
    }
    for aid in range(1, n + 1):
        created = start + timedelta(seconds=365 * 86400 * aid / (n + 1))
        s = rng.randrange(SERVICES)
        owner, r = f"U0OWN{s:02d}", rng.random()
        mode = "autonomous" if r < 0.2 else ("approve" if r < 0.7 else "acknowledge")
        kind = "executed" if mode == "acknowledge" else "proposed"
        level, next_at, status, outcome = "owner", None, "pending", None
        decided_at = decided_by = name = accountability = dlevel = via = reason = None
        p = rng.random()
        if mode == "autonomous":
            status = outcome = "recorded"
            decided_at, decided_by, name, accountability, dlevel, via = (
                created,
                owner,
                "owner",
                "policy",
                "owner",
                "policy",
            )
        elif p < 0.01:
            next_at = created + timedelta(minutes=5)
        elif p < 0.11:
            status, outcome = ("expired", "denied") if kind == "proposed" else ("pending", "unacknowledged")
            level = dlevel = "leadership"
            decided_at, decided_by, name, accountability, via = (
                created + timedelta(minutes=30),
                "U0VP",
                "leadership",
                "default",
                "timeout",
            )
            reason = "no response before the timeout"
        else:
            yes = rng.random() < 0.8
            status = outcome = {
                ("proposed", True): "approved",
                ("proposed", False): "denied",
                ("executed", True): "acknowledged",
                ("executed", False): "overridden",
            }[(kind, yes)]
            decided_at = created + timedelta(seconds=min(3000.0, math.exp(rng.gauss(math.log(180), 1.0))))
            decided_by = owner if rng.random() < 0.85 else rng.choice([f"U0SEC{s:02d}", "U0VP", "U0ADMIN"])
            name, accountability, dlevel, via = decided_by.lower(), "explicit", "owner", "button"
            reason = None if yes else "not during the sale"
        yield (
            aid,
            1 + aid % AGENTS,
            kind,
            f"svc{s:02d}",
            rng.choice(("scale_down", "restart", "rollback", "flush_cache")),
            f"Action {aid} on svc{s:02d}",
            "CPU under 20% for 3 hours; saving cost",
            "production",
            round(rng.random(), 2),
            '[{"label": "dashboard", "url": "https://grafana.example.com"}]',
            mode,
            status,
            False,
            snapshots[(s, mode)],
            owner,
            level,
            next_at,
            created,
            decided_at or created,
            outcome,
            decided_at,
            decided_by,
            name,
            accountability,
            dlevel,
            via,
            reason,
            1,
        )


def ledger_rows(n: int, now: datetime) -> Iterator[tuple[Any, ...]]:
    """Per action its submission, and for one in ten a page too (hashes are placeholders: the chain
    is not what is measured here)."""
    start, seq = now - timedelta(days=365), 0
    for aid in range(1, n + 1):
        at = start + timedelta(seconds=365 * 86400 * aid / (n + 1))
        seq += 1
        yield (
            seq,
            at,
            "action.submitted",
            aid,
            "agent:bench",
            '{"agent": "bench", "kind": "proposed"}',
            f"{seq:064x}",
            f"{seq + 1:064x}",
        )
        if aid % 10 == 0:
            seq += 1
            yield (
                seq,
                at + timedelta(seconds=1),
                "escalation.page",
                aid,
                None,
                '{"level": "owner", "target": "U0OWN00"}',
                f"{seq:064x}",
                f"{seq + 1:064x}",
            )


def _sqlite_value(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    return v


async def seed_sqlite(svc: Services, path: str, n: int) -> float:
    started, now = time.perf_counter(), datetime.now(UTC)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    # Load first, index after (exactly the migration's indexes): minutes faster than maintaining them.
    indexes = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
        "AND tbl_name IN ('actions', 'ledger')"
    ).fetchall()
    for name, _ in indexes:
        conn.execute(f"DROP INDEX {name}")
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO agents (id, name, token_hash, token_prefix, callback_secret, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [(i, f"agent{i}", f"h{i}", "p", "s", _sqlite_value(now)) for i in range(1, AGENTS + 1)],
    )
    conn.executemany(
        f"INSERT INTO actions ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
        (tuple(_sqlite_value(v) for v in row) for row in actions(n, now)),
    )
    conn.executemany(
        f"INSERT INTO ledger ({', '.join(LEDGER)}) VALUES ({', '.join('?' * len(LEDGER))})",
        (tuple(_sqlite_value(v) for v in row) for row in ledger_rows(n, now)),
    )
    conn.execute("DELETE FROM ledger_head")  # the migration may have written the genesis head
    head = n + n // 10
    conn.execute("INSERT INTO ledger_head (id, seq, hash) VALUES (1, ?, ?)", (head, f"{head + 1:064x}"))
    conn.execute("COMMIT")
    for _, sql in indexes:
        conn.execute(sql)
    conn.execute("ANALYZE")
    conn.close()
    return time.perf_counter() - started


async def seed_postgresql(svc: Services, dsn: str, n: int) -> float:
    started, now = time.perf_counter(), datetime.now(UTC)
    conn = await asyncpg.connect(dsn)
    try:
        indexes = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN "
            "('actions', 'ledger') AND indexname NOT LIKE '%pkey'"
        )
        for row in indexes:
            await conn.execute(f'DROP INDEX "{row["indexname"]}"')
        await conn.copy_records_to_table(
            "agents",
            columns=["id", "name", "token_hash", "token_prefix", "callback_secret", "created_at"],
            records=[(i, f"agent{i}", f"h{i}", "p", "s", now) for i in range(1, AGENTS + 1)],
        )
        await conn.copy_records_to_table("actions", columns=list(COLUMNS), records=actions(n, now))
        await conn.copy_records_to_table("ledger", columns=list(LEDGER), records=ledger_rows(n, now))
        for row in indexes:
            await conn.execute(row["indexdef"])
        await conn.execute("DELETE FROM ledger_head")
        head = n + n // 10
        await conn.execute(
            "INSERT INTO ledger_head (id, seq, hash) VALUES (1, $1, $2)", head, f"{head + 1:064x}"
        )
        for table in ("agents", "actions"):
            await conn.execute(f"SELECT setval('{table}_id_seq', (SELECT max(id) FROM {table}))")
        await conn.execute("VACUUM ANALYZE")  # what autovacuum does on a live database
    finally:
        await conn.close()
    return time.perf_counter() - started
