"""The group-commit path and the single path are the same product: for the same submissions (valid,
autonomous, forbidden, policy violations, unknown services, repeated and reused Idempotency-Keys,
poisoned rows), byte-identical answers and identical rows and ledger entries (hypothesis)."""

from __future__ import annotations

import asyncio
import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text

from bot.actions.submit import Prepared, prepare, submit_prepared
from bot.actions.tokens import TokenCache
from bot.actions.writer import Writer
from bot.app import build_services
from bot.contract.errors import ApiError
from bot.contract.schemas import ActionIn
from bot.services import Services
from storage.ledger import chain as ledger
from storage.models import Action, Agent, EscalationStep, IdempotencyKey, LedgerEntry, OutboxMessage
from tests.conftest import PG_ADMIN_URL, make_settings
from tests.conftest import test_policy as fast_policy

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
GHOST = Agent(id=987654321, name="ghost", token_hash="g", token_prefix="g", callback_secret="g")
VARIANTS: dict[str, dict[str, Any]] = {
    "approve": {"kind": "proposed", "service": "checkout-api", "action_type": "scale_down"},
    "violation": {"kind": "executed", "service": "checkout-api", "action_type": "scale_down"},
    "acknowledge": {"kind": "executed", "service": "search", "action_type": "restart"},
    "autonomous": {"kind": "proposed", "service": "batch", "action_type": "cleanup"},
    "forbidden": {"kind": "proposed", "service": "checkout-api", "action_type": "drop_database"},
    "unknown": {"kind": "proposed", "service": "nowhere", "action_type": "scale_down"},
}
Item = tuple[str, str | None, int, bool]  # (variant, key, summary number, poisoned)
ITEMS = st.lists(st.tuples(st.sampled_from(sorted(VARIANTS)), st.sampled_from([None, None, "k1", "k2"]),
                           st.integers(0, 2), st.just(False)),
                 min_size=1, max_size=12)
POISONED = st.lists(st.tuples(st.sampled_from(sorted(VARIANTS)), st.sampled_from([None, "k1"]),
                              st.integers(0, 2), st.booleans()), min_size=2, max_size=6)


def body(variant: str, n: int) -> dict[str, Any]:
    return {**VARIANTS[variant], "summary": f"Change {n}", "rationale": "because", "confidence": 0.5,
            "evidence": [{"label": "graph", "url": "https://grafana.example.com/d/x"}]}


_TEMPLATE: dict[str, bytes] = {}  # a migrated, empty SQLite database: copied, not migrated, per example


async def services(url: str) -> tuple[Services, Agent]:
    if url.startswith("postgresql"):
        svc = build_services(make_settings(url, "http://127.0.0.1:9/"), policy=fast_policy())
        await svc.db.migrate()
        await svc.db.dispose()
        return await _agent(url)
    path = Path(url.split("///", 1)[1])
    if "db" not in _TEMPLATE:
        svc = build_services(make_settings(url, "http://127.0.0.1:9/"), policy=fast_policy())
        await svc.db.migrate()
        await svc.db.dispose()
        _TEMPLATE["db"] = await asyncio.to_thread(path.read_bytes)
    await asyncio.to_thread(path.write_bytes, _TEMPLATE["db"])
    return await _agent(url)


async def _agent(url: str) -> tuple[Services, Agent]:
    svc = build_services(make_settings(url, "http://127.0.0.1:9/"), policy=fast_policy(), clock=lambda: NOW)
    async with svc.db.session() as session:  # the same agent, byte for byte, in both databases
        agent = Agent(name="agent", token_hash="h", token_prefix="cs_fixed", callback_secret="whsec_fixed")
        session.add(agent)
        await session.flush()
        await ledger.append(session, "agent.created", {"agent": "agent", "token_prefix": "cs_fixed"}, at=NOW)
        await session.commit()
    return svc, agent


def prepared(svc: Services, agent: Agent, items: list[Item]) -> list[Prepared | ApiError]:
    out: list[Prepared | ApiError] = []
    for variant, key, n, poisoned in items:
        raw = body(variant, n)
        try:
            out.append(prepare(svc, GHOST if poisoned else agent, ActionIn.model_validate(raw), raw=raw,
                               idempotency_key=key))
        except ApiError as exc:
            out.append(exc)
    return out


def wire(answer: Any) -> tuple[int, str]:
    """What the client receives: the status and the JSON bytes."""
    if isinstance(answer, ApiError):
        return answer.status, json.dumps(answer.body())
    status, out = answer
    return status, json.dumps(out)


async def rows(svc: Services) -> dict[str, list[Any]]:
    tables: dict[str, tuple[Any, set[str]]] = {
        "actions": (Action, set()), "steps": (EscalationStep, {"id"}), "keys": (IdempotencyKey, {"id"}),
        "outbox": (OutboxMessage, {"id", "next_attempt_at", "created_at"}),  # wall clock, not the injected one
        "ledger": (LedgerEntry, set())}
    found: dict[str, list[Any]] = {}
    async with svc.db.read_session() as session:
        for name, (model, skip) in tables.items():
            table = model.__table__
            result = await session.execute(select(table).order_by(*table.primary_key.columns))
            found[name] = [{k: v for k, v in row._mapping.items() if k not in skip} for row in result]
    found["keys"].sort(key=lambda r: (r["agent_id"], r["key"]))  # claimed in key order by a batch
    if svc.db.dialect == "postgresql":  # the JSON columns' stored text too (JSON null vs NULL, spacing)
        async with svc.db.read_session() as session:
            for name, sql in JSON_TEXT.items():
                found[f"{name} as text"] = [tuple(r) for r in (await session.execute(text(sql))).all()]
    return found


JSON_TEXT = {
    "actions": "SELECT evidence::text, model::text, metadata::text, frozen::text FROM actions ORDER BY id",
    "outbox": "SELECT payload::text FROM outbox ORDER BY id",
    "keys": "SELECT key, response_body::text FROM idempotency_keys ORDER BY agent_id, key",
}


async def single_path(url: str, items: list[Item]) -> tuple[list[tuple[int, str]], dict[str, list[Any]]]:
    svc, agent = await services(url)
    answers = []
    for prep in prepared(svc, agent, items):
        if isinstance(prep, ApiError):
            answers.append(wire(prep))
            continue
        try:
            answers.append(wire(await submit_prepared(svc, prep)))
        except ApiError as exc:
            answers.append(wire(exc))
        except Exception:
            answers.append((500, "poisoned"))
    found = await rows(svc)
    await svc.db.dispose()
    return answers, found


async def batch_path(url: str, items: list[Item]) -> tuple[list[tuple[int, str]], dict[str, list[Any]]]:
    svc, agent = await services(url)
    preps = prepared(svc, agent, items)
    written = await Writer(svc, TokenCache(svc)).write_batch([p for p in preps if isinstance(p, Prepared)])
    answers, results = [], iter(written)
    for prep in preps:
        answer = prep if isinstance(prep, ApiError) else next(results)
        answers.append((500, "poisoned") if isinstance(answer, ApiError) and answer.status == 500 else wire(answer))
    found = await rows(svc)
    await svc.db.dispose()
    return answers, found


def compare(items: list[Item]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        one = asyncio.run(single_path(f"sqlite+aiosqlite:///{tmp}/single.db", items))
        many = asyncio.run(batch_path(f"sqlite+aiosqlite:///{tmp}/batch.db", items))
    assert many[0] == one[0]
    assert many[1] == one[1]


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(ITEMS)
def test_batch_and_single_paths_agree(items: list[Item]) -> None:
    compare(items)


@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@given(POISONED)
def test_batch_and_single_paths_agree_with_poison(items: list[Item]) -> None:
    compare(items)


def test_a_mixed_batch_agrees() -> None:
    """The case the property must cover, pinned: every kind, a repeated key, a reused key, a poison."""
    compare([("approve", "k1", 0, False), ("forbidden", None, 0, False), ("autonomous", "k2", 1, False),
             ("approve", "k1", 0, False), ("violation", None, 2, False), ("approve", "k1", 1, False),
             ("unknown", None, 0, False), ("acknowledge", "k2", 1, False)])
    compare([("approve", None, 0, False), ("approve", None, 1, True), ("autonomous", None, 2, False)])


MIXED: list[Item] = [("approve", "k1", 0, False), ("forbidden", None, 0, False), ("autonomous", "k2", 1, False),
                     ("approve", "k1", 0, False), ("violation", None, 2, False), ("approve", "k1", 1, False),
                     ("unknown", None, 0, False), ("acknowledge", "k2", 1, False), ("approve", None, 2, False)]
# (No poisoned item: a rolled-back batch consumed ids of PostgreSQL's sequence, so the ids would differ.)


async def test_a_mixed_batch_agrees_on_postgresql(database_url: str) -> None:
    """On PostgreSQL the batch path inserts actions, steps and outbox rows as column arrays
    (storage.column_arrays), the single path through the ORM: the same rows, the same JSON text."""
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's insert path; SQLite is compared by the properties above")
    other = f"cs_{database_url.rsplit('/', 1)[1][3:]}_b"
    admin = await asyncpg.connect(PG_ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{other}"')
    try:
        one = await single_path(database_url, MIXED)
        many = await batch_path(f"{database_url.rsplit('/', 1)[0]}/{other}", MIXED)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{other}" WITH (FORCE)')
        await admin.close()
    assert [s for s, _ in one[0]] == [201, 403, 201, 201, 201, 422, 422, 422, 201]
    assert many[0] == one[0]
    assert many[1] == one[1]
    assert one[1]["actions as text"][0][1] == "null"  # Python None in a JSON column is JSON null, as before
